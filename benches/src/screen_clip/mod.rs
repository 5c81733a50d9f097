//! A deterministic screen-activity clip for the screen-codec bench: a desktop (photo-like
//! wallpaper with film grain, a taskbar whose clock ticks, a mouse pointer as `ximagesrc`
//! draws it) and one of four scenes —
//!
//! * [`Scene::Typing`]: a text editor, a sentence typed at ~7 characters a second, the cursor
//!   blinking, the status bar following the cursor;
//! * [`Scene::Scrolling`]: a browser page (headings, paragraphs, a table, a photo) scrolled with
//!   a wheel, three lines a notch, each notch animated over 150 ms;
//! * [`Scene::Dragging`]: a dialog dragged across the wallpaper and back;
//! * [`Scene::Video`]: a player showing a panning, grainy video (every pixel changes every
//!   frame) with a ticking progress bar.
//!
//! Text is DejaVu Sans Mono 9 with its real antialiasing (a 7 × 16 coverage atlas rendered
//! once by `benches/screen_font.py`). Every frame also comes with a *text mask*: the pixels
//! of windows' text and UI (not photos, not video, not the wallpaper), where the bench
//! measures legibility.

const FONT: &[u8] = include_bytes!("dejavu-sans-mono-9.alpha");
const GLYPH_W: u32 = 7;
const GLYPH_H: u32 = 16;
/// Line pitch of text.
const LINE: u32 = 18;

/// Which activity the clip shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scene {
    /// Typing into a text editor.
    Typing,
    /// Scrolling a web page with the wheel.
    Scrolling,
    /// Dragging a dialog across the desktop.
    Dragging,
    /// A video playing in a player window.
    Video,
}

impl Scene {
    /// Every scene, in clip order.
    pub const ALL: [Scene; 4] = [
        Scene::Typing,
        Scene::Scrolling,
        Scene::Dragging,
        Scene::Video,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Scene::Typing => "typing",
            Scene::Scrolling => "scrolling",
            Scene::Dragging => "dragging",
            Scene::Video => "video",
        }
    }

    /// Office content (the target applies to it); video is not.
    pub fn is_office(self) -> bool {
        self != Scene::Video
    }
}

/// A BGRx picture, rows packed, the fourth byte 0 (as `ximagesrc` leaves it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// BGRx bytes.
    pub pixels: Vec<u8>,
}

type Rgb = [u8; 3];

const fn rgb(hex: u32) -> Rgb {
    [hex as u8, (hex >> 8) as u8, (hex >> 16) as u8]
}

impl Picture {
    /// A picture of one colour (`0xRRGGBB`).
    pub fn new(width: u32, height: u32, colour: u32) -> Self {
        let c = rgb(colour);
        Picture {
            width,
            height,
            pixels: [c[0], c[1], c[2], 0].repeat((width * height) as usize),
        }
    }

    fn put(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && (x as u32) < self.width && (y as u32) < self.height {
            let i = ((y as u32 * self.width + x as u32) * 4) as usize;
            self.pixels[i..i + 3].copy_from_slice(&c);
        }
    }

    fn get(&self, x: u32, y: u32) -> Rgb {
        let i = ((y * self.width + x) * 4) as usize;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }

    fn fill(&mut self, x: i64, y: i64, w: u32, h: u32, colour: u32) {
        let c = rgb(colour);
        let (x0, y0) = (x.max(0) as u32, y.max(0) as u32);
        let x1 = ((x + i64::from(w)).max(0) as u32).min(self.width);
        let y1 = ((y + i64::from(h)).max(0) as u32).min(self.height);
        for yy in y0..y1 {
            for xx in x0..x1 {
                let i = ((yy * self.width + xx) * 4) as usize;
                self.pixels[i..i + 3].copy_from_slice(&c);
            }
        }
    }

    /// A 1-pixel frame around the rectangle.
    fn border(&mut self, x: i64, y: i64, w: u32, h: u32, colour: u32) {
        self.fill(x, y, w, 1, colour);
        self.fill(x, y + i64::from(h) - 1, w, 1, colour);
        self.fill(x, y, 1, h, colour);
        self.fill(x + i64::from(w) - 1, y, 1, h, colour);
    }

