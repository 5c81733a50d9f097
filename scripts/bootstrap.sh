#!/usr/bin/env bash
# Idempotent machine setup for idv: installs with apt only what is missing, and the
# loopback S3 server the blob-store tests use (cached under ~/.cache/idv so CI reuses it).
# Prints what it did. Safe to run again and again.
set -euo pipefail

CACHE_DIR="${IDV_CACHE_DIR:-$HOME/.cache/idv}"
S3S_FS_VERSION="0.14.1" # 0.17 needs Rust 1.96; 0.14.1 is checked on Rust 1.95

# System packages: GStreamer 1.22 (dev + plugins) for the muxer and agent, pkg-config for
# the -sys crates, libopus (dev) for the muxer's Opus CTI decoder, ffmpeg (ffprobe) to check
# what we mux, Xvfb (and xdpyinfo) for the agent's X11 screen capture tests, the ALSA source
# for the agent's microphone reference (`--mic-reference alsa`; `pulse` is in plugins-good) and
# a PulseAudio daemon with ALSA's PulseAudio plugin to test both against a real sound server,
# Chromium for the console's browser tests (driven by playwright-core from npm, below).
PACKAGES=(
  pkg-config build-essential
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools gstreamer1.0-x
  gstreamer1.0-plugins-base-apps gstreamer1.0-alsa
  pulseaudio libasound2-plugins
  ffmpeg
  libopus-dev
  xvfb x11-utils
  chromium
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "bootstrap: system packages present (${#PACKAGES[@]} checked)"
else
  echo "bootstrap: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "bootstrap: installed ${#missing[@]} package(s)"
fi

# Loopback S3-compatible server for the blob-store conformance suite (never a mock).
S3S_BIN="$CACHE_DIR/tools/bin/s3s-fs"
if [ -x "$S3S_BIN" ]; then
  echo "bootstrap: s3s-fs present at $S3S_BIN"
else
  echo "bootstrap: building s3s-fs $S3S_FS_VERSION into $CACHE_DIR/tools (a few minutes, once)"
  mkdir -p "$CACHE_DIR/tools"
  cargo install --quiet --locked --root "$CACHE_DIR/tools" "s3s-fs@$S3S_FS_VERSION" --features binary
  echo "bootstrap: s3s-fs installed"
fi

# The console's browser tests: playwright-core (no browser download: it drives Debian's
# /usr/bin/chromium), at the versions console/browser-tests/package-lock.json pins.
BROWSER_TESTS="$(dirname "$0")/../console/browser-tests"
if [ -d "$BROWSER_TESTS/node_modules/playwright-core" ]; then
  echo "bootstrap: playwright-core present"
else
  echo "bootstrap: installing playwright-core for the browser tests"
  (cd "$BROWSER_TESTS" && npm ci --silent --no-audit --no-fund)
fi
