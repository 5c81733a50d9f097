//! The decoder over bytes it must refuse: every error names what was wrong, nothing panics,
//! nothing is allocated past the limits, and a refused payload leaves the screen as it was.

mod common;

use common::{Handmade, Screen, grey_jpeg, record, solid_record};
use screencodec::{DecodeError, Decoder, DecoderLimits, Encoder, EncoderConfig};

fn refused(payload: &[u8]) -> DecodeError {
    Decoder::new().decode(payload).unwrap_err()
}

/// A 64 × 64 key frame: one tile, solid.
fn key() -> Handmade {
    let mut k = Handmade::key(64, 64);
    k.records = solid_record(0, 64, 64, [1, 2, 3]);
    k
}

#[test]
fn a_handmade_key_frame_decodes() {
    let mut dec = Decoder::new();
    let canvas = dec.decode(&key().bytes()).unwrap();
    assert_eq!(canvas.bgr(63, 63), Some([1, 2, 3]));
}

#[test]
fn bad_headers_are_named() {
    assert!(matches!(
        refused(b""),
        DecodeError::Truncated { field: "magic", .. }
    ));
    assert_eq!(
        refused(b"RIFF\x01\x01\x06\x00"),
        DecodeError::BadMagic {
            found: b"RIFF".to_vec()
        }
    );
    assert!(matches!(
        refused(b"IDV"),
        DecodeError::Truncated { field: "magic", .. }
    ));
    assert!(matches!(
        refused(&key().bytes()[..10]),
        DecodeError::Truncated {
            field: "sequence",
            ..
        }
    ));
    let with = |change: &dyn Fn(&mut Handmade)| {
        let mut k = key();
        change(&mut k);
        refused(&k.bytes())
    };
    let mut bytes = key().bytes();
    bytes[4] = 2;
    assert_eq!(
        refused(&bytes),
        DecodeError::UnsupportedVersion {
            found: 2,
            supported: 1
        }
    );
    assert_eq!(with(&|k| k.kind = 0), DecodeError::UnknownFrameKind(0));
    assert_eq!(with(&|k| k.kind = 4), DecodeError::UnknownFrameKind(4));
    assert_eq!(with(&|k| k.tile_log2 = 3), DecodeError::BadTileSize(3));
    assert_eq!(with(&|k| k.tile_log2 = 9), DecodeError::BadTileSize(9));
    assert_eq!(with(&|k| k.flags = 4), DecodeError::UnknownFlags(4));
    assert_eq!(with(&|k| k.flags = 3), DecodeError::UnknownFlags(3));
    assert_eq!(
        with(&|k| k.width = 0),
        DecodeError::ZeroDimensions {
            width: 0,
            height: 64
        }
    );
    let message = with(&|k| k.kind = 9).to_string();
    assert!(message.contains("unknown screen frame kind 9"), "{message}");
}

#[test]
fn absurd_dimensions_are_refused_before_anything_is_allocated() {
    let mut huge = Handmade::key(65_535, 65_535);
    huge.records = solid_record(0, 64, 64, [0, 0, 0]);
    assert!(matches!(
        refused(&huge.bytes()),
        DecodeError::DimensionsTooLarge {
            width: 65_535,
            height: 65_535,
            ..
        }
    ));
    let limits = DecoderLimits {
        max_width: 100,
        max_height: 100,
        max_pixels: 5_000,
    };
    let mut wide = Handmade::key(101, 1);
    wide.records = solid_record(0, 64, 1, [0, 0, 0]);
    assert!(Decoder::with_limits(limits).decode(&wide.bytes()).is_err());
    let mut big = Handmade::key(100, 100);
    big.records = solid_record(0, 64, 64, [0, 0, 0]);
    assert!(matches!(
        Decoder::with_limits(limits).decode(&big.bytes()),
        Err(DecodeError::DimensionsTooLarge { .. })
    ));
    let mut fits = Handmade::key(50, 100);
    fits.records = solid_record(0, 50, 64, [0, 0, 0]);
    assert!(Decoder::with_limits(limits).decode(&fits.bytes()).is_ok());
}

