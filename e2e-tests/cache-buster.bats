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

# The purge container's arguments, one JSON array.
purge_args() {
  stamped_job | jq -c '.spec.template.spec.containers[] | select(.name == "purge") | .args'
}

# The values of one flag of the purge (--url=…), one JSON array.
purge_flag() {
  purge_args | jq -c --arg flag "--$1=" '[.[] | select(startswith($flag)) | ltrimstr($flag)]'
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
  assert_rejected_with 'annotation cache-buster.io/provider: "keycdn" is not a known provider; expected one of cloudflare, fastly, webhook, bunny, akamai, http, cloudfront, gcp, azure'
}

@test "a Deployment without purge target is rejected" {
  evaluate create-no-target.json
  assert_rejected_with 'Deployment web/shop has no purge target for provider cloudflare; expected at least one of the annotations cache-buster.io/urls'
}

@test "a target the provider cannot purge is rejected" {
  evaluate create-fastly-prefixes.json
  assert_rejected_with 'annotation cache-buster.io/prefixes: provider fastly cannot purge by URL prefix'
}

# create-labelled.json with its annotations replaced by $1 (a JSON object).
with_annotations() {
  local request="$BATS_TEST_TMPDIR/request.json"
  jq --argjson annotations "$1" '.request.object.metadata.annotations = $annotations' \
    "$FIXTURES/create-labelled.json" >"$request"
  echo "$request"
}

@test "an unknown annotation under the prefix is rejected naming the nearest known one" {
  evaluate "$(with_annotations '{"cache-buster.io/urls": "https://shop.example.com/", "cache-buster.io/contnet": "/srv=https://shop.example.com/"}')"
  assert_rejected_with 'annotation cache-buster.io/contnet is not one the policy reads (did you mean cache-buster.io/content?); expected one of cache-buster.io/urls, '
}

@test "a malformed content pair is rejected naming the annotation" {
  evaluate "$(with_annotations '{"cache-buster.io/content": "/usr/share/nginx/html=https://shop.example.com/blog"}')"
  assert_rejected_with 'annotation cache-buster.io/content: "/usr/share/nginx/html=https://shop.example.com/blog" has a base URL that does not end in /; expected <dir>=<base URL> pairs'
}

@test "a content site is stamped with its pairs and the URL limit in the Job's argv" {
  evaluate "$(with_annotations '{"cache-buster.io/content": "/usr/share/nginx/html/=https://shop.example.com/"}')" \
    --settings-json '{"contentMaxUrls": 42}'
  [ "$status" -eq 0 ]
  [ "$(purge_flag content)" = '["/usr/share/nginx/html=https://shop.example.com/"]' ]
  [ "$(purge_flag content-max-urls)" = '["42"]' ]
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
  [ "$(jq '[.initContainers[], .containers[]] | length' <<<"$pod")" -eq 2 ]
  [ "$(jq '[.initContainers[], .containers[]] | map(select(
        .securityContext.allowPrivilegeEscalation == false
        and .securityContext.capabilities.drop == ["ALL"]
        and .securityContext.readOnlyRootFilesystem == true
        and .resources.requests.cpu and .resources.requests.memory
        and .resources.limits.cpu and .resources.limits.memory)) | length' <<<"$pod")" -eq 2 ]
  [ "$(jq '(.volumes | length) as $all | [.volumes[] | select(.projected or .secret or .emptyDir)] | length == $all' <<<"$pod")" = true ]
}

@test "every container runs the project's one image and program, no shell" {
  evaluate create-labelled.json
  pod="$(stamped_job | jq .spec.template.spec)"
  [ "$(jq -c '[.initContainers[], .containers[]] | map(.image) | unique' <<<"$pod")" = '["ghcr.io/cache-buster/cache-buster:v0.1.0"]' ]
  [ "$(jq -c '[.initContainers[], .containers[]] | map(.command) | unique' <<<"$pod")" = '[["cache-buster"]]' ]
}

