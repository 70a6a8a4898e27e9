#!/usr/bin/env bash
# Runs the broker's cargo-fuzz targets (broker/fuzz) for a fixed time each and fails on any
# crash, leak, timeout or out-of-memory.
#
#   e2e/scripts/fuzz.sh [seconds-per-target] [target ...]   (default: 25 s, every target)
#
# Installs cargo-fuzz (pinned, into $OXBOW_CACHE/cargo-fuzz, idempotent) and needs the nightly
# toolchain (sanitizers). Each target starts from the committed seed corpus of real client
# requests (broker/fuzz/corpus/<target>) plus what earlier runs found
# ($OXBOW_CACHE/fuzz/corpus/<target>, new inputs are added there, never to the repository).
# A crashing input is kept in $OXBOW_CACHE/fuzz/artifacts/<target>/ and printed; turn it into
# a regression test that runs without the fuzzer. Prints execs and coverage per target.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${OXBOW_CACHE:-$HOME/.cache/oxbow}"
CARGO_FUZZ_VERSION=0.13.1
SECONDS_PER_TARGET="${1:-25}"
shift || true
TARGETS=("$@")
[[ ${#TARGETS[@]} == 0 ]] && TARGETS=(request log offsets_codec)

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz.sh: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
  exit 1
fi
FUZZ_BIN="$CACHE/cargo-fuzz/bin"
if ! "$FUZZ_BIN/cargo-fuzz" --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION\$"; then
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" --root "$CACHE/cargo-fuzz"
fi
export PATH="$FUZZ_BIN:$PATH"

cd "$ROOT/broker/fuzz"
# One sanitizer build for all targets: the cost that dominates a short run, so its target
# dir lives in the cache and later runs on the same machine rebuild only the broker.
TARGET_DIR="$CACHE/fuzz/target"
cargo +nightly fuzz build -O --target-dir "$TARGET_DIR"

failed=0
for target in "${TARGETS[@]}"; do
  work="$CACHE/fuzz/corpus/$target"
  artifacts="$CACHE/fuzz/artifacts/$target/"
  mkdir -p "$work" "$artifacts"
  log="$(mktemp)"
  echo "fuzz.sh: $target for ${SECONDS_PER_TARGET}s"
  set +e
  cargo +nightly fuzz run -O --target-dir "$TARGET_DIR" "$target" "$work" "corpus/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=30 -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  stats="$(grep -E 'DONE +cov:' "$log" | tail -1 || true)"
  execs="$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)"
  if [[ $rc != 0 ]]; then
    failed=1
    tail -n 60 "$log"
    echo "fuzz.sh: $target FAILED (rc=$rc); input kept in $artifacts"
  else
    echo "fuzz.sh: $target ok: ${execs:-?} execs in ${SECONDS_PER_TARGET}s; ${stats:-no final stats}"
  fi
  rm -f "$log"
done
exit $failed
