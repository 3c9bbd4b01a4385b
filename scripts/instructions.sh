#!/usr/bin/env bash
# `make bench-instructions`: instructions per evaluation of the native
# decision, counted by callgrind (repeatable where timings are not), for the
# requests of `make bench`, and the size of the stamped Job of the README's
# example. One evaluation = (instructions of 11 evaluations - of 1) / 10.
# Usage: scripts/instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "instructions: valgrind is needed (Debian: valgrind)" >&2; exit 1; }
cargo build --locked --release --example evaluate >/dev/null 2>&1
program=target/release/examples/evaluate
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
count() {
  valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" "$program" "$1" "$2" >/dev/null 2>&1
  callgrind_annotate "$out/callgrind.out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'
}
printf '| request | instructions per evaluation |\n|---|---|\n'
for fixture in create-unlabelled create-labelled update-image-changed update-unchanged-image; do
  file="e2e-tests/fixtures/$fixture.json"
  one="$(count "$file" 1)"
  eleven="$(count "$file" 11)"
  printf '| %s | %s |\n' "$fixture" "$(( (eleven - one) / 10 ))"
done
job_bytes="$(jq -r '.request.oldObject.metadata.annotations["cache-buster.io/job"] | length' e2e-tests/fixtures/update-image-changed.json)"
echo
echo "stamped Job of the README's example (shop, ghcr.io/acme/shop:1.4.2, 3 URLs): $job_bytes bytes of JSON"