@test "the init container waits for this image's hash, then for the rollout" {
  evaluate create-labelled.json
  job="$(stamped_job)"
  [ "$(jq -c '[.spec.template.spec.initContainers[].name]' <<<"$job")" = '["wait-rollout"]' ]
  [ "$(jq -c '.spec.template.spec.initContainers[0].args' <<<"$job")" = '["wait-rollout","--namespace=web","--deployment=shop","--image-hash=b82cce53ec","--annotation=cache-buster.io/image-hash","--timeout-seconds=600"]' ]
}

@test "only the init container mounts a service-account token" {
  evaluate create-labelled.json
  pod="$(stamped_job | jq .spec.template.spec)"
  [ "$(jq -r .automountServiceAccountToken <<<"$pod")" = false ]
  token=/var/run/secrets/kubernetes.io/serviceaccount
  [ "$(jq --arg t "$token" '[.initContainers[] | select(any(.volumeMounts[]; .mountPath == $t))] | length' <<<"$pod")" -eq 1 ]
  [ "$(jq --arg t "$token" '[.containers[] | select(any(.volumeMounts[]?; .mountPath == $t))] | length' <<<"$pod")" -eq 0 ]
}

# --- SPEC §5: providers ------------------------------------------------------

@test "cloudflare purges the URLs, prefixes, hosts and tags named on its argv" {
  evaluate create-cloudflare-batches.json
  [ "$(purge_args | jq -r '.[0:3] | join(" ")')" = 'purge --provider=cloudflare --secret=cache-buster-credentials' ]
  [ "$(purge_flag url | jq length)" -eq 65 ]
  [ "$(purge_flag prefix | jq length) $(purge_flag host | jq length) $(purge_flag tag | jq length)" = '1 1 1' ]
  [ "$(purge_flag cloudflare-batch-size)" = '["30"]' ]
  [ "$(purge_flag budget-seconds)" = '["180"]' ]
}

@test "the cloudflare batch size comes from the settings" {
  evaluate create-cloudflare-batches.json --settings-path "$SETTINGS/small-batches.json"
  [ "$(purge_flag cloudflare-batch-size)" != '["30"]' ]
  [ "$(purge_flag cloudflare-batch-size)" = "[\"$(jq .cloudflareBatchSize "$SETTINGS/small-batches.json")\"]" ]
}

@test "cloudflare purge everything asks for everything" {
  evaluate create-cloudflare-everything.json
  [ "$(purge_args | jq 'index("--everything") != null')" = true ]
}

@test "fastly purges surrogate keys and URLs, with the Deployment's Secret" {
  evaluate create-fastly.json
  job="$(stamped_job)"
  [ "$(purge_flag provider)" = '["fastly"]' ]
  [ "$(purge_flag tag)" = '["shop","product-list"]' ]
  [ "$(purge_flag secret)" = '["fastly-credentials"]' ]
  [ "$(jq -r '.spec.template.spec.volumes[] | select(.name == "credentials") | .secret | "\(.secretName) \(.optional)"' <<<"$job")" = 'fastly-credentials true' ]
  [ "$(purge_flag fastly-soft-purge)" = '["false"]' ]
}

@test "a fastly soft purge comes from the settings" {
  evaluate create-fastly.json --settings-json '{"fastlySoftPurge": true}'
  [ "$(purge_flag fastly-soft-purge)" = '["true"]' ]
}

@test "layers purge the site's own caches, then the CDN, with one Secret" {
  evaluate create-layers.json
  job="$(stamped_job)"
  [ "$(purge_flag provider)" = '["http,fastly"]' ]
  [ "$(purge_flag http-service)" = '["varnish:purge"]' ]
  [ "$(purge_flag fastly-soft-purge)" = '["false"]' ]
  [ "$(purge_flag secret)" = '["fastly-credentials"]' ]
  [ "$(purge_flag tag)" = '["shop","product-list"]' ]
}

