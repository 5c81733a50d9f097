//! decode(encode(frames)) against the frames: exact wherever the encoder chose a lossless
//! coding (text, UI, copies), within a stated PSNR on photo-like areas; and what each kind of
//! screen activity costs in bytes and tile codings.

mod common;

use common::{Screen, assert_same_picture, psnr};
use proptest::prelude::*;
use screencodec::{BgrxFrame, DecodeError, Decoder, Encoder, EncoderConfig, FrameKind};

const WHITE: [u8; 3] = [255, 255, 255];
const BLACK: [u8; 3] = [0, 0, 0];
const BLUE: [u8; 3] = [160, 90, 30];
const GREY: [u8; 3] = [200, 200, 200];

/// A 320 × 240 desktop: a blue background, an editor window with text, a photo area.
fn desktop() -> Screen {
    let mut s = office();
    s.photo(220, 120, 96, 96, 0.0);
    s
}

/// The desktop without the photo: every coding is exact.
fn office() -> Screen {
    let mut s = Screen::new(320, 240, BLUE);
    s.fill(10, 10, 200, 12, GREY);
    s.text(14, 12, "notes.txt - editor", BLACK, GREY);
    s.fill(10, 22, 200, 150, WHITE);
    for line in 0..15 {
        let text = format!("{line:02} the quick brown fox {line}");
        s.text(14, 26 + line * 9, &text, BLACK, WHITE);
    }
    s
}

fn encoder() -> Encoder {
    Encoder::new(EncoderConfig::default()).unwrap()
}

#[test]
fn a_key_frame_reproduces_text_exactly_and_photos_within_30_db() {
    let screen = desktop();
    let mut enc = encoder();
    let mut dec = Decoder::new();
    let payload = enc.encode(&screen.frame()).unwrap();
    assert!(screencodec::is_screen_payload(&payload));
    let canvas = dec.decode(&payload).unwrap();
    assert_eq!(canvas.width(), 320);
    // Everything outside the photo's tiles (x ≥ 192, y ≥ 64 holds it) is exact.
    for y in 0..240 {
        for x in 0..192 {
            assert_eq!(canvas.bgr(x, y).unwrap(), screen.get(x, y), "({x}, {y})");
        }
    }
    let db = psnr(canvas, &screen, 220, 120, 96, 96);
    assert!(db >= 30.0, "photo area at {db:.1} dB");
    assert_eq!(dec.last_header().unwrap().kind, FrameKind::Key);
}

#[test]
fn an_unchanged_frame_is_a_16_byte_heartbeat() {
    let screen = desktop();
    let mut enc = encoder();
    let mut dec = Decoder::new();
    dec.decode(&enc.encode(&screen.frame()).unwrap()).unwrap();
    let before = dec.canvas().unwrap().clone();
    let mut out = Vec::new();
    let summary = enc.encode_into(&screen.frame(), &mut out).unwrap();
    assert_eq!(summary.kind, FrameKind::Unchanged);
    assert_eq!(out.len(), 16);
    assert_eq!(summary.bytes, 16);
    assert_eq!(dec.decode(&out).unwrap(), &before);
}

#[test]
fn typing_sends_only_the_changed_glyphs_and_stays_exact() {
    let mut screen = office();
    let mut enc = encoder();
    let mut dec = Decoder::new();
    let key = enc.encode(&screen.frame()).unwrap();
    dec.decode(&key).unwrap();
    for (i, ch) in "Hello,world".chars().enumerate() {
        screen.text(
            14 + i as u32 * 6,
            26 + 15 * 9,
            &ch.to_string(),
            BLACK,
            WHITE,
        );
        let mut out = Vec::new();
        let summary = enc.encode_into(&screen.frame(), &mut out).unwrap();
        assert_eq!(summary.kind, FrameKind::Delta);
        assert!(
            out.len() < 150,
            "keystroke {i} cost {} bytes (key frame: {})",
            out.len(),
            key.len()
        );
        assert!(summary.tiles.pixels <= 2 * 6 * 9, "{:?}", summary.tiles);
        assert_same_picture(dec.decode(&out).unwrap(), &screen);
    }
}