    /// Copies `from` (whole) with its top left at (`x`, `y`), clipped; rows `skip..` of
    /// `from` only, at most `rows` of them.
    fn blit(&mut self, from: &Picture, x: i64, y: i64, skip: u32, rows: u32) {
        let rows = rows.min(from.height.saturating_sub(skip));
        for r in 0..rows {
            let ty = y + i64::from(r);
            if ty < 0 || ty >= i64::from(self.height) {
                continue;
            }
            let x0 = x.max(0);
            let x1 = (x + i64::from(from.width)).min(i64::from(self.width));
            if x1 <= x0 {
                continue;
            }
            let src = (((skip + r) * from.width) as i64 + (x0 - x)) as usize * 4;
            let dst = (ty as usize * self.width as usize + x0 as usize) * 4;
            let len = (x1 - x0) as usize * 4;
            self.pixels[dst..dst + len].copy_from_slice(&from.pixels[src..src + len]);
        }
    }

    /// Draws `text` in DejaVu Sans Mono 9, antialiased over what is there.
    fn text(&mut self, x: i64, y: i64, text: &str, colour: u32) {
        let fg = rgb(colour);
        for (i, ch) in text.chars().enumerate() {
            let code = ch as u32;
            if !(33..127).contains(&code) {
                continue;
            }
            let glyph =
                &FONT[((code - 33) * GLYPH_W * GLYPH_H) as usize..][..(GLYPH_W * GLYPH_H) as usize];
            let gx = x + i as i64 * i64::from(GLYPH_W);
            for gy in 0..GLYPH_H {
                for gxx in 0..GLYPH_W {
                    let a = u32::from(glyph[(gy * GLYPH_W + gxx) as usize]);
                    if a == 0 {
                        continue;
                    }
                    let (px, py) = (gx + i64::from(gxx), y + i64::from(gy));
                    if px < 0
                        || py < 0
                        || px >= i64::from(self.width)
                        || py >= i64::from(self.height)
                    {
                        continue;
                    }
                    let bg = self.get(px as u32, py as u32);
                    let mix = |b: u8, f: u8| {
                        ((u32::from(b) * (255 - a) + u32::from(f) * a + 127) / 255) as u8
                    };
                    self.put(
                        px,
                        py,
                        [mix(bg[0], fg[0]), mix(bg[1], fg[1]), mix(bg[2], fg[2])],
                    );
                }
            }
        }
    }

    /// Bold-looking text: drawn twice, one pixel apart.
    fn bold(&mut self, x: i64, y: i64, text: &str, colour: u32) {
        self.text(x, y, text, colour);
        self.text(x + 1, y, text, colour);
    }
}

/// Which pixels are text and UI (1) and which are not (0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextMask {
    /// Width in pixels.
    pub width: u32,
    /// One byte per pixel.
    pub cells: Vec<u8>,
}

impl TextMask {
    fn set(&mut self, x: i64, y: i64, w: u32, h: u32, on: bool) {
        let height = (self.cells.len() / self.width as usize) as i64;
        let (x0, y0) = (x.max(0), y.max(0));
        let x1 = (x + i64::from(w)).min(i64::from(self.width));
        let y1 = (y + i64::from(h)).min(height);
        for yy in y0..y1 {
            for xx in x0..x1 {
                self.cells[(yy * i64::from(self.width) + xx) as usize] = u8::from(on);
            }
        }
    }
}

/// Deterministic noise in 0..256 for a position and a seed.
fn noise(x: u32, y: u32, seed: u32) -> u32 {
    let mut h =
        x.wrapping_mul(0x9e37_79b1) ^ y.wrapping_mul(0x85eb_ca77) ^ seed.wrapping_mul(0xc2b2_ae3d);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2c1b_3c6d);
    h ^= h >> 12;
    h & 0xff
}

