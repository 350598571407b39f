#!/usr/bin/env bash
# Fuzzes the decoders of peer bytes (fuzz/fuzz_targets): Kafka request frames, produced record
# batches, and the consumer protocol's assignments and subscriptions (every target `cargo fuzz
# list` shows).
#
# Usage: bash scripts/fuzz.sh [seconds per target]      (default 60)
#        bash scripts/fuzz.sh --smoke [seconds]          (default 20; what scripts/test.sh runs)
#
# A full run installs cargo-fuzz if missing and uses the nightly toolchain when one is installed,
# else stable with RUSTC_BOOTSTRAP=1 (cargo fuzz needs nightly flags). The smoke run is CI's
# bounded step: it installs nothing and runs only with `cargo +nightly fuzz`; without nightly or
# cargo-fuzz it prints why and is skipped (exit 0), so a machine without them still passes the
# suite. Either run fails on the first crash, whose input libFuzzer leaves in
# fuzz/artifacts/<target>/. The corpus grows in fuzz/corpus/<target>/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

smoke=0
if [ "${1:-}" = "--smoke" ]; then
  smoke=1
  shift
fi
seconds="${1:-$([ "$smoke" -eq 1 ] && echo 20 || echo 60)}"

has_nightly=0
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  has_nightly=1
fi

if [ "$smoke" -eq 1 ]; then
  echo "== fuzz smoke (${seconds}s per target)"
  if [ "$has_nightly" -eq 0 ]; then
    echo "fuzz smoke skipped: no nightly toolchain (rustup toolchain install nightly)"
    exit 0
  fi
  if ! command -v cargo-fuzz >/dev/null; then
    echo "fuzz smoke skipped: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)"
    exit 0
  fi
else
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
fi

if [ "$has_nightly" -eq 1 ]; then
  fuzz() { cargo +nightly fuzz "$@"; }
else
  fuzz() { RUSTC_BOOTSTRAP=1 cargo fuzz "$@"; }
fi

for target in $(fuzz list); do
  echo "== fuzz $target for ${seconds}s"
  fuzz run "$target" -- -max_total_time="$seconds"
done
