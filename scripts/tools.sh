#!/usr/bin/env bash
# `make tools`: downloads the real programs that the kwctl e2e run and the
# cluster tests need, from their official releases, at the versions of
# scripts/tools.versions, each verified, into target/tools-cache/; then
# writes target/tools.env (shell) and target/tools.mk (read by the Makefile)
# and prints the variables to export:
#   KWCTL                    kwctl-linux-<arch>.zip of kubewarden/adm-controller,
#                            its sigstore bundle verified by cosign, else its
#                            pinned sha256
#   POLICY_SERVER            /policy-server of ghcr.io/kubewarden/adm-controller/policy-server,
#                            the image's signature verified by cosign (crane or docker to extract)
#   KUBEBUILDER_ASSETS       envtest-v<k8s>-linux-<arch>.tar.gz of controller-tools
#                            (kube-apiserver, etcd, kubectl), sha512 from envtest-releases.yaml
#   KUBE_CONTROLLER_MANAGER  the Kubernetes release binary, sha512 from the release
# KUBERNETES_VERSION chooses the control plane (default: the newest supported).
# Where nothing can be downloaded it says so in one line and changes nothing.
#   scripts/tools.sh         download what is missing, print the exports
#   scripts/tools.sh --pin   also print the kwctl sha256 pins (after cosign verified them)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tools.versions

# KUBERNETES_VERSION: a version, or `oldest` / `newest` of the supported ones.
case "${KUBERNETES_VERSION:-newest}" in
  newest) kubernetes="$KUBERNETES_NEWEST" ;;
  oldest) kubernetes="$KUBERNETES_OLDEST" ;;
  *) kubernetes="$KUBERNETES_VERSION" ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) arch=x86_64 go_arch=amd64 ;;
  aarch64 | arm64) arch=aarch64 go_arch=arm64 ;;
  *) echo "tools: no official release for $(uname -m)" >&2; exit 1 ;;
esac
cache="$PWD/target/tools-cache"
kubewarden_dir="$cache/kubewarden-$KUBEWARDEN_VERSION-$arch"
envtest_dir="$cache/envtest-$kubernetes-$go_arch"
kubernetes_dir="$cache/kubernetes-$kubernetes-$go_arch"
oidc_issuer=https://token.actions.githubusercontent.com
kubewarden_identity='^https://github\.com/kubewarden/adm-controller/\.github/workflows/.+$'

fetch() { curl -fsSL --retry 3 --connect-timeout 10 --max-time 600 -o "$2" "$1"; }
fail() { echo "tools: $*" >&2; exit 1; }

if ! curl -fsS --connect-timeout 5 --max-time 10 -o /dev/null https://github.com 2>/dev/null; then
  echo "tools: the official releases cannot be reached from here (no route to github.com): nothing downloaded, nothing changed"
  exit 0
fi
mkdir -p "$cache"
scratch="$(mktemp -d "$cache/.download.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

# kwctl: the zip holds the binary and its sigstore bundle.
if [ ! -x "$kubewarden_dir/kwctl" ]; then
  zip="kwctl-linux-$arch.zip"
  fetch "https://github.com/kubewarden/adm-controller/releases/download/$KUBEWARDEN_VERSION/$zip" "$scratch/$zip"
  python3 -m zipfile -e "$scratch/$zip" "$scratch/kwctl"
  if command -v cosign >/dev/null; then
    cosign verify-blob --bundle "$scratch/kwctl/kwctl-linux-$arch.bundle.sigstore" \
      --certificate-identity-regexp "$kubewarden_identity" --certificate-oidc-issuer "$oidc_issuer" \
      "$scratch/kwctl/kwctl-linux-$arch" >/dev/null 2>&1 ||
      fail "kwctl $KUBEWARDEN_VERSION: the sigstore bundle does not verify; nothing installed"
  else
    pin_name="KWCTL_SHA256_${arch^^}"
    pin="${!pin_name}"
    [ -n "$pin" ] || fail "kwctl $KUBEWARDEN_VERSION: cosign is not installed and scripts/tools.versions pins no $pin_name; install cosign (sigstore) to verify the release's signature"
    echo "$pin  $scratch/$zip" | sha256sum --check --quiet ||
      fail "kwctl $KUBEWARDEN_VERSION: $zip does not match $pin_name; nothing installed"
  fi
  mkdir -p "$kubewarden_dir"
  install -m 0755 "$scratch/kwctl/kwctl-linux-$arch" "$kubewarden_dir/kwctl"
  sha256sum "$scratch/$zip" | cut -d' ' -f1 >"$kubewarden_dir/kwctl.zip.sha256"
