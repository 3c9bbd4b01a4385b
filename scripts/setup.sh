#!/usr/bin/env bash
# Installs what building and testing need, on a Debian machine that has
# rustup: the pinned Rust toolchain with the wasm32-wasip1 target, clippy and
# rustfmt, and Debian's bats, jq and a C compiler; for the cluster tests,
# Debian's etcd, docker-registry (the CNCF distribution registry), bubblewrap
# and xz (the reference toolbox is xz-packed). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

toolchain="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)"
if ! command -v rustup >/dev/null; then
  echo "setup: rustup is required (https://rustup.rs)" >&2
  exit 1
fi
rustup toolchain install "$toolchain" --profile minimal \
  --component clippy --component rustfmt --target wasm32-wasip1 >/dev/null 2>&1 ||
  rustup toolchain install "$toolchain" --profile minimal \
    --component clippy --component rustfmt --target wasm32-wasip1
rustup target add --toolchain "$toolchain" wasm32-wasip1 >/dev/null

missing=()
command -v bats >/dev/null || missing+=(bats)
command -v jq >/dev/null || missing+=(jq)
command -v cc >/dev/null || missing+=(gcc libc6-dev)
command -v etcd >/dev/null || missing+=(etcd-server)
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v xz >/dev/null || missing+=(xz-utils)
# Manifest validation runs kubernetes-validate from PyPI in a virtualenv.
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3 python3-venv)
if ((${#missing[@]})); then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "setup: installing ${missing[*]} from Debian"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