#[test]
fn declared_lengths_are_bounded_and_must_be_exact() {
    let mut k = key();
    k.tiles_len = Some(u32::MAX);
    assert!(matches!(
        refused(&k.bytes()),
        DecodeError::TileStreamTooLarge { .. }
    ));
    let mut k = key();
    k.jpeg_len = Some(u32::MAX);
    assert!(matches!(refused(&k.bytes()), DecodeError::JpegLayout(_)));
    for declared in [8, 10] {
        let mut k = key();
        k.tiles_len = Some(declared);
        assert!(
            matches!(refused(&k.bytes()), DecodeError::TileStreamCorrupt { .. }),
            "declared {declared} of 9"
        );
    }
    // Not zstd at all.
    let mut bytes = key().header();
    bytes.extend_from_slice(&9u32.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&4u32.to_le_bytes());
    bytes.extend_from_slice(b"junk");
    assert!(matches!(
        refused(&bytes),
        DecodeError::TileStreamCorrupt { .. }
    ));
    // The compressed section runs past the payload; or something follows it.
    let good = key().bytes();
    assert!(matches!(
        refused(&good[..good.len() - 1]),
        DecodeError::Truncated {
            field: "compressed section",
            ..
        }
    ));
    let mut longer = good.clone();
    longer.push(0);
    assert_eq!(refused(&longer), DecodeError::TrailingBytes { extra: 1 });
}

#[test]
fn bad_records_are_named() {
    let with_records = |records: Vec<u8>| {
        let mut k = Handmade::key(64, 64);
        k.records = records;
        refused(&k.bytes())
    };
    assert_eq!(
        with_records(solid_record(1, 64, 64, [0, 0, 0])),
        DecodeError::TileOutOfRange { index: 1, tiles: 1 }
    );
    // 0xff continues the varint: 0x7f + (1 << 7).
    assert_eq!(
        with_records(solid_record(0xff, 64, 64, [0, 0, 0])),
        DecodeError::TileOutOfRange {
            index: 255,
            tiles: 1
        }
    );
    assert_eq!(
        with_records(vec![0x80]),
        DecodeError::Truncated {
            field: "tile skip",
            offset: 1,
            needed: 1,
            available: 0
        }
    );
    assert_eq!(
        with_records(record(0, 1, (60, 0, 8, 8), &[0, 0, 0])),
        DecodeError::RectOutsideTile {
            tile: 0,
            x: 60,
            y: 0,
            w: 8,
            h: 8
        }
    );
    assert_eq!(
        with_records(record(0, 9, (0, 0, 8, 8), &[])),
        DecodeError::UnknownTileCoding { tile: 0, kind: 9 }
    );
    // Two colours, then an index 2.
    let mut palette = vec![1, 0, 0, 0, 255, 255, 255];
    palette.extend_from_slice(&[0, 1, 1, 2]);
    assert_eq!(
        with_records(record(0, 2, (0, 0, 2, 2), &palette)),
        DecodeError::PaletteIndexOutOfRange {
            tile: 0,
            index: 2,
            colours: 2
        }
    );
    // Raw colours cut short.
    assert!(matches!(
        with_records(record(0, 3, (0, 0, 4, 4), &[7; 47])),
        DecodeError::Truncated {
            field: "raw pixels",
            ..
        }
    ));
    assert_eq!(
        with_records(record(0, 5, (0, 0, 8, 8), &[0, 0, 0, 0, 0])),
        DecodeError::CopyInKeyframe { tile: 0 }
    );
    // One more record for the tile than any encoder writes (4 per 16 × 16 block, plus 2).
    let many: Vec<u8> = (0..67)
        .flat_map(|_| record(0, 1, (0, 0, 1, 1), &[0, 0, 0]))
        .collect();
    assert_eq!(
        with_records(many),
        DecodeError::TooManyRecords { tile: 0, max: 66 }
    );
}

