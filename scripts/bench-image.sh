#!/usr/bin/env bash
# `make bench-image`: the image's compressed size (what a node pulls) and how
# fast its program starts: `cache-buster purge --dry-run …` from start to
# outcome, run from the unpacked image (wall time over 30 runs, and the
# instructions callgrind counts where valgrind is installed). Prints figures,
# asserts nothing (README, "Speed and size").
set -euo pipefail
cd "$(dirname "$0")/.."
layout=target/image/oci
version="v$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
manifest="$(jq -r --arg tag "$version" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $tag) | .digest' "$layout/index.json" | sed 's/:/\//')"
compressed="$(jq '[.config.size, (.layers[].size)] | add' "$layout/blobs/$manifest")"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
for layer in $(jq -r '.layers[].digest' "$layout/blobs/$manifest" | sed 's/:/\//'); do
  tar -xzf "$layout/blobs/$layer" -C "$root"
done
program="$root/usr/local/bin/cache-buster"
args=(purge --provider=cloudflare --secret=cache-buster-credentials --dry-run
  --url=https://shop.example.com/ --url=https://shop.example.com/menu --tag=shop
  --termination-log="$root/outcome")
runs=30
times=()
for _ in $(seq "$runs"); do
  start="$(date +%s%N)"
  "$program" "${args[@]}" >/dev/null
  times+=($(($(date +%s%N) - start)))
done
[ "$(jq -r .result "$root/outcome")" = dry-run ]
median="$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$((runs / 2 + 1))p")"
echo "image: $compressed bytes compressed ($(awk -v b="$compressed" 'BEGIN { printf "%.1f", b / 1048576 }') MiB), the program $(stat -c %s "$program") bytes"
echo "start to outcome (purge --dry-run): median $(awk -v n="$median" 'BEGIN { printf "%.1f", n / 1e6 }') ms over $runs runs"
if command -v valgrind >/dev/null; then
  instructions="$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$program" "${args[@]}" 2>&1 >/dev/null |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p')"
  echo "start to outcome (purge --dry-run): $instructions instructions (callgrind)"
fi
