#!/usr/bin/env bash
# Fuzzes the decoders of peer bytes (fuzz/fuzz_targets): Kafka request frames, produced record
# batches, and the consumer protocol's assignments and subscriptions (every target `cargo fuzz
# list` shows). Installs cargo-fuzz if missing. The toolchain here is stable; cargo fuzz needs
# nightly flags, which RUSTC_BOOTSTRAP=1 unlocks on stable.
# Usage: bash scripts/fuzz.sh [seconds per target]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in $(cargo fuzz list); do
  echo "== fuzz $target for ${seconds}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time="$seconds"
done