#[test]
fn a_scroll_is_sent_as_copies() {
    let mut screen = Screen::new(320, 240, WHITE);
    for line in 0..26 {
        screen.text(
            4,
            line * 9,
            &format!("line {line} of a long page, lorem ipsum {}", line * 7),
            BLACK,
            WHITE,
        );
    }
    let mut enc = encoder();
    let mut dec = Decoder::new();
    let key = enc.encode(&screen.frame()).unwrap();
    dec.decode(&key).unwrap();
    for step in 0..3 {
        // Three lines up; a new line appears at the bottom.
        screen.scroll_up(0, 0, 320, 240, 27);
        screen.fill(0, 213, 320, 27, WHITE);
        screen.text(4, 222, &format!("new line {step}"), BLACK, WHITE);
        let mut out = Vec::new();
        let summary = enc.encode_into(&screen.frame(), &mut out).unwrap();
        // Only the bottom band (where the new line is) is coded; the rest is copied.
        let t = summary.tiles;
        assert!(t.copied >= 8, "{t:?}");
        assert!(t.pixels - t.copied_pixels <= 320 * 48, "{t:?}");
        assert!(
            out.len() * 4 < key.len(),
            "scroll cost {} bytes, key {}",
            out.len(),
            key.len()
        );
        assert_same_picture(dec.decode(&out).unwrap(), &screen);
    }
}

#[test]
fn a_dragged_window_is_sent_as_copies() {
    let background = {
        let mut s = Screen::new(320, 240, BLUE);
        s.text(100, 200, "desktop icon", WHITE, BLUE);
        s
    };
    let mut window = Screen::new(130, 100, WHITE);
    window.fill(0, 0, 130, 12, GREY);
    for line in 0..9 {
        window.text(
            3,
            14 + line * 9,
            &format!("row {line}: 12345 abcde"),
            BLACK,
            WHITE,
        );
    }
    let at = |x: u32, y: u32| {
        let mut s = background.clone();
        s.blit(&window, (0, 0), (130, 100), (x, y));
        s
    };
    let mut enc = encoder();
    let mut dec = Decoder::new();
    dec.decode(&enc.encode(&at(20, 20).frame()).unwrap())
        .unwrap();
    let mut copied = 0;
    for (x, y) in [(43, 31), (66, 42), (89, 53), (112, 64)] {
        let screen = at(x, y);
        let mut out = Vec::new();
        let summary = enc.encode_into(&screen.frame(), &mut out).unwrap();
        copied += summary.tiles.copied;
        assert_same_picture(dec.decode(&out).unwrap(), &screen);
    }
    assert!(
        copied >= 4,
        "only {copied} rectangles copied over four moves"
    );
}

/// A 320 × 240 photo with film grain (next to no pixel repeats its neighbour).
fn wallpaper() -> Screen {
    let mut s = Screen::new(320, 240, BLUE);
    s.photo(0, 0, 320, 240, 2.0);
    s.grain(0, 0, 320, 240, 6, 7);
    s
}

fn dialog() -> Screen {
    let mut window = Screen::new(130, 100, WHITE);
    window.fill(0, 0, 130, 12, GREY);
    for line in 0..9 {
        window.text(
            3,
            14 + line * 9,
            &format!("row {line}: 12345 abcde"),
            BLACK,
            WHITE,
        );
    }
    window
}

#[test]
fn a_window_dragged_over_a_photo_ends_exact_once_it_holds_still() {
    let (background, window) = (wallpaper(), dialog());
    let at = |x: u32, y: u32| {
        let mut s = background.clone();
        s.blit(&window, (0, 0), (130, 100), (x, y));
        s
    };
    let mut enc = encoder();
    let mut dec = Decoder::new();
    dec.decode(&enc.encode(&at(20, 20).frame()).unwrap())
        .unwrap();
    let path = [(31, 27), (45, 33), (62, 41), (80, 55), (101, 63), (119, 70)];
    for (x, y) in path {
        dec.decode(&enc.encode(&at(x, y).frame()).unwrap()).unwrap();
    }
    // Still: within a few frames, the window is exact again wherever edges coded as JPEG
    // travelled with it; the photo may stay approximate.
    let screen = at(119, 70);
    let mut refined = 0;
    for _ in 0..6 {
        let mut out = Vec::new();
        refined += enc
            .encode_into(&screen.frame(), &mut out)
            .unwrap()
            .tiles
            .refined;
        dec.decode(&out).unwrap();
    }
    let canvas = dec.canvas().unwrap();
    // The window's inside, one block in from its edges (blocks straddling the edge are half
    // photo and stay JPEG).
    let db = psnr(canvas, &screen, 119 + 16, 70 + 16, 130 - 32, 100 - 32);
    assert_eq!(
        db,
        f64::INFINITY,
        "window inside at {db:.1} dB after {refined} refinements"
    );
    assert!(psnr(canvas, &screen, 0, 0, 320, 240) >= 30.0);
}