fi

# policy-server: no binary is released; it is /policy-server in the signed image.
if [ ! -x "$kubewarden_dir/policy-server" ]; then
  image="ghcr.io/kubewarden/adm-controller/policy-server:$KUBEWARDEN_VERSION"
  command -v cosign >/dev/null ||
    fail "policy-server: cosign is needed to verify $image's signature (no binary is released); install cosign (sigstore)"
  digest="$(cosign verify --certificate-identity-regexp "$kubewarden_identity" \
    --certificate-oidc-issuer "$oidc_issuer" --output json "$image" 2>/dev/null |
    jq -r '.[0].critical.image."docker-manifest-digest"')" ||
    fail "policy-server: $image's signature does not verify; nothing installed"
  pinned="${image%:*}@$digest"
  if command -v crane >/dev/null; then
    crane export --platform "linux/$go_arch" "$pinned" - | tar -xf - -C "$scratch" policy-server
  elif command -v docker >/dev/null; then
    container="$(docker create --platform "linux/$go_arch" "$pinned")"
    docker cp "$container:/policy-server" "$scratch/policy-server" >/dev/null
    docker rm "$container" >/dev/null
  else
    fail "policy-server: crane or docker is needed to take /policy-server out of $pinned"
  fi
  mkdir -p "$kubewarden_dir"
  install -m 0755 "$scratch/policy-server" "$kubewarden_dir/policy-server"
fi

# kube-apiserver, etcd, kubectl: envtest's archive, checked against the sha512
# that controller-tools publishes for it.
if [ ! -x "$envtest_dir/kube-apiserver" ]; then
  archive="envtest-v$kubernetes-linux-$go_arch.tar.gz"
  fetch https://raw.githubusercontent.com/kubernetes-sigs/controller-tools/HEAD/envtest-releases.yaml "$scratch/releases.yaml"
  sha512="$(awk -v file="$archive:" '$1 == file { found = 1; next } found && $1 == "hash:" { print $2; exit }' "$scratch/releases.yaml")"
  [ -n "$sha512" ] || fail "envtest-releases.yaml lists no $archive (KUBERNETES_VERSION=$kubernetes)"
  fetch "https://github.com/kubernetes-sigs/controller-tools/releases/download/envtest-v$kubernetes/$archive" "$scratch/$archive"
  echo "$sha512  $scratch/$archive" | sha512sum --check --quiet || fail "$archive does not match its sha512"
  mkdir -p "$scratch/envtest"
  # The archive holds controller-tools/envtest/{etcd,kube-apiserver,kubectl}.
  tar -xzf "$scratch/$archive" -C "$scratch/envtest" --strip-components=2
  mkdir -p "$(dirname "$envtest_dir")"
  mv "$scratch/envtest" "$envtest_dir"
fi

if [ ! -x "$kubernetes_dir/kube-controller-manager" ]; then
  url="https://dl.k8s.io/release/v$kubernetes/bin/linux/$go_arch/kube-controller-manager"
  fetch "$url" "$scratch/kube-controller-manager"
  fetch "$url.sha512" "$scratch/kube-controller-manager.sha512"
  echo "$(cat "$scratch/kube-controller-manager.sha512")  $scratch/kube-controller-manager" | sha512sum --check --quiet ||
    fail "kube-controller-manager v$kubernetes does not match its published sha512"
  mkdir -p "$kubernetes_dir"
  install -m 0755 "$scratch/kube-controller-manager" "$kubernetes_dir/kube-controller-manager"
fi

{
  echo "export KWCTL=$kubewarden_dir/kwctl"
  echo "export POLICY_SERVER=$kubewarden_dir/policy-server"
  echo "export KUBEBUILDER_ASSETS=$envtest_dir"
  echo "export KUBE_CONTROLLER_MANAGER=$kubernetes_dir/kube-controller-manager"
} >target/tools.env
sed 's/^export \([A-Z_]*\)=\(.*\)$/\1 ?= \2\nexport \1/' target/tools.env >target/tools.mk
echo "# The programs are in $cache (Kubewarden $KUBEWARDEN_VERSION, Kubernetes $kubernetes)."
echo "# make reads target/tools.mk by itself; for a shell: . target/tools.env"
cat target/tools.env
if [ "${1:-}" = --pin ]; then
  echo "KWCTL_SHA256_${arch^^}=$(cat "$kubewarden_dir/kwctl.zip.sha256")"
fi
