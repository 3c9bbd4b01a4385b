#!/usr/bin/env bash
# Installs what building and testing need, on a Debian machine that has
# rustup: the pinned Rust toolchain with the wasm32-wasip1 target, clippy and
# rustfmt, and Debian's bats, jq, curl and a C compiler; for the cluster tests,
# Debian's etcd, docker-registry (the CNCF distribution registry) and
# bubblewrap; for the image, Debian's musl-tools, buildah and skopeo and
# rustup's musl target; and the pinned Python programs of scripts/requirements.txt
# (kubernetes-validate, kubectl, check-jsonschema, zizmor) in .venv, and
# cargo-machete from crates.io for the lint's unused-dependency check.
# The programs no registry has (kwctl, policy-server, kube-apiserver, …) come
# from `make tools` or their variables (docs/development.md). Safe to run again.
#   scripts/setup.sh           what `make run` needs
#   scripts/setup.sh --tests   and what `make test` needs
set -euo pipefail
cd "$(dirname "$0")/.."
for_tests=no
[ "${1:-}" = --tests ] && for_tests=yes

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
command -v curl >/dev/null || missing+=(curl ca-certificates)
# wasm-opt, which policy.wasm passes through after cargo (Makefile).
command -v wasm-opt >/dev/null || missing+=(binaryen)
if [ "$for_tests" = yes ]; then
  command -v etcd >/dev/null || missing+=(etcd-server)
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  command -v bwrap >/dev/null || missing+=(bubblewrap)
  # The image (make image): the static program's C parts, then the image
  # FROM scratch and, for the cluster tests, its push to their registry.
  command -v musl-gcc >/dev/null || missing+=(musl-tools)
  # buildah even beside a docker client: a client without an engine (or
  # without buildx) builds nothing, and the image tests use buildah alone.
  command -v buildah >/dev/null || missing+=(buildah)
  command -v skopeo >/dev/null || missing+=(skopeo)
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3 python3-venv)
fi
if ((${#missing[@]})); then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "setup: installing ${missing[*]} from Debian"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ "$for_tests" = yes ] || exit 0
# cargo-machete (crates.io): `make lint` refuses a dependency no crate uses.
machete_version=0.9.2
if [ "$(cargo-machete --version 2>/dev/null)" != "$machete_version" ]; then
  echo "setup: installing cargo-machete $machete_version from crates.io"
  cargo install --locked --quiet cargo-machete --version "$machete_version"
fi
# The image's program is static: musl, for this machine's architecture.
rustup target add --toolchain "$toolchain" "$(uname -m)-unknown-linux-musl" >/dev/null
# The Python programs, in a virtualenv, reinstalled when their pins change.
venv=.venv
stamp="$venv/.requirements.sha256"
wanted="$(sha256sum scripts/requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "setup: installing scripts/requirements.txt into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements.txt
  echo "$wanted" >"$stamp"
fi
