#!/usr/bin/env bats
# End-to-end tests of the real Wasm policy, evaluated by kwctl or by this
# project's kwrun ($KWCTL), on AdmissionReview fixtures as the API server
# sends them. Only flags and output that `kwctl run` has are used, so the
# suite passes unchanged with either binary:
#   make e2e-tests                      # kwrun
#   KWCTL=/usr/local/bin/kwctl make e2e-tests
# Assertions decode the JSON Patch with jq; none matches the raw output text.

bats_require_minimum_version 1.5.0

setup() {
  : "${KWCTL:?set KWCTL to kwctl or kwrun}"
  : "${POLICY:?set POLICY to the policy module}"
  FIXTURES="$BATS_TEST_DIRNAME/fixtures"
  SETTINGS="$BATS_TEST_DIRNAME/settings"
}

# evaluate FIXTURE [kwctl run flags…]: the AdmissionResponse in $output
# (stdout only; the policy's logs go to $stderr).
evaluate() {
  local request="$1"
  shift
  [[ "$request" == /* || "$request" == - ]] || request="$FIXTURES/$request"
  run --separate-stderr "$KWCTL" run --request-path "$request" "$@" "$POLICY"
  echo "status = ${status}"
  echo "output = ${output}"
  echo "stderr = ${stderr}"
}

# The decoded JSON Patch ([] when there is none).
patch() {
  jq -c '.patch // empty | @base64d | fromjson' <<<"$output" | jq -sc 'add // []'
}

# The value a patch operation writes to annotation KEY.
patched_annotation() {
  local pointer="/metadata/annotations/${1//\//~1}"
  patch | jq -r --arg path "$pointer" '.[] | select(.path == $path) | .value'
}

# The stamped Job, decoded from the patch.
stamped_job() {
  patched_annotation cache-buster.io/job | jq .
}

# The annotation KEY of the request's object in FIXTURE.
fixture_annotation() {
  jq -r --arg key "$2" '.request.object.metadata.annotations[$key]' "$FIXTURES/$1"
}

assert_allowed_without_patch() {
  [ "$status" -eq 0 ]
  [ "$(jq -r .allowed <<<"$output")" = true ]
  [ "$(jq -r '.patch // "none"' <<<"$output")" = none ]
  [ "$(jq -r '.patchType // "none"' <<<"$output")" = none ]
}

assert_rejected_with() {
  [ "$status" -eq 0 ]
  [ "$(jq -r .allowed <<<"$output")" = false ]
  local message
  message="$(jq -r .status.message <<<"$output")"
  echo "message = ${message}"
  [[ "$message" == "$1"* ]]
}

# The purge container's curl arguments, one JSON array.
purge_args() {
  stamped_job | jq -c '.spec.template.spec.containers[] | select(.name == "purge") | .args'
}

# The curl requests: the purge arguments split at --next.
purge_request_count() {
  purge_args | jq '[.[] | select(. == "--next")] | length + 1'
}

# Applies the decoded patch to the fixture's object; writes a new review.
apply_patch_to() {
  local fixture="$1" out="$2"
  jq --argjson ops "$(patch)" '
    def path_of: ltrimstr("/") | split("/") | map(gsub("~1"; "/") | gsub("~0"; "~"));
    .request.object = (reduce $ops[] as $op (.request.object;
      if $op.op == "remove" then delpaths([$op.path | path_of])
      else setpath($op.path | path_of; $op.value) end))
    | .request.oldObject = .request.object
    | .request.operation = "UPDATE"' "$FIXTURES/$fixture" >"$out"
}

# --- SPEC §1: which requests the policy touches ------------------------------

@test "a labelled Deployment CREATE is stamped with exactly the three annotations" {
  evaluate create-labelled.json
  [ "$status" -eq 0 ]
  [ "$(jq -r .allowed <<<"$output")" = true ]
  [ "$(jq -r .patchType <<<"$output")" = JSONPatch ]
  [ "$(patch | jq -c '[.[] | [.op, .path]]')" = '[["add","/metadata/annotations/cache-buster.io~1image-hash"],["add","/metadata/annotations/cache-buster.io~1job"],["add","/metadata/annotations/cache-buster.io~1job-name"]]' ]
  [ "$(patched_annotation cache-buster.io/image-hash)" = b82cce53ec ]
  [ "$(patched_annotation cache-buster.io/job-name)" = shop-cache-buster-b82cce53ec ]
}

@test "the image hash is the first 10 hex of SHA-256 over name=canonical image" {
  evaluate create-labelled.json
  expected="$(printf '%s' 'web=ghcr.io/acme/shop:1.4.2' | sha256sum | cut -c1-10)"
  [ "$(patched_annotation cache-buster.io/image-hash)" = "$expected" ]
}

@test "an unlabelled Deployment is accepted untouched" {
  evaluate create-unlabelled.json
  assert_allowed_without_patch
}

@test "another kind carrying the site label is accepted untouched" {
  evaluate create-pod.json
  assert_allowed_without_patch
}

@test "a DELETE of a labelled Deployment is accepted untouched" {
  evaluate delete-labelled.json
  assert_allowed_without_patch
}

@test "a Deployment whose site label was removed loses the three annotations" {
  evaluate update-label-removed.json
  [ "$(jq -r .allowed <<<"$output")" = true ]
  [ "$(patch | jq -c '[.[] | [.op, .path]] | sort')" = '[["remove","/metadata/annotations/cache-buster.io~1image-hash"],["remove","/metadata/annotations/cache-buster.io~1job"],["remove","/metadata/annotations/cache-buster.io~1job-name"]]' ]
}

@test "an object that is no Deployment is rejected with the reason" {
  evaluate create-invalid-spec.json
  assert_rejected_with 'request.object is not a valid apps/v1 Deployment: spec: invalid type: string "web", expected a sequence'
}

# --- SPEC §3: the decision ---------------------------------------------------

@test "an UPDATE that changes the image replaces the three annotations" {
  evaluate update-image-changed.json
  [ "$(patch | jq -c '[.[] | [.op, .path]] | sort')" = '[["replace","/metadata/annotations/cache-buster.io~1image-hash"],["replace","/metadata/annotations/cache-buster.io~1job"],["replace","/metadata/annotations/cache-buster.io~1job-name"]]' ]
  new_hash="$(patched_annotation cache-buster.io/image-hash)"
  [ "$new_hash" = "$(printf '%s' 'web=ghcr.io/acme/shop:1.4.3' | sha256sum | cut -c1-10)" ]
  [ "$new_hash" != "$(fixture_annotation update-image-changed.json cache-buster.io/image-hash)" ]
  [ "$(patched_annotation cache-buster.io/job-name)" = "shop-cache-buster-$new_hash" ]
}

@test "an UPDATE without image change is accepted without patch" {
  evaluate update-unchanged-image.json
  assert_allowed_without_patch
}

@test "a tampered Job annotation is overwritten with the policy's Job" {
  evaluate update-tampered-job.json
  [ "$(patch | jq -c '[.[] | [.op, .path]]')" = '[["replace","/metadata/annotations/cache-buster.io~1job"]]' ]
  [ "$(patched_annotation cache-buster.io/job)" = "$(fixture_annotation update-unchanged-image.json cache-buster.io/job)" ]
}

@test "evaluating the patched Deployment again yields no patch" {
  for fixture in create-labelled.json update-image-changed.json update-label-removed.json create-fastly.json create-webhook.json; do
    evaluate "$fixture"
    apply_patch_to "$fixture" "$BATS_TEST_TMPDIR/again.json"
    evaluate "$BATS_TEST_TMPDIR/again.json"
    assert_allowed_without_patch
  done
}

@test "a mutable tag is accepted with a warning" {
  evaluate create-mutable-tag.json
  [ "$(jq -r .allowed <<<"$output")" = true ]
  [ "$(jq -r '.warnings | length' <<<"$output")" -eq 1 ]
  [[ "$(jq -r '.warnings[0]' <<<"$output")" == 'container "web" uses ghcr.io/acme/shop:latest (mutable tag)'* ]]
}

@test "a long Deployment name gives a 63-character job name" {
  evaluate create-long-name.json
  job_name="$(patched_annotation cache-buster.io/job-name)"
  [ "${#job_name}" -eq 63 ]
  [[ "$job_name" == shop-frontend-europe-west-production-ca-cache-buster-* ]]
  [ "$(stamped_job | jq -r .metadata.name)" = "$job_name" ]
}

@test "only the named container counts" {
  evaluate create-sidecar-named.json
  [ "$(patched_annotation cache-buster.io/image-hash)" = b82cce53ec ]
}

# --- SPEC §2: bad per-Deployment configuration is rejected -------------------

@test "a malformed URL is rejected naming the annotation and the value" {
  evaluate create-bad-url.json
  assert_rejected_with 'annotation cache-buster.io/urls: "ftp://shop.example.com/" is not an absolute http or https URL; expected absolute URLs'
}

@test "an unknown provider is rejected" {
  evaluate create-unknown-provider.json
  assert_rejected_with 'annotation cache-buster.io/provider: "akamai" is not a known provider; expected one of cloudflare, fastly, webhook'
}

@test "a Deployment without purge target is rejected" {
  evaluate create-no-target.json
  assert_rejected_with 'Deployment web/shop has no purge target for provider cloudflare; expected at least one of the annotations cache-buster.io/urls'
}

@test "a target the provider cannot purge is rejected" {
  evaluate create-fastly-prefixes.json
  assert_rejected_with 'annotation cache-buster.io/prefixes: provider fastly cannot purge by URL prefix'
}

@test "a container annotation naming no container is rejected" {
  evaluate create-unknown-container.json
  assert_rejected_with 'annotation cache-buster.io/container: "app" names no container of the Deployment; expected one of the containers: web'
}

@test "an image that does not parse is rejected" {
  evaluate create-bad-image.json
  assert_rejected_with 'spec.template.spec.containers[0].image (container "web"): "ghcr.io/Acme/shop:1.4.2" is not a valid image reference: the repository name must be lowercase'
}

# --- SPEC §4: the companion Job ----------------------------------------------

@test "the stamped Job is a batch/v1 Job in the Deployment's namespace" {
  evaluate create-labelled.json
  job="$(stamped_job)"
  [ "$(jq -r .apiVersion <<<"$job")" = batch/v1 ]
  [ "$(jq -r .kind <<<"$job")" = Job ]
  [ "$(jq -r .metadata.namespace <<<"$job")" = web ]
  [ "$(jq -c .metadata.labels <<<"$job")" = '{"app.kubernetes.io/component":"cache-buster","app.kubernetes.io/managed-by":"cache-buster","cache-buster.io/image-hash":"b82cce53ec","cache-buster.io/site":"shop.example.com"}' ]
  [ "$(jq -c '.spec | [.backoffLimit, .activeDeadlineSeconds, .ttlSecondsAfterFinished]' <<<"$job")" = '[3,900,null]' ]
  [ "$(jq -r .spec.template.spec.restartPolicy <<<"$job")" = Never ]
}

@test "the stamped Job's pod meets Pod Security restricted" {
  evaluate create-labelled.json
  pod="$(stamped_job | jq .spec.template.spec)"
  [ "$(jq -c '.securityContext | [.runAsNonRoot, (.runAsUser > 0), .seccompProfile.type]' <<<"$pod")" = '[true,true,"RuntimeDefault"]' ]
  [ "$(jq '[.initContainers[], .containers[]] | length' <<<"$pod")" -eq 3 ]
  [ "$(jq '[.initContainers[], .containers[]] | map(select(
        .securityContext.allowPrivilegeEscalation == false
        and .securityContext.capabilities.drop == ["ALL"]
        and .securityContext.readOnlyRootFilesystem == true
        and .resources.requests.cpu and .resources.requests.memory
        and .resources.limits.cpu and .resources.limits.memory)) | length' <<<"$pod")" -eq 3 ]
  [ "$(jq '(.volumes | length) as $all | [.volumes[] | select(.projected or .secret or .emptyDir)] | length == $all' <<<"$pod")" = true ]
}

@test "the init containers wait for this image's hash, then for the rollout" {
  evaluate create-labelled.json
  job="$(stamped_job)"
  [ "$(jq -c '[.spec.template.spec.initContainers[].name]' <<<"$job")" = '["wait-image","wait-rollout"]' ]
  [ "$(jq -c '.spec.template.spec.initContainers[0].args' <<<"$job")" = '["wait","deployment/shop","--namespace","web","--for=jsonpath={.metadata.annotations.cache-buster\\.io/image-hash}=b82cce53ec","--timeout=60s","--cache-dir=/tmp/kubectl-cache"]' ]
  [ "$(jq -c '.spec.template.spec.initContainers[1].args' <<<"$job")" = '["rollout","status","deployment/shop","--namespace","web","--timeout=600s","--cache-dir=/tmp/kubectl-cache"]' ]
}

@test "only the init containers mount a service-account token" {
  evaluate create-labelled.json
  pod="$(stamped_job | jq .spec.template.spec)"
  [ "$(jq -r .automountServiceAccountToken <<<"$pod")" = false ]
  token=/var/run/secrets/kubernetes.io/serviceaccount
  [ "$(jq --arg t "$token" '[.initContainers[] | select(any(.volumeMounts[]; .mountPath == $t))] | length' <<<"$pod")" -eq 2 ]
  [ "$(jq --arg t "$token" '[.containers[] | select(any(.volumeMounts[]?; .mountPath == $t))] | length' <<<"$pod")" -eq 0 ]
}

# --- SPEC §5: providers ------------------------------------------------------

@test "cloudflare purges the URLs in batches, then prefixes, hosts and tags" {
  evaluate create-cloudflare-batches.json
  bodies="$(purge_args | jq -c '[range(0; length) as $i | select(.[$i] == "--data-raw") | .[$i + 1] | fromjson]')"
  [ "$(jq -c '[.[] | keys[0]]' <<<"$bodies")" = '["files","files","files","prefixes","hosts","tags"]' ]
  [ "$(jq -c '[.[] | .[keys[0]] | length]' <<<"$bodies")" = '[30,30,5,1,1,1]' ]
  [ "$(purge_args | jq -r '[.[] | select(startswith("https://api.cloudflare.com"))] | unique | .[]')" = 'https://api.cloudflare.com/client/v4/zones/{{CLOUDFLARE_ZONE_ID:trim:url}}/purge_cache' ]
}

@test "the cloudflare batch size comes from the settings" {
  evaluate create-cloudflare-batches.json --settings-path "$SETTINGS/small-batches.json"
  [ "$(purge_request_count)" -eq 10 ]
}

@test "cloudflare purge everything is one request alone" {
  evaluate create-cloudflare-everything.json
  [ "$(purge_request_count)" -eq 1 ]
  [ "$(purge_args | jq -r 'index("--data-raw") as $i | .[$i + 1]')" = '{"purge_everything":true}' ]
}

@test "fastly purges surrogate keys, then each URL with PURGE, with the Deployment's Secret" {
  evaluate create-fastly.json
  job="$(stamped_job)"
  [ "$(purge_args | jq -c '[range(0; length) as $i | select(.[$i] == "--request") | .[$i + 1]]')" = '["POST","PURGE"]' ]
  [ "$(purge_args | jq -r 'index("Surrogate-Key: shop product-list") != null')" = true ]
  [ "$(jq -r '.spec.template.spec.volumes[] | select(.name == "credentials") | .secret.secretName' <<<"$job")" = fastly-credentials ]
}

@test "the webhook receives the rollout's description" {
  evaluate create-webhook.json
  body="$(purge_args | jq -r 'index("--data-raw") as $i | .[$i + 1]')"
  [ "$(jq -c '{site, namespace, deployment, image, imageHash, jobName, tags, everything}' <<<"$body")" = '{"site":"shop.example.com","namespace":"web","deployment":"shop","image":"ghcr.io/acme/shop:1.4.2","imageHash":"b82cce53ec","jobName":"shop-cache-buster-b82cce53ec","tags":["shop"],"everything":false}' ]
}

@test "no secret value is in the Job: credentials are read from the mounted files" {
  evaluate create-labelled.json
  [ "$(purge_args | jq -r '.[] | select(startswith("CLOUDFLARE_"))')" = "$(printf '%s\n' CLOUDFLARE_ZONE_ID@/var/run/secrets/cache-buster/CLOUDFLARE_ZONE_ID CLOUDFLARE_API_TOKEN@/var/run/secrets/cache-buster/CLOUDFLARE_API_TOKEN)" ]
  [ "$(stamped_job | jq '[.. | objects | select(has("value")) | .value] | length')" -eq 0 ]
}

# --- SPEC §6: settings -------------------------------------------------------

@test "invalid settings stop the evaluation with a message naming key and range" {
  evaluate create-labelled.json --settings-path "$SETTINGS/invalid-batch-size.json"
  [ "$status" -ne 0 ]
  [[ "$stderr" == *"Provided settings are not valid"* ]]
  [[ "$stderr" == *"cloudflareBatchSize: 0 is out of range; expected 1 to 500"* ]]
}

@test "every invalid setting is reported at once" {
  evaluate create-labelled.json --settings-path "$SETTINGS/invalid-many.yaml"
  [ "$status" -ne 0 ]
  [[ "$stderr" == *"backoffLimit: 99 is out of range; expected 0 to 20"* ]]
  [[ "$stderr" == *"runAsUser: 0 is out of range"* ]]
  [[ "$stderr" == *"has curl 7.88; expected curl 8.3 or later"* ]]
}

@test "an unknown settings key is refused" {
  evaluate create-labelled.json --settings-path "$SETTINGS/unknown-key.json"
  [ "$status" -ne 0 ]
  [[ "$stderr" == *"unknown field \`batchSize\`"* ]]
}

@test "settings given inline as JSON apply" {
  evaluate create-labelled.json --settings-json '{"provider": "fastly", "credentialsSecret": "fastly-credentials"}'
  [ "$(purge_args | jq -r 'index("PURGE") != null')" = true ]
}

@test "custom settings rename the label, the annotations and the Job's fields" {
  jq '.request.object.metadata.labels |= (del(."cache-buster.io/site") + {"example.com/site": "shop.example.com"})
      | .request.object.metadata.annotations = {"purge.example.com/tags": "shop"}' \
    "$FIXTURES/create-labelled.json" >"$BATS_TEST_TMPDIR/custom.json"
  evaluate "$BATS_TEST_TMPDIR/custom.json" --settings-path "$SETTINGS/custom.yaml"
  [ "$(patch | jq -c '[.[].path] | sort')" = '["/metadata/annotations/purge.example.com~1image-hash","/metadata/annotations/purge.example.com~1job","/metadata/annotations/purge.example.com~1job-name"]' ]
  job="$(patched_annotation purge.example.com/job)"
  [ "$(jq -c '[.spec.backoffLimit, .spec.activeDeadlineSeconds, .spec.ttlSecondsAfterFinished]' <<<"$job")" = '[1,700,86400]' ]
  [ "$(jq -r '.spec.template.spec | [.serviceAccountName, .securityContext.runAsUser] | @tsv' <<<"$job")" = "$(printf 'purger\t10001')" ]
  [ "$(jq -r '.metadata.labels["purge.example.com/site"]' <<<"$job")" = shop.example.com ]
}

@test "with custom settings the default label no longer selects" {
  evaluate create-labelled.json --settings-path "$SETTINGS/custom.yaml"
  assert_allowed_without_patch
}

# --- Request forms kwctl accepts ---------------------------------------------

@test "a bare AdmissionRequest is evaluated like the AdmissionReview" {
  jq .request "$FIXTURES/create-labelled.json" >"$BATS_TEST_TMPDIR/bare.json"
  evaluate "$BATS_TEST_TMPDIR/bare.json"
  [ "$(patched_annotation cache-buster.io/job-name)" = shop-cache-buster-b82cce53ec ]
}

@test "the request can come from standard input" {
  run --separate-stderr bash -c "'$KWCTL' run --request-path - '$POLICY' <'$FIXTURES/create-labelled.json'"
  echo "output = ${output}"
  [ "$status" -eq 0 ]
  [ "$(patched_annotation cache-buster.io/image-hash)" = b82cce53ec ]
}