/// A photo-like landscape: sky gradient, two rows of hills, fine texture, film grain of
/// ±`grain` per channel.
fn landscape(width: u32, height: u32, seed: u32, grain: u32) -> Picture {
    let mut p = Picture::new(width, height, 0);
    for y in 0..height {
        for x in 0..width {
            let (fx, fy) = (x as f32, y as f32 / height as f32);
            let hill1 = 0.55 + 0.08 * (fx * 0.011 + seed as f32).sin() + 0.04 * (fx * 0.037).sin();
            let hill2 = 0.72 + 0.05 * (fx * 0.006 + 1.3).sin() + 0.03 * (fx * 0.051 + 0.4).sin();
            let (r, g, b) = if fy < hill1 {
                let t = fy / hill1;
                (70.0 + 120.0 * t, 120.0 + 90.0 * t, 200.0 + 40.0 * t)
            } else if fy < hill2 {
                let t = (fy - hill1) / (hill2 - hill1);
                (60.0 + 40.0 * t, 110.0 - 20.0 * t, 70.0 + 10.0 * t)
            } else {
                let t = (fy - hill2) / (1.0 - hill2);
                (
                    40.0 + 30.0 * t,
                    80.0 + 30.0 * (fx * 0.02).sin() * t + 20.0,
                    40.0,
                )
            };
            // Texture (foliage, clouds) and film grain, independent per channel.
            let texture = 10.0
                * (fx * 0.21 + fy * 40.0).sin()
                * (fx * 0.07 - y as f32 * 0.19 + seed as f32).sin();
            let grain =
                |k: u32| (noise(x, y, seed * 3 + k) % (2 * grain + 1)) as f32 - grain as f32;
            let c = |v: f32, k: u32| (v + texture + grain(k)).clamp(0.0, 255.0) as u8;
            p.put(i64::from(x), i64::from(y), [c(b, 0), c(g, 1), c(r, 2)]);
        }
    }
    p
}

/// What the desktop behind the windows shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wallpaper {
    /// A landscape photo with texture and film grain (±3 per channel).
    Photo,
    /// A plain colour gradient, as many office desktops have.
    Plain,
}

/// The clip: a scene on a desktop of `width` × `height` at `fps` frames a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScreenClip {
    /// Screen width (at least 1024).
    pub width: u32,
    /// Screen height (at least 600).
    pub height: u32,
    /// Frames a second.
    pub fps: u32,
    /// The activity.
    pub scene: Scene,
    /// Length in seconds.
    pub seconds: f64,
    /// The desktop's background.
    pub wallpaper: Wallpaper,
}

impl ScreenClip {
    /// Number of frames.
    pub fn frame_count(&self) -> u32 {
        (self.seconds * f64::from(self.fps)).round() as u32
    }

    /// A renderer of this clip's frames.
    pub fn renderer(&self) -> Renderer {
        Renderer::new(*self)
    }
}

const EDITOR_LINES: [&str; 22] = [
    "Quarterly review - remote identity verification",
    "",
    "1. Volumes",
    "   Sessions completed: 18,204 (+6.1% on Q2)",
    "   Median session length: 7 min 40 s",
    "   Sessions abandoned by the customer: 3.2%",
    "",
    "2. Findings",
    "   - Document capture failed most often on glare;",
    "     the agent now asks the customer to tilt the card.",
    "   - Two recordings were re-muxed after a clock jump",
    "     on the customer's device; both verified intact.",
    "   - No retrieval without a stated reason (audit log).",
    "",
    "3. Actions for Q4",
    "   a) Move the CTI intake to streaming uploads.",
    "   b) Lower screen bandwidth for customers on LTE.",
    "   c) Review retention of sealed archives (10 years).",
    "",
    "4. Notes",
    "",
    "",
];

const TYPED: &str = "The screen codec sends only what changed; text stays exact.\nNext: measure it on the branch office links and report.";

const PAGE_PARAGRAPH: [&str; 6] = [
    "Before a session starts, the customer consents to camera, screen and recording",
    "separately. The operator cannot give consent on the customer's behalf, and a",
    "refusal ends the session without any media leaving the device. Consent is",
    "recorded with the session and sealed into the archive with the manifest, so a",
    "compliance officer can later show what the customer agreed to, and when.",
    "",
];

/// Keystroke times: the k-th character of [`TYPED`] appears at this many seconds.
fn keystroke_time(k: usize) -> f64 {
    // 110-200 ms between keys, a longer pause at spaces and line ends.
    let mut t = 0.3;
    for (i, ch) in TYPED.chars().take(k + 1).enumerate() {
        t += 0.11 + f64::from(noise(i as u32, 7, 3) % 90) / 1000.0;
        if ch == ' ' || ch == '\n' {
            t += 0.08;
        }
    }
    t
}