#[test]
fn the_jpeg_section_must_match_its_tiles() {
    let jpeg_tile = record(0, 4, (0, 0, 64, 64), &[]);
    let with = |records: Vec<u8>, jpeg: Vec<u8>| {
        let mut k = Handmade::key(64, 64);
        k.records = records;
        k.jpeg = jpeg;
        Decoder::new().decode(&k.bytes()).map(|c| c.bgr(10, 10))
    };
    assert_eq!(
        with(jpeg_tile.clone(), grey_jpeg(64, 64)),
        Ok(Some([128, 128, 128]))
    );
    assert!(matches!(
        with(solid_record(0, 64, 64, [0; 3]), grey_jpeg(64, 64)),
        Err(DecodeError::JpegLayout(_))
    ));
    assert!(matches!(
        with(jpeg_tile.clone(), Vec::new()),
        Err(DecodeError::JpegLayout(_))
    ));
    let wrong_size = with(jpeg_tile.clone(), grey_jpeg(32, 32)).unwrap_err();
    assert!(
        wrong_size
            .to_string()
            .contains("need a 64x64 image, found 32x32"),
        "{wrong_size}"
    );
    assert!(matches!(
        with(jpeg_tile.clone(), b"\xff\xd8 not a jpeg".to_vec()),
        Err(DecodeError::Jpeg(_))
    ));
    let mut cut = grey_jpeg(64, 64);
    cut.truncate(cut.len() / 2);
    assert!(with(jpeg_tile, cut).is_err());
}

#[test]
fn deltas_need_their_key_frame_their_predecessor_and_the_same_size() {
    let key = key();
    let mut delta = key.delta();
    delta.records = solid_record(0, 8, 8, [9, 9, 9]);
    assert!(matches!(
        refused(&delta.bytes()),
        DecodeError::NeedsKeyframe {
            sequence: 2,
            kind: "delta"
        }
    ));

    let mut dec = Decoder::new();
    dec.decode(&key.bytes()).unwrap();
    let mut late = key.delta();
    late.sequence = 3;
    late.records = solid_record(0, 8, 8, [9, 9, 9]);
    assert_eq!(
        dec.decode(&late.bytes()).unwrap_err(),
        DecodeError::OutOfSequence {
            previous: 1,
            expected: 2,
            found: 3
        }
    );
    // After an error the screen stays, and only a key frame is taken.
    assert_eq!(dec.canvas().unwrap().bgr(0, 0), Some([1, 2, 3]));
    assert!(matches!(
        dec.decode(&delta.bytes()),
        Err(DecodeError::NeedsKeyframe { .. })
    ));

    let mut dec = Decoder::new();
    dec.decode(&key.bytes()).unwrap();
    let mut bigger = key.delta();
    bigger.width = 65;
    bigger.records = solid_record(0, 8, 8, [9, 9, 9]);
    assert!(matches!(
        dec.decode(&bigger.bytes()),
        Err(DecodeError::DimensionsChanged {
            width: 64,
            found_width: 65,
            ..
        })
    ));

    let mut dec = Decoder::new();
    dec.decode(&key.bytes()).unwrap();
    let mut unchanged = key.delta();
    unchanged.kind = 3;
    let mut bytes = unchanged.header();
    bytes.push(0);
    assert_eq!(
        dec.decode(&bytes).unwrap_err(),
        DecodeError::TrailingBytes { extra: 1 }
    );
}