#[test]
fn what_a_moved_window_uncovers_is_copied_from_a_reference_screen() {
    let (background, window) = (wallpaper(), dialog());
    let mut screen = background.clone();
    screen.blit(&window, (0, 0), (130, 100), (96, 64));
    let mut enc = encoder();
    let mut dec = Decoder::new();
    // The key frame has the photo with the window on it; a few still frames later the
    // encoder keeps the screen as reference 2 (reference 1 is the key frame's).
    let first = enc.encode(&background.frame()).unwrap();
    dec.decode(&first).unwrap();
    let mut out = Vec::new();
    enc.encode_into(&screen.frame(), &mut out).unwrap();
    dec.decode(&out).unwrap();
    for _ in 0..6 {
        enc.encode_into(&screen.frame(), &mut out).unwrap();
        dec.decode(&out).unwrap();
    }
    // The window closes: the photo under it is on reference 1, exactly in place.
    let summary = enc.encode_into(&background.frame(), &mut out).unwrap();
    assert_eq!(summary.tiles.jpeg, 0, "{:?}", summary.tiles);
    assert!(
        summary.tiles.copied_pixels >= 130 * 100,
        "{:?}",
        summary.tiles
    );
    assert!(
        out.len() < 1000,
        "closing the window cost {} bytes",
        out.len()
    );
    let canvas = dec.decode(&out).unwrap();
    assert!(psnr(canvas, &background, 0, 0, 320, 240) >= 30.0);
}

#[test]
fn a_playing_video_keeps_30_db_and_the_text_beside_it_stays_exact() {
    let mut screen = desktop();
    let mut enc = encoder();
    let mut dec = Decoder::new();
    dec.decode(&enc.encode(&screen.frame()).unwrap()).unwrap();
    for frame in 1..8 {
        screen.photo(220, 120, 96, 96, frame as f32 * 0.3);
        let mut out = Vec::new();
        let summary = enc.encode_into(&screen.frame(), &mut out).unwrap();
        assert!(summary.tiles.jpeg > 0, "{:?}", summary.tiles);
        let canvas = dec.decode(&out).unwrap();
        let db = psnr(canvas, &screen, 220, 120, 96, 96);
        assert!(db >= 30.0, "frame {frame}: {db:.1} dB");
        assert_eq!(psnr(canvas, &screen, 0, 0, 192, 240), f64::INFINITY);
    }
}

#[test]
fn many_colour_flat_content_is_exact() {
    // Every run of 8 pixels its own colour: far more than 256 colours, mostly flat.
    let mut screen = Screen::new(128, 64, WHITE);
    for y in 0..64 {
        for x in 0..128 {
            let c = (x / 8 + y * 16) * 97;
            screen.set(x, y, [c as u8, (c >> 3) as u8, (c >> 6) as u8]);
        }
    }
    let mut enc = encoder();
    let mut out = Vec::new();
    let summary = enc.encode_into(&screen.frame(), &mut out).unwrap();
    assert_eq!(summary.tiles.raw, 2, "{:?}", summary.tiles);
    assert_same_picture(Decoder::new().decode(&out).unwrap(), &screen);
}

#[test]
fn key_frames_come_first_on_interval_on_request_and_on_resize() {
    let config = EncoderConfig {
        keyframe_interval: 3,
        ..EncoderConfig::default()
    };
    let mut enc = Encoder::new(config).unwrap();
    let mut screen = desktop();
    let mut kinds = Vec::new();
    let mut out = Vec::new();
    for i in 0..7 {
        if i == 5 {
            enc.request_keyframe();
        }
        screen.text(14, 12, &format!("{i}"), BLACK, GREY);
        kinds.push(enc.encode_into(&screen.frame(), &mut out).unwrap().kind);
    }
    use FrameKind::{Delta, Key};
    assert_eq!(kinds, [Key, Delta, Delta, Key, Delta, Key, Delta]);

    let smaller = Screen::new(100, 50, WHITE);
    let summary = enc.encode_into(&smaller.frame(), &mut out).unwrap();
    assert_eq!(summary.kind, Key);
}

