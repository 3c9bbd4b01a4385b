#!/usr/bin/env bash
# Runs one test suite of `make test` and records what it ran and skipped, for
# the summary that closes `make test` (scripts/summary.sh).
#   scripts/suite.sh NAME COMMAND [ARG...]   run it, stream its output, record
#   scripts/suite.sh --skipped NAME REASON   record a suite that could not run
# The counts are read from the runners' own closing lines: cargo test's
# `test result:`, bats' TAP (`ok`, `not ok`, `# skip`), and the plain
# `N passed, N failed[, N skipped]` of the cluster scenarios. A line of the
# output that starts with `skipped: ` gives the reason of what it skipped;
# SUITE_NOTE says why, where the runner gives no reason itself (cargo's
# #[ignore]d tests).
set -euo pipefail
cd "$(dirname "$0")/.."
summary=target/test-summary.tsv
mkdir -p target/test-logs
touch "$summary"

if [ "${1:-}" = --skipped ]; then
  printf '%s\t0\t0\t-\t%s\n' "$2" "$3" >>"$summary"
  echo "skipped: $2: $3"
  exit 0
fi

name="$1"
shift
log="target/test-logs/$name.log"
status=0
"$@" 2>&1 | tee "$log" || status=$?

read -r passed failed skipped < <(awk '
  /^test result: / {
    for (i = 1; i <= NF; i++) {
      if ($(i + 1) ~ /^passed;?$/) p += $i
      if ($(i + 1) ~ /^failed;?$/) f += $i
      if ($(i + 1) ~ /^ignored;?$/) s += $i
    }
  }
  /^ok [0-9]+ / { if ($0 ~ /# skip/) s++; else p++ }
  /^not ok [0-9]+ / { f++ }
  /^([A-Za-z-]+: )?[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$/ {
    sub(/^[A-Za-z-]+: /, "")
    p += $1; f += $3; if (NF >= 6) s += $5
  }
  END { printf "%d %d %d\n", p, f, s }' "$log")
# The reasons, one field, separated by a character no message has.
reasons="$(sed -n 's/^skipped: //p' "$log" | awk '!seen[$0]++' | paste -sd $'\x1f' -)"
if [ -z "$reasons" ] && [ "$skipped" -gt 0 ]; then
  reasons="${SUITE_NOTE:-}"
fi
if [ "$status" -ne 0 ]; then
  printf '%s\t%d\t%d\t%d\tFAILED (exit %d, log: %s)\n' "$name" "$passed" "$failed" "$skipped" "$status" "$log" >>"$summary"
  exit "$status"
fi
printf '%s\t%d\t%d\t%d\t%s\n' "$name" "$passed" "$failed" "$skipped" "${reasons:--}" >>"$summary"
