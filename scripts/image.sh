#!/usr/bin/env bash
# `make image`: the project's one image (SPEC §4, cli/Containerfile),
# built from this repository without pulling anything: the program for the
# machine's architecture, static (musl) and stripped, then the image FROM
# scratch with buildah (or docker where buildah is missing), written as an
# OCI layout under target/image/oci, tagged with the version. Prints the
# image's compressed size. Reproducible: the layer's times are the last
# commit's.
#   scripts/image.sh            the layout
#   IMAGE_NAME=… scripts/image.sh   another name in the builder's storage
#   IMAGE_FEATURES=test-hooks IMAGE_OUT=target/image-test-hooks scripts/image.sh
#                               the tests' variant (make image-test-hooks): the
#                               program with the CDN double's hooks, which the
#                               released image never has
set -euo pipefail
cd "$(dirname "$0")/.."
arch="$(uname -m)"
case "$arch" in
  x86_64 | aarch64) ;;
  *)
    echo "image: no musl target for $arch" >&2
    exit 1
    ;;
esac
target="$arch-unknown-linux-musl"
version="v$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
created="$(git log -1 --format=%ct 2>/dev/null || echo 0)"
name="${IMAGE_NAME:-localhost/cache-buster}:$version"
out="${IMAGE_OUT:-target/image}"
layout="$out/oci"
features=()
[ -n "${IMAGE_FEATURES:-}" ] && features=(--features "$IMAGE_FEATURES")

# ring's C parts for musl: Debian's musl-tools gives musl-gcc.
cc_variable="CC_${target//-/_}"
export "$cc_variable=${!cc_variable:-musl-gcc}"
cargo build --locked --profile image --target "$target" -p cache-buster-cli --bin cache-buster "${features[@]}"
binary="target/$target/image/cache-buster"

rm -rf "$out/context" "$layout"
mkdir -p "$out/context"
cp "$binary" "$out/context/cache-buster"
args=(--build-arg "VERSION=$version" --build-arg "REVISION=$revision" --file cli/Containerfile)
if command -v buildah >/dev/null; then
  # Storage of its own under target/ (vfs: works in any container or VM,
  # and the image is one small layer), apart from the machine's.
  storage=(--root "$PWD/$out/storage" --runroot "$PWD/$out/run" --storage-driver vfs)
  buildah "${storage[@]}" build --quiet --timestamp "$created" --tag "$name" "${args[@]}" "$out/context" >/dev/null
  buildah "${storage[@]}" push --quiet --compression-format gzip "$name" "oci:$layout:$version"
  buildah "${storage[@]}" rmi "$name" >/dev/null
elif docker buildx version >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  # Docker only where it can build: buildx, and an engine that answers.
  SOURCE_DATE_EPOCH="$created" docker buildx build --quiet --tag "$name" "${args[@]}" \
    --output "type=oci,dest=$out/oci.tar,rewrite-timestamp=true" "$out/context" >/dev/null
  mkdir -p "$layout"
  tar -xf "$out/oci.tar" -C "$layout"
  rm "$out/oci.tar"
else
  echo "image: no buildah, and no docker that can build (buildx and a running engine); scripts/setup.sh --tests installs buildah" >&2
  exit 1
fi
manifest="$(jq -r '.manifests[0].digest' "$layout/index.json" | sed 's/:/\//')"
bytes="$(jq '[.config.size, (.layers[].size)] | add' "$layout/blobs/$manifest")"
echo "image: $layout:$version ($target${IMAGE_FEATURES:+, features $IMAGE_FEATURES}), $bytes bytes compressed ($((bytes / 1024)) KiB); the program $(stat -c %s "$binary") bytes"