#[test]
fn odd_sizes_padded_strides_and_every_tile_size_round_trip() {
    for (w, h) in [
        (1, 1),
        (17, 33),
        (100, 1),
        (1, 100),
        (64, 64),
        (65, 65),
        (300, 17),
    ] {
        for tile_size in [16, 32, 64, 128, 256] {
            let mut screen = Screen::new(w, h, WHITE);
            screen.text(0, 0, "abc def", BLACK, WHITE);
            screen.photo(w / 2, h / 2, w - w / 2, h - h / 2, 1.0);
            // The capture has 12 bytes of padding (garbage) after each row.
            let stride = w as usize * 4 + 12;
            let mut padded = vec![0xa5u8; stride * h as usize];
            for y in 0..h as usize {
                padded[y * stride..y * stride + w as usize * 4]
                    .copy_from_slice(&screen.pixels[y * w as usize * 4..(y + 1) * w as usize * 4]);
            }
            let frame = BgrxFrame::new(&padded, w, h, stride).unwrap();
            let mut enc = Encoder::new(EncoderConfig {
                tile_size,
                ..EncoderConfig::default()
            })
            .unwrap();
            let mut dec = Decoder::new();
            let canvas = dec.decode(&enc.encode(&frame).unwrap()).unwrap();
            let db = psnr(canvas, &screen, 0, 0, w, h);
            assert!(db >= 30.0, "{w}x{h} tiles of {tile_size}: {db:.1} dB");
            // A one-pixel change in the corner.
            screen.set(w - 1, h - 1, [1, 2, 3]);
            for y in 0..h as usize {
                padded[y * stride..y * stride + w as usize * 4]
                    .copy_from_slice(&screen.pixels[y * w as usize * 4..(y + 1) * w as usize * 4]);
            }
            let frame = BgrxFrame::new(&padded, w, h, stride).unwrap();
            let canvas = dec.decode(&enc.encode(&frame).unwrap()).unwrap();
            assert_eq!(canvas.bgr(w - 1, h - 1), Some([1, 2, 3]));
        }
    }
}

#[test]
fn the_fourth_byte_is_not_kept() {
    let pixels: Vec<u8> = [10u8, 20, 30, 0x7f].repeat(40 * 8);
    let frame = BgrxFrame::new(&pixels, 40, 8, 160).unwrap();
    let mut dec = Decoder::new();
    let canvas = dec.decode(&encoder().encode(&frame).unwrap()).unwrap();
    assert!(
        canvas
            .pixels()
            .chunks_exact(4)
            .all(|p| p == [10, 20, 30, 0xff])
    );
    assert_eq!(canvas.stride(), 160);
}

#[test]
fn a_decoder_joining_late_waits_for_a_key_frame() {
    let mut screen = office();
    let mut enc = encoder();
    let _key = enc.encode(&screen.frame()).unwrap();
    screen.text(14, 12, "x", BLACK, GREY);
    let delta = enc.encode(&screen.frame()).unwrap();
    let mut dec = Decoder::new();
    assert!(matches!(
        dec.decode(&delta),
        Err(DecodeError::NeedsKeyframe { kind: "delta", .. })
    ));
    assert!(dec.canvas().is_none());
    enc.request_keyframe();
    let key = enc.encode(&screen.frame()).unwrap();
    assert_same_picture(dec.decode(&key).unwrap(), &screen);
}

#[test]
fn bad_settings_and_frames_are_refused() {
    for config in [
        EncoderConfig {
            tile_size: 48,
            ..EncoderConfig::default()
        },
        EncoderConfig {
            tile_size: 512,
            ..EncoderConfig::default()
        },
        EncoderConfig {
            jpeg_quality: 0,
            ..EncoderConfig::default()
        },
        EncoderConfig {
            zstd_level: 0,
            ..EncoderConfig::default()
        },
    ] {
        assert!(Encoder::new(config).is_err(), "{config:?}");
    }
    let pixels = vec![0u8; 64];
    assert!(BgrxFrame::new(&pixels, 0, 1, 4).is_err());
    assert!(BgrxFrame::new(&pixels, 4, 4, 12).is_err());
    assert!(BgrxFrame::new(&pixels, 4, 5, 16).is_err());
    assert!(BgrxFrame::new(&pixels, 70_000, 1, 280_000).is_err());
    assert!(BgrxFrame::new(&pixels, 4, 4, 16).is_ok());
}

