#!/usr/bin/env python3
"""Renders the glyph atlas of the screen-codec bench's clip (benches/src/screen_clip/).

Usage: benches/screen_font.py [OUT]  (default benches/src/screen_clip/dejavu-sans-mono-9.alpha)

GStreamer's textoverlay (Pango, FreeType, grayscale antialiasing) draws the printable ASCII
characters 33..126 in DejaVu Sans Mono 9 black on white; this keeps, for each character, a
7 x 16 cell of coverage bytes (0 = paper, 255 = ink), row by row: 94 * 112 bytes. The bench
then draws text with real antialiased edges on any colours without Pango, and the clip stays
the same on every machine, whatever fonts it has. DejaVu fonts: Bitstream Vera licence
(free to use, change and redistribute).
"""

import pathlib
import subprocess
import sys
import tempfile

ADVANCE, CELL_H, WIDTH, HEIGHT = 7, 16, 700, 24


def main():
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else
                       pathlib.Path(__file__).parent / "src/screen_clip/dejavu-sans-mono-9.alpha")
    chars = "".join(chr(c) for c in range(33, 127))
    markup = chars.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    with tempfile.TemporaryDirectory() as tmp:
        raw = pathlib.Path(tmp) / "atlas.raw"
        subprocess.run([
            "gst-launch-1.0", "-q", "videotestsrc", "pattern=white", "num-buffers=1", "!",
            f"video/x-raw,format=BGRx,width={WIDTH},height={HEIGHT}", "!",
            "textoverlay", f"text={markup}", "font-desc=DejaVu Sans Mono 9", "halignment=left",
            "valignment=top", "xpad=0", "ypad=0", "draw-outline=false", "draw-shadow=false",
            "color=0xff000000", "auto-resize=false", "!", "filesink", f"location={raw}",
        ], check=True)
        pixels = raw.read_bytes()
    cells = bytearray()
    for i in range(len(chars)):
        for y in range(CELL_H):
            for x in range(ADVANCE):
                green = pixels[(y * WIDTH + i * ADVANCE + x) * 4 + 1]
                cells.append(255 - green)
    out.write_bytes(bytes(cells))
    print(f"{out}: {len(chars)} glyphs of {ADVANCE}x{CELL_H}, {len(cells)} bytes")


if __name__ == "__main__":
    main()
