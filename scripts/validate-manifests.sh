#!/usr/bin/env bash
# Validates every Kubernetes manifest of the project against the official
# schemas with kubernetes-validate (PyPI), strictly (unknown fields fail), for
# the oldest and the newest Kubernetes this project supports:
#   - deploy/*.yaml, deploy/site/job-rbac.yaml and deploy/secrets/*.yaml;
#   - the Job the policy generates for each provider, taken from what the
#     real policy.wasm stamps (through KWCTL, kwrun or kwctl).
# CRDs (the ClusterAdmissionPolicy) have no schema there: they are checked by
# runner/tests/packaging.rs against the SDK's typed CRDs.
# Usage: scripts/validate-manifests.sh KWCTL POLICY
set -euo pipefail
cd "$(dirname "$0")/.."
kwctl="$1"
policy="$2"
kubernetes_versions=(1.32.0 1.37.0)
validator_version=1.37.0

venv=.venv
if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$validator_version"; then
  python3 -m venv "$venv" 2>/dev/null || {
    # Debian ships venv separately.
    sudo=(); [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  }
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$validator_version"
fi

generated="$(mktemp -d)"
trap 'rm -rf "$generated"' EXIT
for fixture in create-labelled create-fastly create-webhook create-cloudflare-batches create-cloudflare-everything create-long-name; do
  "$kwctl" run --request-path "e2e-tests/fixtures/$fixture.json" "$policy" 2>/dev/null |
    jq -r '.patch | @base64d | fromjson | .[] | select(.path | endswith("~1job")) | .value' >"$generated/job-$fixture.json"
  [ -s "$generated/job-$fixture.json" ] || { echo "no Job stamped for $fixture" >&2; exit 1; }
done
"$kwctl" run --request-path e2e-tests/fixtures/create-labelled.json --settings-path e2e-tests/settings/fastly.json "$policy" 2>/dev/null |
  jq -r '.patch | @base64d | fromjson | .[] | select(.path | endswith("~1job")) | .value' >"$generated/job-settings-fastly.json"

manifests=(deploy/site/job-rbac.yaml deploy/launcher.yaml deploy/secrets/*.yaml "$generated"/*.json)
for version in "${kubernetes_versions[@]}"; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "${manifests[@]}"
done
echo "validated ${#manifests[@]} files against Kubernetes ${kubernetes_versions[*]}: $(printf '%s ' "${manifests[@]##*/}")"