/// One edit of a screen in the property test.
#[derive(Debug, Clone)]
enum Edit {
    Fill(u32, u32, u32, u32, u8),
    Text(u32, u32, String, u8),
    Scroll(u32, u32, u32, u32, u32),
    Move(u32, u32, u32, u32, u32, u32),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0..150u32, 0..90u32, 1..80u32, 1..60u32, any::<u8>())
            .prop_map(|(x, y, w, h, c)| Edit::Fill(x, y, w, h, c)),
        (0..150u32, 0..90u32, "[a-z0-9 ]{1,12}", any::<u8>())
            .prop_map(|(x, y, t, c)| Edit::Text(x, y, t, c)),
        (0..100u32, 0..50u32, 20..60u32, 20..50u32, 1..19u32)
            .prop_map(|(x, y, w, h, dy)| Edit::Scroll(x, y, w, h, dy)),
        (
            0..100u32,
            0..60u32,
            10..50u32,
            10..40u32,
            0..100u32,
            0..60u32
        )
            .prop_map(|(sx, sy, w, h, dx, dy)| Edit::Move(sx, sy, w, h, dx, dy)),
    ]
}

/// A colour from a fixed set of 64, so no tile ever needs more than 256 colours: every
/// coding chosen is exact.
fn colour(c: u8) -> [u8; 3] {
    let c = c % 64;
    [c * 4, 255 - c * 3, c.wrapping_mul(37)]
}

fn apply(screen: &mut Screen, edit: &Edit) {
    let (w, h) = (screen.width, screen.height);
    match edit {
        Edit::Fill(x, y, ew, eh, c) => screen.fill(*x, *y, *ew, *eh, colour(*c)),
        Edit::Text(x, y, t, c) => screen.text(*x, *y, t, colour(*c), colour(c.wrapping_add(9))),
        Edit::Scroll(x, y, ew, eh, dy) => {
            let (ew, eh) = ((*ew).min(w - x), (*eh).min(h - y));
            if *dy < eh {
                screen.scroll_up(*x, *y, ew, eh, *dy);
            }
        }
        Edit::Move(sx, sy, ew, eh, dx, dy) => {
            let ew = (*ew).min(w - sx).min(w - dx);
            let eh = (*eh).min(h - sy).min(h - dy);
            let from = screen.clone();
            screen.blit(&from, (*sx, *sy), (ew, eh), (*dx, *dy));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any sequence of fills, text, scrolls and moves on a screen of at most 256 colours
    /// decodes to exactly the screen after every frame, with any tile size and key interval.
    #[test]
    fn lossless_content_round_trips_exactly(
        edits in prop::collection::vec(prop::collection::vec(edit(), 0..4), 1..12),
        tile_log2 in 4u32..8,
        keyframe_interval in 0u32..5,
    ) {
        let mut screen = Screen::new(200, 120, colour(0));
        screen.text(3, 3, "seed screen 0123", colour(1), colour(0));
        let mut enc = Encoder::new(EncoderConfig {
            tile_size: 1 << tile_log2,
            keyframe_interval,
            ..EncoderConfig::default()
        }).unwrap();
        let mut dec = Decoder::new();
        let mut out = Vec::new();
        for frame_edits in &edits {
            for e in frame_edits {
                apply(&mut screen, e);
            }
            let summary = enc.encode_into(&screen.frame(), &mut out).unwrap();
            prop_assert_eq!(summary.tiles.jpeg, 0);
            let canvas = dec.decode(&out).unwrap();
            prop_assert_eq!(canvas.pixels().len(), screen.pixels.len());
            for (got, want) in canvas.pixels().chunks_exact(4).zip(screen.pixels.chunks_exact(4)) {
                prop_assert_eq!(&got[..3], &want[..3]);
            }
        }
    }

    /// Moving photo-like content stays within 30 dB at the default quality, frame after frame.
    #[test]
    fn photo_content_stays_within_30_db(
        steps in prop::collection::vec((0.0f32..6.0, 0..100u32, 0..50u32), 1..6),
    ) {
        let mut screen = Screen::new(200, 120, WHITE);
        let mut enc = encoder();
        let mut dec = Decoder::new();
        for (t, x, y) in steps {
            screen.photo(x, y, 100, 70, t);
            let payload = enc.encode(&screen.frame()).unwrap();
            let canvas = dec.decode(&payload).unwrap();
            let db = psnr(canvas, &screen, 0, 0, 200, 120);
            prop_assert!(db >= 30.0, "{} dB", db);
        }
    }
}
