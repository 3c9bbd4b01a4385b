#!/usr/bin/env bash
# `make run`: evaluates a sample admission request with the real policy.wasm
# through kwrun and shows what the policy did: the decision, the JSON Patch
# and the companion Job it stamped on the Deployment.
# Usage: scripts/run-sample.sh KWRUN POLICY [REQUEST]
set -euo pipefail
kwrun="$1"
policy="$2"
request="${3:-e2e-tests/fixtures/update-image-changed.json}"

summary="$(jq -r '.request | "\(.operation) Deployment \(.namespace)/\(.name): image \(
  [.oldObject.spec.template.spec.containers[]?.image] | join(",")) -> \(
  [.object.spec.template.spec.containers[].image] | join(","))"' "$request")"
response="$("$kwrun" run --request-path "$request" "$policy" 2>/dev/null)"

echo "== Request ($request)"
echo "$summary"
echo
echo "== Decision"
jq -r '"allowed: \(.allowed)",
       (if .patch then "mutated: yes (\(.patch | @base64d | fromjson | length) patch operations)" else "mutated: no" end),
       (if .status.message then "message: \(.status.message)" else empty end),
       (.warnings // [] | .[] | "warning: \(.)")' <<<"$response"
if jq -e .patch <<<"$response" >/dev/null; then
  patch="$(jq -r '.patch | @base64d' <<<"$response")"
  echo
  echo "== JSON Patch (values of more than 60 characters shortened)"
  jq -r '.[] | "\(.op) \(.path) = \(.value | tostring | if length > 60 then .[:57] + "..." else . end)"' <<<"$patch"
  job="$(jq -r '.[] | select(.path | endswith("~1job")) | .value' <<<"$patch")"
  echo
  echo "== Companion Job $(jq -r .metadata.name <<<"$job") (the cache-buster.io/job annotation)"
  jq . <<<"$job"
fi
