#!/usr/bin/env bash
# The release workflow's steps (.github/workflows/release.yml), one
# subcommand each, so that a maintainer can run any of them by hand:
#   check          the tag (VERSION) is the version of Cargo.toml, and so of
#                  policy-metadata.yml, artifacthub-pkg.yml and deploy/
#                  (tests/packaging.rs keeps those in step)
#   policy         kwctl push annotated-policy.wasm to $POLICY_REPOSITORY:$VERSION,
#                  cosign sign (keyless) the pushed digest, an SPDX SBOM (syft)
#                  signed with cosign sign-blob
#   image PLATFORM build the image for one platform (native runner), with SBOM
#                  and provenance, push it by digest, sign it, keep the digest
#   image-merge    one multi-arch manifest $IMAGE:$VERSION from the digests, signed
#   github         the GitHub release $VERSION with policy.wasm and the SBOM
#   verify-policy  kwctl verify the pushed module with deploy/verification-config.yml
#                  (what a cluster's verificationConfig checks)
#   verify-image   cosign verify $IMAGE:$VERSION: signed by this repository's
#                  release workflow at this tag
# Variables: VERSION (default v<Cargo.toml's version>), POLICY_REPOSITORY,
# IMAGE (default ghcr.io/cache-buster/...), and the credentials the programs
# read (docker login, cosign's OIDC token, GH_TOKEN).
set -euo pipefail
cd "$(dirname "$0")/.."
crate_version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
version="${VERSION:-v$crate_version}"
policy_repository="${POLICY_REPOSITORY:-ghcr.io/cache-buster/policies/cache-buster}"
image="${IMAGE:-ghcr.io/cache-buster/cache-buster}"
out=target/release-artifacts
mkdir -p "$out/digests"

need() {
  for program in "$@"; do
    command -v "$program" >/dev/null || {
      echo "release: $program is needed for this step" >&2
      exit 1
    }
  done
}

case "${1:-}" in
  check)
    [ "$version" = "v$crate_version" ] || {
      echo "release: the tag $version is not Cargo.toml's version v$crate_version (bump it everywhere first)" >&2
      exit 1
    }
    grep -q "image: .*/cache-buster:$version\$" deploy/launcher.yaml || {
      echo "release: deploy/launcher.yaml does not run the launcher image $version" >&2
      exit 1
    }
    echo "release: $version is the version of the crate, the metadata and deploy/"
    ;;
  policy)
    need kwctl cosign syft jq
    [ -f annotated-policy.wasm ] || { echo "release: make annotated-policy.wasm first" >&2; exit 1; }
    reference="$(kwctl push -o json annotated-policy.wasm "$policy_repository:$version" | jq -r .immutable_ref)"
    cosign sign --yes "$reference"
    echo "$reference" >"$out/policy-reference"
    syft scan --output "spdx-json=$out/policy-sbom.spdx.json" \
      --source-name "cache-buster-$version" --source-version "$version" dir:.
    cosign sign-blob --yes --bundle "$out/policy-sbom.spdx.json.bundle.sigstore" "$out/policy-sbom.spdx.json"
    cp policy.wasm "$out/policy.wasm"
    echo "release: pushed and signed $reference"
    ;;
  image)
    # The image of `make image`, for this runner's own architecture (the
    # workflow runs each platform on a native runner), pushed by digest
    # (its tag is the platform's), signed, with a signed SBOM and provenance.
    platform="${2:?usage: scripts/release.sh image linux/<arch>}"
    arch="${platform#linux/}"
    need skopeo cosign syft
    case "$(uname -m)" in
      x86_64) native=amd64 ;;
      aarch64) native=arm64 ;;
      *) native="$(uname -m)" ;;
    esac
    [ "$native" = "$arch" ] || {
      echo "release: $platform is built on a native $arch runner, not on $native" >&2
      exit 1
    }
    scripts/image.sh
    skopeo copy --digestfile "$out/digests/$arch" "oci:target/image/oci:$version" "docker://$image:$version-$arch"
    digest="$(cat "$out/digests/$arch")"
    syft scan oci-dir:target/image/oci -o "spdx-json=$out/image-sbom-$arch.spdx.json"
    repository="${GITHUB_REPOSITORY:-cache-buster/cache-buster-policy}"
    jq -n --arg repository "$repository" --arg version "$version" --arg platform "$platform" \
      --arg revision "$(git rev-parse HEAD)" \
      --arg run "${GITHUB_SERVER_URL:-https://github.com}/$repository/actions/runs/${GITHUB_RUN_ID:-local}" '{
        buildDefinition: {
          buildType: "https://github.com/\($repository)/blob/\($version)/scripts/image.sh",
          externalParameters: {version: $version, platform: $platform},
          resolvedDependencies: [{uri: "git+https://github.com/\($repository)@refs/tags/\($version)", digest: {gitCommit: $revision}}]
        },
        runDetails: {
          builder: {id: "https://github.com/\($repository)/.github/workflows/release.yml@refs/tags/\($version)"},
          metadata: {invocationId: $run}
        }
      }' >"$out/image-provenance-$arch.json"
    cosign sign --yes "$image@$digest"
    cosign attest --yes --type spdxjson --predicate "$out/image-sbom-$arch.spdx.json" "$image@$digest"
    cosign attest --yes --type slsaprovenance1 --predicate "$out/image-provenance-$arch.json" "$image@$digest"
    echo "release: pushed and signed $image@$digest ($platform)"
    ;;
  image-merge)
    need buildah cosign
    list="cache-buster-release-$version"
    buildah manifest rm "$list" >/dev/null 2>&1 || true
    buildah manifest create "$list" >/dev/null
    count=0
    for file in "$out"/digests/*; do
      buildah manifest add "$list" "docker://$image@$(cat "$file")" >/dev/null
      count=$((count + 1))
    done
    ((count == 2)) || { echo "release: expected the amd64 and arm64 digests in $out/digests" >&2; exit 1; }
    buildah manifest push --all --digestfile "$out/index-digest" "$list" "docker://$image:$version"
    digest="$(cat "$out/index-digest")"
    cosign sign --yes "$image@$digest"
    echo "release: $image:$version is $digest, signed"
    ;;
  github)
    need gh
    gh release create "$version" --verify-tag --title "$version" --generate-notes \
      "$out/policy.wasm" "$out/policy-sbom.spdx.json" "$out/policy-sbom.spdx.json.bundle.sigstore"
    ;;
  verify-policy)
    need kwctl
    kwctl verify --verification-config-path deploy/verification-config.yml \
      "registry://$policy_repository:$version"
    echo "release: $policy_repository:$version is signed by a workflow of deploy/verification-config.yml's repository"
    ;;
  verify-image)
    need cosign
    cosign verify "$image:$version" \
      --certificate-oidc-issuer https://token.actions.githubusercontent.com \
      --certificate-identity "https://github.com/${GITHUB_REPOSITORY:-cache-buster/cache-buster-policy}/.github/workflows/release.yml@refs/tags/$version" \
      >/dev/null
    echo "release: $image:$version is signed by the release workflow at $version"
    ;;
  *)
    sed -n '2,21p' "$0" >&2
    exit 2
    ;;
esac