/// Renders the frames of one [`ScreenClip`], keeping what does not change between frames.
pub struct Renderer {
    clip: ScreenClip,
    desktop: Picture,
    /// The scrolled page, whole.
    page: Picture,
    /// Where the photo is on the page (y, height).
    page_photo: (u32, u32),
    dialog: Picture,
    video_source: Picture,
}

impl Renderer {
    fn new(clip: ScreenClip) -> Self {
        let (w, h) = (clip.width, clip.height);
        let mut desktop = match clip.wallpaper {
            Wallpaper::Photo => landscape(w, h, 11, 3),
            Wallpaper::Plain => {
                let mut p = Picture::new(w, h, 0);
                for y in 0..h {
                    let t = y * 60 / h;
                    p.fill(0, i64::from(y), w, 1, 0x1e_4a78 + t * 0x01_0101);
                }
                p
            }
        };
        desktop.fill(0, i64::from(h) - 40, w, 40, 0x20_2428);
        desktop.fill(8, i64::from(h) - 32, 72, 24, 0x3a_6ea5);
        desktop.bold(20, i64::from(h) - 28, "Start", 0xff_ffff);
        for (i, colour) in [0xd0_5050u32, 0x50_a050, 0xe0_b040, 0x40_80d0]
            .iter()
            .enumerate()
        {
            desktop.fill(100 + i as i64 * 36, i64::from(h) - 32, 24, 24, *colour);
        }
        let (page, page_photo) = Self::page();
        Renderer {
            clip,
            desktop,
            page,
            page_photo,
            dialog: Self::dialog(),
            video_source: landscape(2200, 360, 5, 3),
        }
    }

    /// The browser's page: 900 pixels wide, paragraphs, headings, a table and a photo.
    fn page() -> (Picture, (u32, u32)) {
        let mut p = Picture::new(900, 4000, 0xff_ffff);
        let mut y = 20i64;
        let mut photo = (0, 0);
        for section in 0..12 {
            p.bold(
                24,
                y,
                &format!("{}. Procedure step {}", section + 1, section + 1),
                0x1a_4d8f,
            );
            y += 28;
            for (i, line) in PAGE_PARAGRAPH.iter().enumerate() {
                let text = if i == 0 {
                    format!("({}) {line}", section + 1)
                } else {
                    (*line).to_string()
                };
                p.text(24, y, &text, 0x22_2222);
                y += i64::from(LINE);
            }
            if section == 2 {
                let img = landscape(420, 220, 23, 3);
                p.blit(&img, 24, y, 0, 220);
                photo = (y as u32, 220);
                y += 226;
                p.text(
                    24,
                    y,
                    "Figure 1: the verification desk at the Harbour branch.",
                    0x66_6666,
                );
                y += 30;
            }
            if section % 3 == 1 {
                for row in 0..6 {
                    let fill = if row == 0 {
                        0xe8_eef6
                    } else if row % 2 == 0 {
                        0xf7_f7f7
                    } else {
                        0xff_ffff
                    };
                    p.fill(24, y, 700, 22, fill);
                    p.border(24, y, 700, 23, 0xc0_c0c0);
                    let cells = if row == 0 {
                        ["Check", "Owner", "Limit", "Status"].map(String::from)
                    } else {
                        [
                            format!("KYC-{:03}", section * 10 + row),
                            format!("team {}", row),
                            format!("{} s", row * 30),
                            "ok".to_string(),
                        ]
                    };
                    for (c, cell) in cells.iter().enumerate() {
                        p.text(32 + c as i64 * 170, y + 3, cell, 0x22_2222);
                    }
                    y += 22;
                }
                y += 14;
            }
            y += 10;
        }
        (p, photo)
    }