@test "a target one layer cannot purge rejects the Deployment, naming that layer" {
  evaluate create-layers-prefixes.json
  assert_rejected_with 'annotation cache-buster.io/prefixes: provider http cannot purge by URL prefix'
}

@test "the webhook is told the rollout it purges for" {
  evaluate create-webhook.json
  [ "$(purge_args | jq -c '[.[] | select(test("^--(site|namespace|deployment|image|image-hash|job-name|tag)="))]')" = '["--tag=shop","--site=shop.example.com","--namespace=web","--deployment=shop","--image=ghcr.io/acme/shop:1.4.2","--image-hash=b82cce53ec","--job-name=shop-cache-buster-b82cce53ec"]' ]
}

@test "bunny purges URLs, prefixes and tags, and refuses host names" {
  jq '.request.object.metadata.annotations += {"cache-buster.io/provider": "bunny", "cache-buster.io/prefixes": "shop.example.com/blog/", "cache-buster.io/tags": "shop"}' \
    "$FIXTURES/create-labelled.json" >"$BATS_TEST_TMPDIR/bunny.json"
  evaluate "$BATS_TEST_TMPDIR/bunny.json"
  [ "$(purge_flag provider)" = '["bunny"]' ]
  [ "$(purge_flag prefix)" = '["shop.example.com/blog/"]' ]
  [ "$(purge_flag tag)" = '["shop"]' ]
  jq '.request.object.metadata.annotations += {"cache-buster.io/provider": "bunny", "cache-buster.io/hosts": "shop.example.com"}' \
    "$FIXTURES/create-labelled.json" >"$BATS_TEST_TMPDIR/bunny-hosts.json"
  evaluate "$BATS_TEST_TMPDIR/bunny-hosts.json"
  assert_rejected_with 'annotation cache-buster.io/hosts: provider bunny cannot purge by host name'
}

@test "akamai purges URLs and tags with the settings' action and network, and refuses everything" {
  jq '.request.object.metadata.annotations += {"cache-buster.io/provider": "akamai", "cache-buster.io/tags": "shop"}' \
    "$FIXTURES/create-labelled.json" >"$BATS_TEST_TMPDIR/akamai.json"
  evaluate "$BATS_TEST_TMPDIR/akamai.json"
  [ "$(purge_flag provider)" = '["akamai"]' ]
  [ "$(purge_flag tag)" = '["shop"]' ]
  [ "$(purge_flag akamai-action)" = '["invalidate"]' ]
  [ "$(purge_flag akamai-network)" = '["production"]' ]
  printf 'akamaiAction: delete\nakamaiNetwork: staging\n' >"$BATS_TEST_TMPDIR/akamai-settings.yaml"
  evaluate "$BATS_TEST_TMPDIR/akamai.json" --settings-path "$BATS_TEST_TMPDIR/akamai-settings.yaml"
  [ "$(purge_flag akamai-action)" = '["delete"]' ]
  [ "$(purge_flag akamai-network)" = '["staging"]' ]
  jq '.request.object.metadata.annotations += {"cache-buster.io/provider": "akamai", "cache-buster.io/everything": "true"}' \
    "$FIXTURES/create-labelled.json" >"$BATS_TEST_TMPDIR/akamai-everything.json"
  evaluate "$BATS_TEST_TMPDIR/akamai-everything.json"
  assert_rejected_with 'annotation cache-buster.io/everything: provider akamai cannot purge everything; expected only cache-buster.io/urls, cache-buster.io/tags with this provider'
}

