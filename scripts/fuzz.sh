#!/usr/bin/env bash
# Fuzzes the parsers for SECONDS seconds each and prints how many inputs ran: the
# sealed-archive reader (`archive_parse`), the agent media frame decoder (`frame_parse`) and
# the screen-codec decoder (`screen_decode`).
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...] (default 60 s, every target).
#
# Installs cargo-fuzz under ~/.cache/idv/tools if it is missing. Only a stable toolchain is
# assumed: cargo-fuzz passes nightly-only flags (-Zsanitizer=address, -Cpasses=sancov-module),
# so RUSTC_BOOTSTRAP=1 lets stable rustc accept them. libFuzzer itself is compiled from
# source by libfuzzer-sys with the system C++ compiler (g++ from build-essential will do).
#
# Each target's corpus lives in fuzz/corpus/TARGET (not committed); each run first writes
# seed inputs into it (the targets do, when IDV_FUZZ_SEED_DIR is set), so the fuzzer starts
# from inputs that parse. Crashes land in fuzz/artifacts/TARGET/.
set -euo pipefail

SECONDS_TO_RUN="${1:-60}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(archive_parse frame_parse screen_decode)
CACHE_DIR="${IDV_CACHE_DIR:-$HOME/.cache/idv}"
CARGO_FUZZ_VERSION="0.13.2"
REPO="$(cd "$(dirname "$0")/.." && pwd)"

export PATH="$CACHE_DIR/tools/bin:$PATH"
export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

if ! command -v cargo-fuzz >/dev/null; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION into $CACHE_DIR/tools"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$CACHE_DIR/tools"
fi

cd "$REPO"
failed=0
for target in "${TARGETS[@]}"; do
  corpus="$REPO/fuzz/corpus/$target"
  log="$REPO/fuzz/artifacts/$target.log"
  mkdir -p "$corpus" "$(dirname "$log")"
  cargo fuzz build "$target"
  # -max_len: room to grow past the largest seed (~70 KB); the targets skip inputs over 1 MiB.
  # -timeout: one input taking 10 s counts as a hang. -malloc_limit_mb: no input up to
  # max_len justifies a single allocation this large (the formats' own caps are 16 MiB).
  set +e
  IDV_FUZZ_SEED_DIR="$corpus" cargo fuzz run "$target" "$corpus" -- \
    -max_total_time="$SECONDS_TO_RUN" \
    -max_len=131072 \
    -timeout=10 \
    -malloc_limit_mb=64 \
    -print_final_stats=1 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  set -e
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  if [ "$status" -eq 0 ]; then
    echo "fuzz: $target ran ${runs:-?} inputs in ${SECONDS_TO_RUN}s with no crash (corpus: $(ls "$corpus" | wc -l) inputs)"
  else
    echo "fuzz: $target FAILED after ${runs:-?} inputs; see $log and fuzz/artifacts/$target/" >&2
    failed=1
  fi
done
exit "$failed"