    fn dialog() -> Picture {
        let mut d = Picture::new(440, 300, 0xf2_f2f2);
        d.fill(0, 0, 440, 28, 0x2d_5f9e);
        d.bold(10, 6, "Account details", 0xff_ffff);
        d.text(412, 6, "x", 0xff_ffff);
        let fields = [
            ("Customer", "Jane Q. Example"),
            ("Account", "DE89 3704 0044 0532 0130 00"),
            ("Opened", "2019-04-02"),
            ("Branch", "Harbour, desk 4"),
            ("Risk class", "low (reviewed 2026-03)"),
        ];
        for (i, (label, value)) in fields.iter().enumerate() {
            let y = 44 + i as i64 * 34;
            d.text(16, y + 4, label, 0x33_3333);
            d.fill(120, y, 300, 24, 0xff_ffff);
            d.border(120, y, 300, 24, 0xa0_a0a0);
            d.text(126, y + 4, value, 0x11_1111);
        }
        for (i, label) in ["OK", "Cancel"].iter().enumerate() {
            let x = 250 + i as i64 * 90;
            d.fill(x, 256, 80, 28, 0xe1_e1e1);
            d.border(x, 256, 80, 28, 0x70_7070);
            d.text(x + 40 - label.len() as i64 * 7 / 2, 262, label, 0x11_1111);
        }
        d.border(0, 0, 440, 300, 0x50_5050);
        d
    }

    /// Draws frame `n` into `out` and marks its text and UI pixels in `mask`.
    pub fn render(&mut self, n: u32, out: &mut Picture, mask: &mut TextMask) {
        let t = f64::from(n) / f64::from(self.clip.fps);
        let (w, h) = (self.clip.width, self.clip.height);
        out.width = w;
        out.height = h;
        out.pixels.clear();
        out.pixels.extend_from_slice(&self.desktop.pixels);
        mask.width = w;
        mask.cells.clear();
        mask.cells.resize((w * h) as usize, 0);
        // Taskbar clock: ticks every second.
        let secs = 9 * 3600 + 41 * 60 + 17 + t as u32;
        let clock = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
        out.text(i64::from(w) - 76, i64::from(h) - 28, &clock, 0xff_ffff);
        mask.set(0, i64::from(h) - 40, w, 40, true);

        let pointer = match self.clip.scene {
            Scene::Typing => self.typing(t, out, mask),
            Scene::Scrolling => self.scrolling(t, out, mask),
            Scene::Dragging => self.dragging(t, out, mask),
            Scene::Video => self.video(n, t, out, mask),
        };
        draw_pointer(out, pointer.0, pointer.1);
    }

    fn typing(&self, t: f64, out: &mut Picture, mask: &mut TextMask) -> (i64, i64) {
        let (x, y, w, h) = (60i64, 40i64, 900u32, 580u32);
        window_frame(out, x, y, w, h, "report.txt - Editor");
        out.fill(x + 1, y + 27, w - 2, 22, 0xf3_f3f3);
        out.text(
            x + 10,
            y + 30,
            "File  Edit  View  Search  Tools  Help",
            0x22_2222,
        );
        let top = y + 50;
        out.fill(x + 1, top, 44, h - 50 - 23, 0xf0_f0f0);
        let typed = (0..TYPED.chars().count())
            .take_while(|&k| keystroke_time(k) <= t)
            .count();
        let mut lines: Vec<String> = EDITOR_LINES.iter().map(|s| s.to_string()).collect();
        let first_typed_line = 20;
        lines.truncate(first_typed_line);
        let mut current = String::new();
        let mut typed_lines = Vec::new();
        for ch in TYPED.chars().take(typed) {
            if ch == '\n' {
                typed_lines.push(std::mem::take(&mut current));
            } else {
                current.push(ch);
            }
        }
        typed_lines.push(current);
        lines.extend(typed_lines);
        let rows = ((h - 50 - 23) / LINE) as usize;
        for (i, line) in lines.iter().take(rows).enumerate() {
            let ly = top + 4 + i as i64 * i64::from(LINE);
            out.text(x + 6, ly, &format!("{:>4}", i + 1), 0x90_9090);
            let colour = if line.starts_with(|c: char| c.is_ascii_digit()) {
                0x1a_4d8f
            } else {
                0x1e_1e1e
            };
            out.text(x + 52, ly, line, colour);
        }
        let cursor_line = lines.len() - 1;
        let cursor_col = lines[cursor_line].chars().count();
        // The cursor is on while typing, then blinks every 530 ms.
        let last_key = if typed == 0 {
            0.0
        } else {
            keystroke_time(typed - 1)
        };
        if t - last_key < 0.5 || ((t - last_key) / 0.53) as u32 % 2 == 1 {
            out.fill(
                x + 52 + cursor_col as i64 * i64::from(GLYPH_W),
                top + 4 + cursor_line as i64 * i64::from(LINE),
                1,
                16,
                0x00_0000,
            );
        }
        out.fill(x + 1, y + i64::from(h) - 23, w - 2, 22, 0x2d_5f9e);
        out.text(
            x + 10,
            y + i64::from(h) - 20,
            &format!(
                "Ln {}, Col {}    UTF-8    Plain text",
                cursor_line + 1,
                cursor_col + 1
            ),
            0xff_ffff,
        );
        mask.set(x, y, w, h, true);
        (x + 620, y + 300)
    }

