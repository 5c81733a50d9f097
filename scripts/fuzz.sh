#!/usr/bin/env bash
# Fuzzes the sealed-archive reader (fuzz target `archive_parse`) for SECONDS seconds and
# prints how many inputs ran. Usage: scripts/fuzz.sh [SECONDS] (default 60).
#
# Installs cargo-fuzz under ~/.cache/idv/tools if it is missing. Only a stable toolchain is
# assumed: cargo-fuzz passes nightly-only flags (-Zsanitizer=address, -Cpasses=sancov-module),
# so RUSTC_BOOTSTRAP=1 lets stable rustc accept them. libFuzzer itself is compiled from
# source by libfuzzer-sys with the system C++ compiler (g++ from build-essential will do).
#
# The corpus lives in fuzz/corpus/archive_parse (not committed); each run first writes the
# seed archives into it (the target does, when IDV_FUZZ_SEED_DIR is set), so the fuzzer
# starts from archives it can open. Crashes land in fuzz/artifacts/archive_parse/.
set -euo pipefail

SECONDS_TO_RUN="${1:-60}"
CACHE_DIR="${IDV_CACHE_DIR:-$HOME/.cache/idv}"
CARGO_FUZZ_VERSION="0.13.2"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
CORPUS="$REPO/fuzz/corpus/archive_parse"
LOG="$REPO/fuzz/artifacts/archive_parse.log"

export PATH="$CACHE_DIR/tools/bin:$PATH"
export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

if ! command -v cargo-fuzz >/dev/null; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION into $CACHE_DIR/tools"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$CACHE_DIR/tools"
fi

cd "$REPO"
mkdir -p "$CORPUS" "$(dirname "$LOG")"
cargo fuzz build archive_parse

# -max_len: room to grow past the largest seed (~70 KB); the target skips inputs over 1 MiB.
# -timeout: one input taking 10 s counts as a hang. -malloc_limit_mb: no input up to
# max_len justifies a single allocation this large (the format's own caps are 16 MiB).
IDV_FUZZ_SEED_DIR="$CORPUS" cargo fuzz run archive_parse "$CORPUS" -- \
  -max_total_time="$SECONDS_TO_RUN" \
  -max_len=131072 \
  -timeout=10 \
  -malloc_limit_mb=64 \
  -print_final_stats=1 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}

runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOG" | tail -1)"
if [ "$status" -eq 0 ]; then
  echo "fuzz: archive_parse ran ${runs:-?} inputs in ${SECONDS_TO_RUN}s with no crash (corpus: $(ls "$CORPUS" | wc -l) inputs)"
else
  echo "fuzz: archive_parse FAILED after ${runs:-?} inputs; see $LOG and fuzz/artifacts/archive_parse/" >&2
fi
exit "$status"