@test "http purges the caches behind a Service: the purge reads the API, and the Service must be named" {
  jq '.request.object.metadata.annotations += {"cache-buster.io/provider": "http", "cache-buster.io/http-service": "varnish:purge", "cache-buster.io/tags": "shop"}' \
    "$FIXTURES/create-labelled.json" >"$BATS_TEST_TMPDIR/http.json"
  evaluate "$BATS_TEST_TMPDIR/http.json"
  [ "$(purge_args | jq -c '[.[] | select(test("^--(provider|namespace|http-[a-z-]+)="))]')" = '["--provider=http","--namespace=web","--http-service=varnish:purge","--http-method=PURGE","--http-tag-header=xkey"]' ]
  [ "$(stamped_job | jq -r '.spec.template.spec.containers[0].volumeMounts | map(.mountPath) | join(" ")')" = '/var/run/secrets/cache-buster /var/run/secrets/kubernetes.io/serviceaccount' ]
  jq '.request.object.metadata.annotations += {"cache-buster.io/provider": "http"}' \
    "$FIXTURES/create-labelled.json" >"$BATS_TEST_TMPDIR/http-no-service.json"
  evaluate "$BATS_TEST_TMPDIR/http-no-service.json"
  assert_rejected_with 'annotation cache-buster.io/http-service is missing: provider http purges the caches behind a Service; expected <service>[:<port>]'
}

@test "cloudfront invalidates URLs and prefixes under the Job's name, and refuses tags" {
  jq '.request.object.metadata.annotations += {"cache-buster.io/provider": "cloudfront", "cache-buster.io/prefixes": "shop.example.com/blog/"}' \
    "$FIXTURES/create-labelled.json" >"$BATS_TEST_TMPDIR/cloudfront.json"
  evaluate "$BATS_TEST_TMPDIR/cloudfront.json"
  [ "$(purge_flag provider)" = '["cloudfront"]' ]
  [ "$(purge_flag prefix)" = '["shop.example.com/blog/"]' ]
  [ "$(purge_flag job-name)" = "[\"$(patched_annotation cache-buster.io/job-name)\"]" ]
  jq '.request.object.metadata.annotations += {"cache-buster.io/provider": "cloudfront", "cache-buster.io/tags": "shop"}' \
    "$FIXTURES/create-labelled.json" >"$BATS_TEST_TMPDIR/cloudfront-tags.json"
  evaluate "$BATS_TEST_TMPDIR/cloudfront-tags.json"
  assert_rejected_with 'annotation cache-buster.io/tags: provider cloudfront cannot purge by cache tag; expected only cache-buster.io/urls, cache-buster.io/prefixes, cache-buster.io/everything ("true") with this provider'
}

@test "azure labels its pod for AKS Workload Identity, warns of a short deadline, and refuses tags" {
  jq '.request.object.metadata.annotations += {"cache-buster.io/provider": "azure", "cache-buster.io/prefixes": "shop.example.com/blog/"}' \
    "$FIXTURES/create-labelled.json" >"$BATS_TEST_TMPDIR/azure.json"
  evaluate "$BATS_TEST_TMPDIR/azure.json"
  [ "$(purge_flag provider)" = '["azure"]' ]
  [ "$(stamped_job | jq -r '.spec.template.metadata.labels["azure.workload.identity/use"]')" = true ]
  [ "$(stamped_job | jq -r '.spec.template.metadata.annotations["azure.workload.identity/skip-containers"]')" = wait-rollout ]
  # The default deadline leaves Front Door's wait 300 s, and says what to set.
  [ "$(purge_flag budget-seconds)" = '["300"]' ]
  [[ "$(jq -r '.warnings[0]' <<<"$output")" == *'set activeDeadlineSeconds to at least 1380' ]]
  evaluate "$BATS_TEST_TMPDIR/azure.json" --settings-json '{"activeDeadlineSeconds": 1380}'
  [ "$(purge_flag budget-seconds)" = '["780"]' ]
  [ "$(jq -r '.warnings // [] | length' <<<"$output")" -eq 0 ]
  jq '.request.object.metadata.annotations += {"cache-buster.io/provider": "azure", "cache-buster.io/tags": "shop"}' \
    "$FIXTURES/create-labelled.json" >"$BATS_TEST_TMPDIR/azure-tags.json"
  evaluate "$BATS_TEST_TMPDIR/azure-tags.json"
  assert_rejected_with 'annotation cache-buster.io/tags: provider azure cannot purge by cache tag; expected only cache-buster.io/urls, cache-buster.io/prefixes, cache-buster.io/everything ("true") with this provider'
}

