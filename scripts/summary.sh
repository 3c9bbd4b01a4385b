#!/usr/bin/env bash
# The summary that closes `make test`: each suite, what it ran, what it
# skipped and why (recorded by scripts/suite.sh), then one closing line.
#   scripts/summary.sh --reset          forget the previous run's records
#   scripts/summary.sh [SUITE...]       the summary; a SUITE named here that
#                                       recorded nothing is reported as not run
set -euo pipefail
cd "$(dirname "$0")/.."
summary=target/test-summary.tsv
if [ "${1:-}" = --reset ]; then
  mkdir -p target
  : >"$summary"
  exit 0
fi
touch "$summary"
# A suite runs only once its prerequisites are built: one whose build failed
# (make --keep-going goes on) leaves no record, and says so here.
not_run=()
for suite in "$@"; do
  awk -F '\t' -v name="$suite" '$1 == name { found = 1 } END { exit !found }' "$summary" ||
    not_run+=("$suite")
done
[ -s "$summary" ] || ((${#not_run[@]})) || { echo "summary: no suite ran"; exit 0; }

echo
echo "== Summary of make test"
awk -F '\t' '
  { line[NR] = $0 }
  END {
    for (i = 1; i <= NR; i++) {
      split(line[i], f, "\t")
      if (f[4] == "-") {
        printf "  %-18s skipped: %s\n", f[1], f[5]
        continue
      }
      if (f[2] + f[3] + f[4] == 0 && f[5] !~ /^FAILED/) {
        printf "  %-18s ok (a check: it counts no tests)\n", f[1]
        continue
      }
      printf "  %-18s %d passed, %d failed, %d skipped\n", f[1], f[2], f[3], f[4]
      if (f[5] != "-" && f[5] != "") {
        n = split(f[5], reasons, "\x1f")
        for (j = 1; j <= n; j++) printf "  %-18s   %s\n", "", reasons[j]
      }
    }
  }' "$summary"
for suite in "${not_run[@]}"; do
  printf '  %-18s not run: a step it needs failed (see the log above)\n' "$suite"
done
awk -F '\t' -v not_run="${#not_run[@]}" '
  $4 == "-" { suites++ ; next }
  { p += $2; f += $3; s += $4 }
  END {
    if (suites) printf "%d suite(s) skipped as a whole: their programs are missing (see above; make tools, or docs/development.md)\n", suites
    if (not_run) printf "%d suite(s) not run: a step they need failed\n", not_run
    printf "total: %d passed, %d failed, %d skipped\n", p, f, s
  }' "$summary"