    fn scrolling(&self, t: f64, out: &mut Picture, mask: &mut TextMask) -> (i64, i64) {
        let (x, y, w, h) = (150i64, 24i64, 940u32, 640u32);
        window_frame(out, x, y, w, h, "KYC procedure - Intranet - Browser");
        out.fill(x + 1, y + 27, w - 2, 34, 0xf1_f3f4);
        out.fill(x + 60, y + 32, 700, 24, 0xff_ffff);
        out.border(x + 60, y + 32, 700, 24, 0xc8_c8c8);
        out.text(
            x + 68,
            y + 36,
            "https://intranet.bank.example/policies/kyc/remote-procedure",
            0x33_3333,
        );
        // Wheel notches: three lines (54 px) each, animated over 150 ms; a pause to read.
        let mut offset = 0.0f64;
        for k in 0..40 {
            let start = 0.4 + 0.42 * f64::from(k) + if k >= 6 { 1.2 } else { 0.0 };
            let p = ((t - start) / 0.15).clamp(0.0, 1.0);
            offset += 54.0 * (1.0 - (1.0 - p) * (1.0 - p));
        }
        let view_top = y + 62;
        let view_h = h - 62 - 1;
        let max_offset = self.page.height - view_h;
        let offset = (offset.round() as u32).min(max_offset);
        out.blit(&self.page, x + 1, view_top, offset, view_h);
        mask.set(x, y, w, h, true);
        // The photo is not text.
        let (py, ph) = self.page_photo;
        mask.set(
            x + 25,
            view_top + i64::from(py) - i64::from(offset),
            420,
            ph,
            false,
        );
        // Scrollbar.
        let bar_x = x + i64::from(w) - 15;
        out.fill(bar_x, view_top, 14, view_h, 0xf0_f0f0);
        let thumb_h = view_h * view_h / self.page.height;
        let thumb_y = view_top + i64::from(offset * (view_h - thumb_h) / max_offset);
        out.fill(bar_x + 2, thumb_y, 10, thumb_h, 0xa8_a8a8);
        (x + 500, y + 400)
    }

    fn dragging(&self, t: f64, out: &mut Picture, mask: &mut TextMask) -> (i64, i64) {
        // Drag from A to B (0.5 s to 3 s), pause, back towards C (3.5 s to 5.5 s).
        let ease = |p: f64| p * p * (3.0 - 2.0 * p);
        let path = [
            (0.5, 120.0, 110.0),
            (3.0, 700.0, 330.0),
            (3.5, 700.0, 330.0),
            (5.5, 380.0, 180.0),
        ];
        let (mut dx, mut dy) = (path[0].1, path[0].2);
        for pair in path.windows(2) {
            let (t0, x0, y0) = pair[0];
            let (t1, x1, y1) = pair[1];
            if t >= t0 {
                let p = ease(((t - t0) / (t1 - t0)).clamp(0.0, 1.0));
                dx = x0 + (x1 - x0) * p;
                dy = y0 + (y1 - y0) * p;
            }
        }
        let (x, y) = (dx.round() as i64, dy.round() as i64);
        out.blit(&self.dialog, x, y, 0, self.dialog.height);
        mask.set(x, y, self.dialog.width, self.dialog.height, true);
        (x + 200, y + 12)
    }

