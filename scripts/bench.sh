#!/usr/bin/env bash
# `make bench`: the decision natively (criterion) and in Wasm (kwrun bench,
# on the same engine as policy-server) for the same five requests, then one
# Markdown table: median and p99 per evaluation, Wasm/native ratio, module
# size. Usage: scripts/bench.sh KWRUN POLICY
set -euo pipefail
cd "$(dirname "$0")/.."
kwrun="$1"
policy="$2"
out=target/bench
mkdir -p "$out"

# The 1,000-container request, built as benches/decision.rs builds it.
jq '.request.object.spec.template.spec.containers = [range(0; 1000) | {name: "c\(.)", image: "ghcr.io/acme/part-\(.):1.0.\(.)"}]' \
  e2e-tests/fixtures/create-labelled.json >"$out/containers-1000.json"
# About 250 KB of URLs (Kubernetes allows 256 KiB for all annotations), as
# benches/decision.rs builds it.
jq '.request.object.metadata.annotations["cache-buster.io/urls"] =
    ([range(0; 5348) | "https://shop.example.com/posts/\(.)/index.html"] | join(" "))' \
  e2e-tests/fixtures/create-labelled.json >"$out/urls-256k.json"
declare -A requests=(
  [pass_through]=e2e-tests/fixtures/create-unlabelled.json
  [stamp]=e2e-tests/fixtures/update-image-changed.json
  [no_op]=e2e-tests/fixtures/update-unchanged-image.json
  [containers_1000]="$out/containers-1000.json"
  [urls_256k]="$out/urls-256k.json"
)

cargo bench --locked --bench decision -- --noplot --warm-up-time 2 --measurement-time 5 >"$out/criterion.log"

# p99 from criterion's samples (time / iterations of each sample), in µs.
native_stats() {
  local dir="target/criterion/$1/new"
  jq -r '.median.point_estimate / 1000' "$dir/estimates.json"
  jq -r '[.times, .iters] | transpose | map(.[0] / .[1]) | sort | .[((length * 99 / 100) | ceil) - 1] / 1000' "$dir/sample.json"
}

size=$(stat -c %s "$policy")
printf '| request | native median | native p99 | Wasm median | Wasm p99 | Wasm/native |\n|---|---|---|---|---|---|\n'
for name in pass_through stamp no_op containers_1000 urls_256k; do
  "$kwrun" bench --json --warm-up-time 1 --measurement-time 3 -r "${requests[$name]}" "$policy" 2>/dev/null >"$out/wasm-$name.json"
  mapfile -t native < <(native_stats "$name")
  wasm_median=$(jq '.validate.median_ns / 1000' "$out/wasm-$name.json")
  wasm_p99=$(jq '.validate.p99_ns / 1000' "$out/wasm-$name.json")
  awk -v n="$name" -v nm="${native[0]}" -v np="${native[1]}" -v wm="$wasm_median" -v wp="$wasm_p99" \
    'BEGIN { printf "| %s | %.1f µs | %.1f µs | %.1f µs | %.1f µs | %.2f |\n", n, nm, np, wm, wp, wm / nm }'
done
echo
echo "module: $policy, $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1048576 }') MiB); load and instantiate (stamp request):"
jq -r '"  compile \(.load_ms * 100 | round / 100) ms, instantiate \(.instantiate_ms * 100 | round / 100) ms"' "$out/wasm-stamp.json"