#[test]
fn copies_must_read_inside_a_screen_the_decoder_has() {
    let copy = |screen: u8, dx: i16, dy: i16, rect: (u8, u8, u16, u16)| {
        let mut payload = vec![screen];
        payload.extend_from_slice(&dx.to_le_bytes());
        payload.extend_from_slice(&dy.to_le_bytes());
        record(0, 5, rect, &payload)
    };
    let attempt = |records: Vec<u8>, key_flags: u8| {
        let mut key = key();
        key.flags = key_flags;
        let mut dec = Decoder::new();
        dec.decode(&key.bytes()).unwrap();
        let mut delta = key.delta();
        delta.records = records;
        dec.decode(&delta.bytes()).map(|c| c.bgr(0, 0))
    };
    assert!(matches!(
        attempt(copy(0, 10, 0, (0, 0, 64, 64)), 0),
        Err(DecodeError::CopyOutsideScreen { src_x: 10, .. })
    ));
    assert!(matches!(
        attempt(copy(0, -1, 0, (0, 0, 8, 8)), 0),
        Err(DecodeError::CopyOutsideScreen { src_x: -1, .. })
    ));
    assert!(matches!(
        attempt(copy(1, 0, 0, (0, 0, 8, 8)), 0),
        Err(DecodeError::NoSuchScreen { screen: 1, .. })
    ));
    assert!(matches!(
        attempt(copy(3, 0, 0, (0, 0, 8, 8)), 1),
        Err(DecodeError::NoSuchScreen { screen: 3, .. })
    ));
    // A key frame kept as reference 1, painted over, then copied back.
    let mut records = solid_record(0, 64, 64, [7, 7, 7]);
    records.extend(copy(1, 0, 0, (0, 0, 8, 8)));
    assert_eq!(attempt(records, 1), Ok(Some([1, 2, 3])));
    // Copies read the screen as it was before the frame, whatever came before them.
    let mut records = solid_record(0, 64, 64, [7, 7, 7]);
    records.extend(copy(0, 8, 8, (0, 0, 8, 8)));
    assert_eq!(attempt(records, 0), Ok(Some([1, 2, 3])));
}

/// Payloads of a real session on a small screen: a key frame, typing, a scroll, a photo.
fn session() -> Vec<Vec<u8>> {
    let mut screen = Screen::new(128, 96, [255, 255, 255]);
    for line in 0..10 {
        screen.text(
            2,
            line * 9,
            &format!("line {line} abc"),
            [0, 0, 0],
            [255, 255, 255],
        );
    }
    screen.photo(80, 50, 40, 40, 0.0);
    let mut enc = Encoder::new(EncoderConfig::default()).unwrap();
    let mut payloads = vec![enc.encode(&screen.frame()).unwrap()];
    screen.text(2, 87, "typed", [0, 0, 0], [255, 255, 255]);
    payloads.push(enc.encode(&screen.frame()).unwrap());
    screen.scroll_up(0, 0, 70, 96, 9);
    payloads.push(enc.encode(&screen.frame()).unwrap());
    screen.photo(80, 50, 40, 40, 1.0);
    payloads.push(enc.encode(&screen.frame()).unwrap());
    payloads.push(enc.encode(&screen.frame()).unwrap());
    payloads
}

#[test]
fn every_truncation_of_real_payloads_is_refused_and_leaves_the_screen() {
    let payloads = session();
    for (k, payload) in payloads.iter().enumerate() {
        let mut dec = Decoder::new();
        for earlier in &payloads[..k] {
            dec.decode(earlier).unwrap();
        }
        let before = dec.canvas().cloned();
        let step = (payload.len() / 300).max(1);
        for len in (0..payload.len()).step_by(step) {
            let mut fresh = Decoder::new();
            for earlier in &payloads[..k] {
                fresh.decode(earlier).unwrap();
            }
            assert!(
                fresh.decode(&payload[..len]).is_err(),
                "payload {k} cut to {len} of {} bytes was accepted",
                payload.len()
            );
            assert_eq!(fresh.canvas().cloned(), before, "payload {k} cut to {len}");
        }
    }
}

#[test]
fn mutated_payloads_never_panic() {
    let payloads = session();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..600 {
        let k = (next() % payloads.len() as u64) as usize;
        let mut dec = Decoder::new();
        for earlier in &payloads[..k] {
            dec.decode(earlier).unwrap();
        }
        let mut bytes = payloads[k].clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % bytes.len() as u64) as usize;
            bytes[at] ^= 1 << (next() % 8);
        }
        // Accepted or refused, but never a panic; a delta accepted only at the session's size.
        let decoded = dec.decode(&bytes);
        if k > 0
            && let Ok(canvas) = decoded
        {
            assert_eq!(
                (canvas.width(), canvas.height()),
                (128, 96),
                "round {round}"
            );
        }
    }
}