    fn video(&self, n: u32, t: f64, out: &mut Picture, mask: &mut TextMask) -> (i64, i64) {
        let (x, y, w, h) = (280i64, 80i64, 680u32, 450u32);
        window_frame(out, x, y, w, h, "training-video.mp4 - Player");
        let (vx, vy) = (x + 20, y + 36);
        // The picture pans across the landscape at 60 px/s; a ball bounces; fresh grain
        // every frame, as decoded video has.
        let pan = (t * 60.0) as u32 % (self.video_source.width - 640);
        for row in 0..360u32 {
            let src = ((row * self.video_source.width + pan) * 4) as usize;
            let dst = (((vy as u32 + row) * out.width + vx as u32) * 4) as usize;
            for col in 0..640usize {
                for c in 0..3 {
                    let grain = (noise(col as u32, row, n * 3 + c as u32 + 99) % 7) as i32 - 3;
                    let v = i32::from(self.video_source.pixels[src + col * 4 + c]) + grain;
                    out.pixels[dst + col * 4 + c] = v.clamp(0, 255) as u8;
                }
            }
        }
        let bx = 320.0 + 250.0 * (t * 1.7).sin();
        let by = 180.0 - 120.0 * (t * 2.9).sin().abs();
        for yy in -24i64..=24 {
            for xx in -24i64..=24 {
                if xx * xx + yy * yy <= 24 * 24 {
                    out.put(vx + bx as i64 + xx, vy + by as i64 + yy, rgb(0xe0_5030));
                }
            }
        }
        let cy = vy + 370;
        out.fill(x + 1, cy - 4, w - 2, 44, 0x30_3030);
        out.text(x + 20, cy + 8, "||", 0xff_ffff);
        let total = 185.0;
        let done = 12.0 + t;
        out.fill(x + 60, cy + 14, 460, 4, 0x60_6060);
        out.fill(x + 60, cy + 14, (460.0 * done / total) as u32, 4, 0xe0_5030);
        let d = done as u32;
        out.text(
            x + 540,
            cy + 8,
            &format!("{}:{:02} / 3:05", d / 60, d % 60),
            0xff_ffff,
        );
        mask.set(x, y, w, 36, true);
        mask.set(x, cy - 4, w, 44, true);
        (x + 660, y + 500)
    }
}

/// A window with a 1-pixel border and a title bar.
fn window_frame(out: &mut Picture, x: i64, y: i64, w: u32, h: u32, title: &str) {
    out.fill(x, y, w, h, 0xff_ffff);
    out.fill(x, y, w, 27, 0xdc_dcdc);
    out.text(x + 10, y + 5, title, 0x1e_1e1e);
    for (i, colour) in [0xe0_6050u32, 0xe0_b040, 0x60_b050].iter().enumerate() {
        out.fill(
            x + i64::from(w) - 70 + i as i64 * 20,
            y + 8,
            12,
            12,
            *colour,
        );
    }
    out.border(x, y, w, h, 0x80_8080);
}

/// The arrow pointer `ximagesrc` draws (12 × 19, black outline, white inside).
fn draw_pointer(out: &mut Picture, x: i64, y: i64) {
    for row in 0..19i64 {
        let width = if row < 12 { row + 1 } else { 12 - (row - 12) };
        for col in 0..width.max(1) {
            let edge = col == 0 || col == width - 1 || row == 18;
            out.put(
                x + col,
                y + row,
                if edge { [0, 0, 0] } else { [255, 255, 255] },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_deterministic_and_scenes_change_what_they_should() {
        for scene in Scene::ALL {
            let clip = ScreenClip {
                width: 1280,
                height: 720,
                fps: 10,
                scene,
                seconds: 6.0,
                wallpaper: Wallpaper::Photo,
            };
            let mut a = clip.renderer();
            let mut b = clip.renderer();
            let (mut pa, mut pb) = (Picture::new(1, 1, 0), Picture::new(1, 1, 0));
            let (mut ma, mut mb) = (
                TextMask {
                    width: 1,
                    cells: vec![],
                },
                TextMask {
                    width: 1,
                    cells: vec![],
                },
            );
            a.render(25, &mut pa, &mut ma);
            b.render(25, &mut pb, &mut mb);
            assert_eq!(pa, pb, "{scene:?}");
            assert_eq!(ma, mb);
            assert!(ma.cells.contains(&1));
            a.render(26, &mut pb, &mut mb);
            assert_ne!(pa, pb, "{scene:?}: frames 25 and 26 are equal");
        }
    }
}
