#!/usr/bin/env bash
# `make fuzz`: seeds the corpora and fuzzes each target for its share of
# FUZZ_SECONDS (default 1800: 15 min structured, 10 min bytes, 5 min
# settings). Needs the nightly toolchain and cargo-fuzz. Crashes land in
# fuzz/artifacts/<target>/; each one found is to be kept as a regression
# test next to the code it broke (none found so far).
set -euo pipefail
cd "$(dirname "$0")"
total="${FUZZ_SECONDS:-1800}"
./seed-corpus.sh
for share in "validate_structured 50" "validate 33" "validate_settings 17"; do
  set -- $share
  seconds=$((total * $2 / 100))
  echo "== fuzzing $1 for ${seconds}s"
  cargo +nightly fuzz run "$1" -- -max_total_time="$seconds" -print_final_stats=1 2>&1 | tee "fuzz-$1.log" | grep -E "^#[0-9]+ +(DONE|pulse)|ERROR|panicked|stat::number_of_executed_units" || true
done