@test "no secret value is in the Job: the program reads the mounted Secret" {
  evaluate create-labelled.json
  [ "$(stamped_job | jq '[.. | objects | select(has("env") or has("envFrom"))] | length')" -eq 0 ]
  [ "$(purge_args | jq '[.[] | select(test("CLOUDFLARE_|TOKEN"))] | length')" -eq 0 ]
  [ "$(stamped_job | jq -r '.spec.template.spec.containers[0].volumeMounts[0] | "\(.mountPath) \(.readOnly)"')" = '/var/run/secrets/cache-buster true' ]
}

@test "a dry run is stamped into the purge's argv, right after the Secret it will not read" {
  jq '.request.object.metadata.annotations["cache-buster.io/dry-run"] = "true"' \
    "$FIXTURES/create-labelled.json" >"$BATS_TEST_TMPDIR/dry-run.json"
  evaluate "$BATS_TEST_TMPDIR/dry-run.json"
  [ "$(purge_args | jq -r '.[0:4] | join(" ")')" = 'purge --provider=cloudflare --secret=cache-buster-credentials --dry-run' ]
  # Another Job than the real purge's: turning the dry run off stamps anew.
  dry_job="$(stamped_job)"
  evaluate create-labelled.json
  [ "$(stamped_job)" != "$dry_job" ]
  [ "$(purge_args | jq 'index("--dry-run")')" = null ]
}

@test "a dry-run annotation that is no boolean is rejected naming it" {
  jq '.request.object.metadata.annotations["cache-buster.io/dry-run"] = "yes"' \
    "$FIXTURES/create-labelled.json" >"$BATS_TEST_TMPDIR/dry-run.json"
  evaluate "$BATS_TEST_TMPDIR/dry-run.json"
  assert_rejected_with 'annotation cache-buster.io/dry-run: "yes" is not a boolean; expected "true" or "false"'
}

# --- SPEC §6: settings -------------------------------------------------------

@test "placement settings place the Job's pod and keep a mesh's sidecar out" {
  evaluate create-labelled.json --settings-path "$SETTINGS/placement.yaml"
  job="$(stamped_job)"
  [ "$(jq -c '.spec.template.spec | [.imagePullSecrets, .nodeSelector, .tolerations, .priorityClassName]' <<<"$job")" = '[[{"name":"registry-mirror"}],{"kubernetes.io/arch":"arm64"},[{"effect":"NoSchedule","key":"dedicated","operator":"Equal","value":"batch"}],"batch-low"]' ]
  [ "$(jq -c '.spec.template.metadata.annotations' <<<"$job")" = '{"linkerd.io/inject":"disabled","sidecar.istio.io/inject":"false"}' ]
}

@test "an invalid toleration is refused with the API server's rule" {
  evaluate create-labelled.json --settings-path "$SETTINGS/invalid-toleration.json"
  [ "$status" -ne 0 ]
  # The runner quotes the message (kwrun as JSON), so its quotes may be escaped.
  [[ "$stderr" == *'tolerations[0].value: '*'batch'*' is given with operator Exists; expected no value'* ]]
}

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
  [[ "$stderr" == *"Not-A-Reference"*"is not an image reference: the repository name must be lowercase"* ]]
}

@test "an unknown settings key is refused" {
  evaluate create-labelled.json --settings-path "$SETTINGS/unknown-key.json"
  [ "$status" -ne 0 ]
  [[ "$stderr" == *"unknown field \`batchSize\`"* ]]
}

@test "settings given inline as JSON apply" {
  evaluate create-labelled.json --settings-json '{"provider": "fastly", "credentialsSecret": "fastly-credentials"}'
  [ "$(purge_flag provider)" = '["fastly"]' ]
  [ "$(purge_flag secret)" = '["fastly-credentials"]' ]
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
