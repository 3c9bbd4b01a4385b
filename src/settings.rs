//! Policy settings (SPEC §6): every default is here, every value is checked
//! by `Validatable::validate`, and unknown keys are refused.

use crate::http_service::{DEFAULT_TAG_HEADER, HttpMethod, HttpService, is_header_name};
use crate::image::ImageReference;
use crate::keys;
use crate::names::{is_dns1123_subdomain, is_qualified_name};
use crate::placement::{
    ImagePullSecret, TolerationSetting, annotation_problems, image_pull_secret_problems,
    node_selector_problems, priority_class_problems, toleration_problems,
};
use crate::providers::{AkamaiAction, AkamaiNetwork, Provider, ProviderFlags};
use crate::quantity::parse_quantity;
use crate::registry_ca::{RegistryCa, registry_ca_problems};
use kubewarden_policy_sdk::settings::Validatable;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// The project's one image (the launcher, `wait-rollout` and `purge`) of
/// this very release: the policy and the image always carry one version.
pub const DEFAULT_IMAGE: &str = concat!(
    "ghcr.io/cache-buster/cache-buster:v",
    env!("CARGO_PKG_VERSION")
);

/// Settings of earlier releases, refused with what replaced them.
const REMOVED_SETTINGS: [&str; 2] = ["kubectlImage", "curlImage"];

const ROLLOUT_TIMEOUT_RANGE: (i64, i64) = (1, 86_400);
const BACKOFF_LIMIT_RANGE: (i64, i64) = (0, 20);
const ACTIVE_DEADLINE_RANGE: (i64, i64) = (1, 604_800);
const TTL_RANGE: (i64, i64) = (0, i32::MAX as i64);
const CLOUDFLARE_BATCH_SIZE_RANGE: (i64, i64) = (1, 500);
const CONTENT_MAX_URLS_RANGE: (i64, i64) = (1, 10_000);
const RUN_AS_USER_RANGE: (i64, i64) = (1, i32::MAX as i64);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// The label that makes a Deployment take part; its value is the site.
    pub site_label: String,
    /// `P` of SPEC: the prefix of every annotation the policy reads or writes.
    pub annotation_prefix: String,
    /// Provider of Deployments without `P/provider`.
    pub provider: Provider,
    /// Secret of Deployments without `P/secret`.
    pub credentials_secret: String,
    pub service_account_name: String,
    /// The image of every container of the Job.
    pub image: String,
    pub rollout_timeout_seconds: i64,
    pub backoff_limit: i64,
    pub active_deadline_seconds: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<i64>,
    pub cloudflare_batch_size: i64,
    /// SPEC §9: beyond this many changed URLs, a content purge falls back
    /// to the base URLs' prefixes, or everything.
    pub content_max_urls: i64,
    /// SPEC §9: the registries a content purge reads over plain HTTP,
    /// `host[:port]` (kwctl's `insecure_sources`); HTTPS everywhere else.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub content_insecure_registries: Vec<String>,
    /// SPEC §9: the CA certificates of registries with a private CA, a
    /// ConfigMap's key in each content site's namespace (kwctl's
    /// `source_authorities`); the public roots only when unset.
    #[serde(rename = "contentRegistryCA", skip_serializing_if = "Option::is_none")]
    pub content_registry_ca: Option<RegistryCa>,
    /// Fastly marks content stale instead of evicting it
    /// (`Fastly-Soft-Purge: 1`), so the origin is not stampeded.
    pub fastly_soft_purge: bool,
    /// Fast Purge's request (provider akamai): `invalidate` or `delete`.
    pub akamai_action: AkamaiAction,
    /// Fast Purge's network (provider akamai): `production` or `staging`.
    pub akamai_network: AkamaiNetwork,
    /// The request each self-hosted cache gets (provider http).
    pub http_method: HttpMethod,
    /// The header that carries the tags to a self-hosted cache (provider http).
    pub http_tag_header: String,
    pub run_as_user: i64,
    pub resources: ContainerResources,
    /// The Job pod's placement and what it carries for the cluster's
    /// machinery (placement.rs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<ImagePullSecret>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<TolerationSetting>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Annotations of the Job's pods.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            site_label: keys::default_site_label(),
            annotation_prefix: keys::DEFAULT_PREFIX.to_owned(),
            provider: Provider::DEFAULT,
            credentials_secret: "cache-buster-credentials".to_owned(),
            service_account_name: "cache-buster".to_owned(),
            image: DEFAULT_IMAGE.to_owned(),
            rollout_timeout_seconds: 600,
            backoff_limit: 3,
            active_deadline_seconds: 900,
            ttl_seconds_after_finished: None,
            cloudflare_batch_size: 30,
            content_max_urls: i64::from(cache_buster_purge::content::DEFAULT_MAX_URLS),
            content_insecure_registries: Vec::new(),
            content_registry_ca: None,
            fastly_soft_purge: false,
            akamai_action: AkamaiAction::Invalidate,
            akamai_network: AkamaiNetwork::Production,
            http_method: HttpMethod::Purge,
            http_tag_header: DEFAULT_TAG_HEADER.to_owned(),
            run_as_user: 65532,
            resources: ContainerResources::default(),
            image_pull_secrets: Vec::new(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            priority_class_name: None,
            annotations: BTreeMap::new(),
        }
    }
}

/// Requests and limits given to each container of the Job. Settings may
/// give only some of them (`limits.memory` alone): the rest keep their
/// defaults.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(from = "ResourcesOverride")]
pub struct ContainerResources {
    pub requests: CpuMemory,
    pub limits: CpuMemory,
}

impl Default for ContainerResources {
    fn default() -> Self {
        ContainerResources {
            requests: CpuMemory {
                cpu: "10m".to_owned(),
                memory: "32Mi".to_owned(),
            },
            limits: CpuMemory {
                cpu: "200m".to_owned(),
                memory: "128Mi".to_owned(),
            },
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CpuMemory {
    pub cpu: String,
    pub memory: String,
}

/// `resources` as written in the settings: any part may be left out.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct ResourcesOverride {
    requests: CpuMemoryOverride,
    limits: CpuMemoryOverride,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct CpuMemoryOverride {
    cpu: Option<String>,
    memory: Option<String>,
}

impl CpuMemoryOverride {
    fn over(self, default: CpuMemory) -> CpuMemory {
        CpuMemory {
            cpu: self.cpu.unwrap_or(default.cpu),
            memory: self.memory.unwrap_or(default.memory),
        }
    }
}

impl From<ResourcesOverride> for ContainerResources {
    fn from(given: ResourcesOverride) -> Self {
        let default = ContainerResources::default();
        ContainerResources {
            requests: given.requests.over(default.requests),
            limits: given.limits.over(default.limits),
        }
    }
}

/// Parses settings JSON, naming the offending key on error
/// (`settings.backoffLimit: invalid type: …`).
pub fn parse_settings(json: &[u8]) -> Result<Settings, String> {
    let trimmed = json.trim_ascii();
    if trimmed.is_empty() || trimmed == b"null" {
        return Ok(Settings::default());
    }
    if !trimmed.starts_with(b"{") {
        return Err(
            "settings: expected an object of settings such as {\"provider\": \"fastly\"}"
                .to_owned(),
        );
    }
    let (settings, problems) = decode(json);
    if problems.is_empty() {
        Ok(settings)
    } else {
        Err(problems.join("; "))
    }
}

/// The settings from the keys that decode, and a problem for each key that
/// does not: every one at once, not only the first.
fn decode(json: &[u8]) -> (Settings, Vec<String>) {
    let named = |error: serde_path_to_error::Error<serde_json::Error>| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." {
            format!("settings: {inner}")
        } else {
            format!("settings.{path}: {inner}")
        }
    };
    // A key's problem is found in a text the policy wrote (that key alone):
    // its line and column would point nowhere the user can see.
    let named_alone = |error: serde_path_to_error::Error<serde_json::Error>| {
        let position = format!(
            " at line {} column {}",
            error.inner().line(),
            error.inner().column()
        );
        let message = named(error);
        message
            .strip_suffix(&position)
            .map(str::to_owned)
            .unwrap_or(message)
    };
    // Settings are read from JSON text only, every time the same way: each
    // other way (from a `Value`, say) is another copy of every settings
    // type's reader in the module.
    let from_text = |json: &[u8]| -> Result<Settings, _> {
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(json))
    };
    let first_error = match from_text(json) {
        Ok(settings) => return (settings, Vec::new()),
        Err(error) => named(error),
    };
    // Not an object of keys (a syntax error): that one problem is all.
    let Ok(object) = serde_json::from_slice::<BTreeMap<String, &RawValue>>(json) else {
        return (Settings::default(), vec![first_error]);
    };
    // `{"key":value,…}` of the members given, as JSON text.
    let object_of = |members: &[(&String, &RawValue)]| {
        let members: Vec<String> = members
            .iter()
            .map(|(key, value)| {
                format!(
                    "{}:{}",
                    serde_json::to_string(key).unwrap_or_default(),
                    value.get()
                )
            })
            .collect();
        format!("{{{}}}", members.join(","))
    };
    let mut problems = Vec::new();
    let mut decodable = Vec::new();
    for (key, value) in &object {
        if REMOVED_SETTINGS.contains(&key.as_str()) {
            problems.push(format!(
                "settings.{key}: no longer a setting: every container of the Job runs the project's own image \
                 (its wait-rollout and purge commands); set image instead if you mirror it (default {DEFAULT_IMAGE})"
            ));
            continue;
        }
        match from_text(object_of(&[(key, value)]).as_bytes()) {
            Ok(_) => decodable.push((key, *value)),
            Err(error) => problems.push(named_alone(error)),
        }
    }
    let settings = from_text(object_of(&decodable).as_bytes()).unwrap_or_default();
    (settings, problems)
}

/// Parses and checks settings: what `validate_settings` answers, and what
/// the launcher requires of its settings file. Every problem is reported,
/// those of keys that do not decode first.
pub fn parse_and_validate(json: &[u8]) -> Result<Settings, String> {
    let trimmed = json.trim_ascii();
    if trimmed.is_empty() || trimmed == b"null" || !trimmed.starts_with(b"{") {
        let settings = parse_settings(json)?;
        settings.validate()?;
        return Ok(settings);
    }
    let (settings, mut problems) = decode(json);
    if let Err(invalid) = settings.validate() {
        problems.push(invalid);
    }
    if problems.is_empty() {
        Ok(settings)
    } else {
        Err(problems.join("; "))
    }
}

impl Settings {
    /// `P/<name>`, for a name of `keys`.
    pub fn annotation(&self, name: &str) -> String {
        keys::prefixed(&self.annotation_prefix, name)
    }

    /// The providers' flags in the Job's argv: their settings, and the
    /// Service `P/http-service` names. The one place where a provider's
    /// settings meet its flags (its module in purge/src/providers/).
    pub fn provider_flags(&self, http_service: Option<HttpService>) -> ProviderFlags {
        let mut flags = ProviderFlags::default();
        flags.cloudflare.cloudflare_batch_size =
            usize::try_from(self.cloudflare_batch_size).unwrap_or(1);
        flags.fastly.fastly_soft_purge = self.fastly_soft_purge;
        flags.akamai.akamai_action = self.akamai_action;
        flags.akamai.akamai_network = self.akamai_network;
        flags.http.http_service = http_service;
        flags.http.http_method = self.http_method;
        flags.http.http_tag_header.clone_from(&self.http_tag_header);
        flags
    }
}

impl Validatable for Settings {
    fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, problem: String| {
            if !ok {
                problems.push(problem);
            }
        };

        check(
            is_qualified_name(&self.site_label),
            format!(
                "siteLabel: {:?} is not a valid label key; expected [prefix/]name such as cache-buster.io/site",
                self.site_label
            ),
        );
        check(
            is_dns1123_subdomain(&self.annotation_prefix),
            format!(
                "annotationPrefix: {:?} is not a DNS-1123 subdomain; expected lowercase letters, digits, '-' and '.', such as cache-buster.io",
                self.annotation_prefix
            ),
        );
        for (key, value) in [
            ("credentialsSecret", &self.credentials_secret),
            ("serviceAccountName", &self.service_account_name),
        ] {
            check(
                is_dns1123_subdomain(value),
                format!(
                    "{key}: {value:?} is not a valid object name; expected a DNS-1123 subdomain"
                ),
            );
        }
        if let Err(error) = ImageReference::parse(&self.image) {
            check(
                false,
                format!("image: {:?} is not an image reference: {error}", self.image),
            );
        }

        for (key, value, range) in [
            (
                "rolloutTimeoutSeconds",
                self.rollout_timeout_seconds,
                ROLLOUT_TIMEOUT_RANGE,
            ),
            ("backoffLimit", self.backoff_limit, BACKOFF_LIMIT_RANGE),
            (
                "activeDeadlineSeconds",
                self.active_deadline_seconds,
                ACTIVE_DEADLINE_RANGE,
            ),
            (
                "cloudflareBatchSize",
                self.cloudflare_batch_size,
                CLOUDFLARE_BATCH_SIZE_RANGE,
            ),
            (
                "contentMaxUrls",
                self.content_max_urls,
                CONTENT_MAX_URLS_RANGE,
            ),
            ("runAsUser", self.run_as_user, RUN_AS_USER_RANGE),
        ] {
            check(in_range(value, range), out_of_range(key, value, range));
        }
        if let Some(ttl) = self.ttl_seconds_after_finished {
            check(
                in_range(ttl, TTL_RANGE),
                out_of_range("ttlSecondsAfterFinished", ttl, TTL_RANGE),
            );
        }
        // The deadline covers the whole Job: the wait, then the purge.
        // Shorter, a slow rollout that ends in time still leaves no purge.
        let layers = [self.provider];
        let shortest = cache_buster_purge::options::shortest_deadline_seconds(
            self.rollout_timeout_seconds,
            &layers,
        );
        let completion = self.provider.info().completion_seconds;
        let waits_for_the_cdn = match completion {
            0 => String::new(),
            seconds => format!(
                ", and wait up to {seconds}s more for {} to finish it",
                self.provider
            ),
        };
        check(
            self.active_deadline_seconds >= shortest,
            format!(
                "activeDeadlineSeconds: {} leaves the Job no time to purge: it may wait {}s \
                 (rolloutTimeoutSeconds) for its stamp and the rollout, then purge for up to {}s with its retries{waits_for_the_cdn}; \
                 set activeDeadlineSeconds to at least {shortest}, or lower rolloutTimeoutSeconds",
                self.active_deadline_seconds,
                self.rollout_timeout_seconds,
                crate::providers::PURGE_BUDGET_SECONDS,
            ),
        );

        check(
            is_header_name(&self.http_tag_header),
            format!(
                "httpTagHeader: {:?} is not an HTTP header name; expected a token such as xkey or Surrogate-Key",
                self.http_tag_header
            ),
        );

        for (index, registry) in self.content_insecure_registries.iter().enumerate() {
            if let Err(refusal) = cache_buster_purge::content::check_registry(registry) {
                problems.push(format!(
                    "contentInsecureRegistries[{index}]: {registry:?} {}",
                    refusal.0
                ));
            }
        }
        problems.extend(registry_ca_problems(self.content_registry_ca.as_ref()));
        problems.extend(self.resources.problems());
        problems.extend(image_pull_secret_problems(&self.image_pull_secrets));
        problems.extend(node_selector_problems(&self.node_selector));
        problems.extend(toleration_problems(&self.tolerations));
        problems.extend(priority_class_problems(self.priority_class_name.as_deref()));
        problems.extend(annotation_problems(
            &self.annotations,
            &self.annotation_prefix,
        ));

        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

impl ContainerResources {
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (resource, request, limit) in [
            ("cpu", &self.requests.cpu, &self.limits.cpu),
            ("memory", &self.requests.memory, &self.limits.memory),
        ] {
            let request_value = quantity(&mut problems, "requests", resource, request);
            let limit_value = quantity(&mut problems, "limits", resource, limit);
            if let (Some(request_value), Some(limit_value)) = (request_value, limit_value)
                && request_value > limit_value
            {
                problems.push(format!(
                    "resources.requests.{resource}: {request:?} is more than resources.limits.{resource} ({limit:?}); expected a request no larger than its limit"
                ));
            }
        }
        problems
    }
}

fn quantity(problems: &mut Vec<String>, kind: &str, resource: &str, text: &str) -> Option<f64> {
    match parse_quantity(text) {
        Some(value) if value > 0.0 => Some(value),
        _ => {
            problems.push(format!(
                "resources.{kind}.{resource}: {text:?} is not a positive quantity; expected a value such as 100m, 0.5, 64Mi or 1Gi"
            ));
            None
        }
    }
}

fn in_range(value: i64, (min, max): (i64, i64)) -> bool {
    (min..=max).contains(&value)
}

fn out_of_range(key: &str, value: i64, (min, max): (i64, i64)) -> String {
    format!("{key}: {value} is out of range; expected {min} to {max}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::{Value, json};

    fn settings(json: serde_json::Value) -> Result<Settings, String> {
        parse_settings(json.to_string().as_bytes())
    }

    fn validation_error(json: serde_json::Value) -> String {
        settings(json).unwrap().validate().unwrap_err()
    }

    #[test]
    fn empty_settings_are_valid_and_all_defaults() {
        for empty in [&b""[..], b"{}", b"null", b"  "] {
            let parsed = parse_settings(empty).unwrap();
            assert_eq!(parsed, Settings::default());
            assert_eq!(parsed.validate(), Ok(()));
        }
    }

    #[test]
    fn defaults_are_the_specified_ones() {
        let defaults = Settings::default();
        assert_eq!(defaults.site_label, "cache-buster.io/site");
        assert_eq!(defaults.annotation_prefix, "cache-buster.io");
        assert_eq!(defaults.provider, Provider::Cloudflare);
        assert_eq!(defaults.credentials_secret, "cache-buster-credentials");
        assert_eq!(defaults.service_account_name, "cache-buster");
        // The project's image of this very release.
        assert_eq!(
            defaults.image,
            format!(
                "ghcr.io/cache-buster/cache-buster:v{}",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert_eq!(defaults.rollout_timeout_seconds, 600);
        assert_eq!(defaults.backoff_limit, 3);
        assert_eq!(defaults.active_deadline_seconds, 900);
        assert_eq!(defaults.ttl_seconds_after_finished, None);
        assert_eq!(defaults.cloudflare_batch_size, 30);
        assert_eq!(defaults.content_max_urls, 500);
        assert_eq!(defaults.run_as_user, 65532);
    }

    #[test]
    fn serde_defaults_and_default_agree_field_by_field() {
        let partial = settings(json!({"backoffLimit": 5})).unwrap();
        assert_eq!(
            partial,
            Settings {
                backoff_limit: 5,
                ..Settings::default()
            }
        );
        let partial =
            settings(json!({"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}})).unwrap();
        assert_eq!(
            partial.resources.requests,
            ContainerResources::default().requests
        );
    }

    #[test]
    fn full_settings_round_trip() {
        let all = json!({
            "siteLabel": "example.com/site",
            "annotationPrefix": "purge.example.com",
            "provider": "fastly",
            "credentialsSecret": "fastly-token",
            "serviceAccountName": "purger",
            "image": "registry.example.com/mirror/cache-buster@sha256:0000000000000000000000000000000000000000000000000000000000000001",
            "rolloutTimeoutSeconds": 300,
            "backoffLimit": 0,
            "activeDeadlineSeconds": 540,
            "ttlSecondsAfterFinished": 3600,
            "cloudflareBatchSize": 500,
            "contentMaxUrls": 2000,
            "fastlySoftPurge": true,
            "akamaiAction": "delete",
            "akamaiNetwork": "staging",
            "httpMethod": "BAN",
            "httpTagHeader": "Surrogate-Key",
            "runAsUser": 1000,
            "resources": {"requests": {"cpu": "5m", "memory": "16Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}},
            "imagePullSecrets": [{"name": "registry-mirror"}],
            "nodeSelector": {"kubernetes.io/arch": "arm64"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"},
                {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}
            ],
            "priorityClassName": "batch-low",
            "annotations": {"sidecar.istio.io/inject": "false", "linkerd.io/inject": "disabled"}
        });
        let parsed = settings(all.clone()).unwrap();
        assert_eq!(parsed.validate(), Ok(()));
        assert_eq!(serde_json::to_value(&parsed).unwrap(), all);
    }

    #[rstest]
    #[case::misspelt_key(json!({"lable": "x"}), "settings.lable: unknown field `lable`, expected one of `siteLabel`")]
    #[case::unknown_provider(json!({"provider": "keycdn"}), "settings.provider: unknown provider \"keycdn\", expected one of cloudflare, fastly, webhook, bunny, akamai, http, cloudfront, gcp, azure")]
    #[case::provider_in_capitals(json!({"provider": "Fastly"}), "settings.provider: unknown provider \"Fastly\", expected one of cloudflare, fastly, webhook, bunny, akamai, http, cloudfront, gcp, azure (provider names are lowercase: did you mean \"fastly\"?)")]
    #[case::provider_not_a_string(json!({"provider": 3}), "settings.provider: invalid type: integer `3`, expected a string")]
    #[case::wrong_type(json!({"backoffLimit": "three"}), "settings.backoffLimit: invalid type: string \"three\"")]
    #[case::akamai_action(json!({"akamaiAction": "purge"}), "settings.akamaiAction: unknown variant `purge`, expected `invalidate` or `delete`")]
    #[case::akamai_network(json!({"akamaiNetwork": "prod"}), "settings.akamaiNetwork: unknown variant `prod`, expected `production` or `staging`")]
    #[case::http_method(json!({"httpMethod": "purge"}), "settings.httpMethod: unknown variant `purge`, expected `PURGE` or `BAN`")]
    #[case::nested_unknown(json!({"resources": {"limits": {"gpu": "1", "cpu": "1", "memory": "1Gi"}}}), "settings.resources.limits.gpu: unknown field `gpu`, expected `cpu` or `memory`")]
    #[case::not_an_object(json!([1]), "settings: expected an object of settings")]
    #[case::a_string(json!("fastly"), "settings: expected an object of settings")]
    fn undecodable_settings_name_the_key(#[case] input: serde_json::Value, #[case] message: &str) {
        let error = settings(input).unwrap_err();
        assert!(error.contains(message), "{error}");
    }

    #[rstest]
    #[case::site_label(json!({"siteLabel": "bad label"}), "siteLabel: \"bad label\" is not a valid label key")]
    #[case::prefix(json!({"annotationPrefix": "Cache_Buster"}), "annotationPrefix: \"Cache_Buster\" is not a DNS-1123 subdomain")]
    #[case::secret(json!({"credentialsSecret": "Creds"}), "credentialsSecret: \"Creds\" is not a valid object name")]
    #[case::service_account(json!({"serviceAccountName": ""}), "serviceAccountName: \"\" is not a valid object name")]
    #[case::image(json!({"image": "Launcher"}), "image: \"Launcher\" is not an image reference: the repository name must be lowercase")]
    #[case::rollout_timeout(json!({"rolloutTimeoutSeconds": 0}), "rolloutTimeoutSeconds: 0 is out of range; expected 1 to 86400")]
    #[case::backoff(json!({"backoffLimit": -1}), "backoffLimit: -1 is out of range; expected 0 to 20")]
    #[case::deadline(json!({"activeDeadlineSeconds": 0}), "activeDeadlineSeconds: 0 is out of range; expected 1 to 604800")]
    #[case::deadline_below_rollout(json!({"activeDeadlineSeconds": 600}), "activeDeadlineSeconds: 600 leaves the Job no time to purge: it may wait 600s (rolloutTimeoutSeconds) for its stamp and the rollout, then purge for up to 180s with its retries; set activeDeadlineSeconds to at least 780, or lower rolloutTimeoutSeconds")]
    #[case::deadline_below_azures_wait(json!({"provider": "azure"}), "activeDeadlineSeconds: 900 leaves the Job no time to purge: it may wait 600s (rolloutTimeoutSeconds) for its stamp and the rollout, then purge for up to 180s with its retries, and wait up to 600s more for azure to finish it; set activeDeadlineSeconds to at least 1380, or lower rolloutTimeoutSeconds")]
    #[case::deadline_below_wait_and_purge(json!({"rolloutTimeoutSeconds": 800}), "activeDeadlineSeconds: 900 leaves the Job no time to purge: it may wait 800s (rolloutTimeoutSeconds) for its stamp and the rollout, then purge for up to 180s with its retries; set activeDeadlineSeconds to at least 980, or lower rolloutTimeoutSeconds")]
    #[case::ttl(json!({"ttlSecondsAfterFinished": -5}), "ttlSecondsAfterFinished: -5 is out of range; expected 0 to 2147483647")]
    #[case::batch_zero(json!({"cloudflareBatchSize": 0}), "cloudflareBatchSize: 0 is out of range; expected 1 to 500")]
    #[case::tag_header_space(json!({"httpTagHeader": "Surrogate Key"}), "httpTagHeader: \"Surrogate Key\" is not an HTTP header name; expected a token such as xkey or Surrogate-Key")]
    #[case::tag_header_empty(json!({"httpTagHeader": ""}), "httpTagHeader: \"\" is not an HTTP header name; expected a token such as xkey or Surrogate-Key")]
    #[case::batch_too_big(json!({"cloudflareBatchSize": 501}), "cloudflareBatchSize: 501 is out of range; expected 1 to 500")]
    #[case::content_insecure_registry_with_a_scheme(json!({"contentInsecureRegistries": ["registry.local:5000", "http://registry.local"]}), "contentInsecureRegistries[1]: \"http://registry.local\" is not a registry's host and optional port, such as registry.local:5000, without scheme or path")]
    #[case::content_max_urls_zero(json!({"contentMaxUrls": 0}), "contentMaxUrls: 0 is out of range; expected 1 to 10000")]
    #[case::content_max_urls_too_big(json!({"contentMaxUrls": 10_001}), "contentMaxUrls: 10001 is out of range; expected 1 to 10000")]
    #[case::root(json!({"runAsUser": 0}), "runAsUser: 0 is out of range; expected 1 to 2147483647")]
    #[case::quantity(json!({"resources": {"limits": {"cpu": "lots", "memory": "128Mi"}}}), "resources.limits.cpu: \"lots\" is not a positive quantity")]
    #[case::request_over_limit(json!({"resources": {"requests": {"cpu": "1", "memory": "32Mi"}}}), "resources.requests.cpu: \"1\" is more than resources.limits.cpu (\"200m\")")]
    fn invalid_values_are_named_with_the_allowed_range(
        #[case] input: serde_json::Value,
        #[case] message: &str,
    ) {
        let error = validation_error(input);
        assert!(error.contains(message), "{error}");
    }

    /// The Job pod's placement settings, each refused with its exact message.
    #[rstest]
    #[case::pull_secret_name(
        json!({"imagePullSecrets": [{"name": "mirror"}, {"name": "Mirror_Pull"}]}),
        "imagePullSecrets[1].name: \"Mirror_Pull\" is not a valid Secret name; expected a DNS-1123 subdomain such as registry-mirror"
    )]
    #[case::node_selector_key(
        json!({"nodeSelector": {"bad key": "x"}}),
        "nodeSelector: \"bad key\" is not a valid label key; expected [prefix/]name such as kubernetes.io/arch"
    )]
    #[case::node_selector_value(
        json!({"nodeSelector": {"kubernetes.io/arch": "arm 64"}}),
        "nodeSelector.kubernetes.io/arch: \"arm 64\" is not a valid label value; expected at most 63 letters, digits, '-', '_' or '.', beginning and ending with a letter or digit"
    )]
    #[case::toleration_key(
        json!({"tolerations": [{"key": "no/such/key", "operator": "Exists"}]}),
        "tolerations[0].key: \"no/such/key\" is not a valid taint key; expected [prefix/]name such as node-role.kubernetes.io/batch"
    )]
    #[case::toleration_operator(
        json!({"tolerations": [{"key": "dedicated", "operator": "In", "value": "batch"}]}),
        "tolerations[0].operator: \"In\" is not an operator; expected Equal or Exists"
    )]
    #[case::toleration_without_key(
        json!({"tolerations": [{"value": "batch"}]}),
        "tolerations[0].operator: \"Equal\" with no key; expected Exists, the only operator that tolerates every taint"
    )]
    #[case::toleration_exists_with_value(
        json!({"tolerations": [{"key": "dedicated", "operator": "Exists", "value": "batch"}]}),
        "tolerations[0].value: \"batch\" is given with operator Exists; expected no value"
    )]
    #[case::toleration_value(
        json!({"tolerations": [{"key": "dedicated", "value": "two words"}]}),
        "tolerations[0].value: \"two words\" is not a valid taint value; expected at most 63 letters, digits, '-', '_' or '.'"
    )]
    #[case::toleration_effect(
        json!({"tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoRun"}]}),
        "tolerations[0].effect: \"NoRun\" is not a taint effect; expected NoSchedule, PreferNoSchedule or NoExecute (or none for all three)"
    )]
    #[case::toleration_seconds(
        json!({"tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 30}]}),
        "tolerations[0].tolerationSeconds: 30 is given with effect \"NoSchedule\"; expected tolerationSeconds only with effect NoExecute"
    )]
    #[case::priority_class(
        json!({"priorityClassName": "Low Priority"}),
        "priorityClassName: \"Low Priority\" is not a valid PriorityClass name; expected a DNS-1123 subdomain such as batch-low"
    )]
    #[case::annotation_key(
        json!({"annotations": {"sidecar inject": "false"}}),
        "annotations: \"sidecar inject\" is not a valid annotation key; expected [prefix/]name such as sidecar.istio.io/inject"
    )]
    #[case::annotation_own_prefix(
        json!({"annotations": {"cache-buster.io/job": "{}"}}),
        "annotations: \"cache-buster.io/job\" is under the policy's own prefix cache-buster.io; expected a key of another prefix"
    )]
    fn placement_settings_are_refused_with_exact_messages(
        #[case] input: serde_json::Value,
        #[case] message: &str,
    ) {
        assert_eq!(validation_error(input), message);
    }

    #[rstest]
    #[case::misspelt_toleration_field(
        json!({"tolerations": [{"key": "dedicated", "efect": "NoSchedule"}]}),
        "settings.tolerations[0].efect: unknown field `efect`, expected one of `key`, `operator`, `value`, `effect`, `tolerationSeconds`"
    )]
    #[case::pull_secret_as_a_string(
        json!({"imagePullSecrets": ["registry-mirror"]}),
        "settings.imagePullSecrets[0]: invalid type: string \"registry-mirror\", expected struct ImagePullSecret"
    )]
    #[case::node_selector_number(
        json!({"nodeSelector": {"kubernetes.io/arch": 64}}),
        "settings.nodeSelector.kubernetes.io/arch: invalid type: integer `64`, expected a string"
    )]
    fn placement_settings_of_the_wrong_shape_name_the_place(
        #[case] input: serde_json::Value,
        #[case] message: &str,
    ) {
        assert_eq!(
            parse_and_validate(input.to_string().as_bytes()).unwrap_err(),
            message
        );
    }

    /// The README's settings table names every setting, with its default.
    #[test]
    fn the_readme_documents_every_setting_and_its_default() {
        let documented: Vec<(String, String)> =
            crate::readme::table("| setting | default | allowed | meaning |")
                .iter()
                .map(|row| (crate::readme::unquoted(&row[0]).to_owned(), row[1].clone()))
                .collect();
        let defaults = serde_json::to_value(Settings::default()).unwrap();
        let mut keys: Vec<&String> = defaults.as_object().unwrap().keys().collect();
        // Settings without a default are left out when unset.
        let unset = [
            "ttlSecondsAfterFinished",
            "contentInsecureRegistries",
            "contentRegistryCA",
            "imagePullSecrets",
            "nodeSelector",
            "tolerations",
            "priorityClassName",
            "annotations",
        ]
        .map(str::to_owned);
        keys.extend(&unset);
        keys.sort();
        let mut names: Vec<&String> = documented.iter().map(|(name, _)| name).collect();
        names.sort();
        assert_eq!(names, keys);
        for (name, cell) in &documented {
            let expected = match defaults.get(name) {
                None => "unset".to_owned(),
                Some(Value::String(text)) => format!("`{text}`"),
                Some(Value::Object(_)) => {
                    let resources = ContainerResources::default();
                    format!(
                        "requests `{}`/`{}`, limits `{}`/`{}`",
                        resources.requests.cpu,
                        resources.requests.memory,
                        resources.limits.cpu,
                        resources.limits.memory
                    )
                }
                Some(other) => format!("`{other}`"),
            };
            assert_eq!(cell, &expected, "the README's default of {name}");
        }
    }

    #[test]
    fn type_errors_and_invalid_values_are_all_reported_at_once() {
        let error = parse_and_validate(
            json!({"backoffLimit": "three", "provider": "Fastly", "runAsUser": 0})
                .to_string()
                .as_bytes(),
        )
        .unwrap_err();
        assert_eq!(
            error,
            "settings.backoffLimit: invalid type: string \"three\", expected i64; \
             settings.provider: unknown provider \"Fastly\", expected one of cloudflare, fastly, webhook, bunny, akamai, http, cloudfront, gcp, azure (provider names are lowercase: did you mean \"fastly\"?); \
             runAsUser: 0 is out of range; expected 1 to 2147483647"
        );
    }

    #[test]
    fn a_partial_resources_override_keeps_the_defaults_it_leaves_out() {
        let parsed = settings(json!({"resources": {"limits": {"memory": "256Mi"}}})).unwrap();
        let defaults = ContainerResources::default();
        assert_eq!(
            parsed.resources,
            ContainerResources {
                requests: defaults.requests,
                limits: CpuMemory {
                    cpu: defaults.limits.cpu,
                    memory: "256Mi".to_owned()
                },
            }
        );
        assert_eq!(parsed.validate(), Ok(()));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let error = validation_error(json!({"backoffLimit": 99, "runAsUser": 0}));
        assert!(error.contains("backoffLimit: 99"), "{error}");
        assert!(error.contains("runAsUser: 0"), "{error}");
    }

    /// Settings of earlier releases name what replaced them.
    #[rstest]
    #[case::kubectl_image("kubectlImage", json!({"kubectlImage": "registry.k8s.io/kubectl:v1.34.2"}))]
    #[case::curl_image("curlImage", json!({"curlImage": "curlimages/curl:8.17.0", "backoffLimit": 2}))]
    fn the_former_images_are_refused_naming_image(
        #[case] key: &str,
        #[case] input: serde_json::Value,
    ) {
        let error = parse_and_validate(input.to_string().as_bytes()).unwrap_err();
        assert_eq!(
            error,
            format!(
                "settings.{key}: no longer a setting: every container of the Job runs the project's own image \
                 (its wait-rollout and purge commands); set image instead if you mirror it (default {DEFAULT_IMAGE})"
            )
        );
    }

    #[test]
    fn annotation_keys_use_the_prefix() {
        let custom = Settings {
            annotation_prefix: "purge.example.com".into(),
            ..Settings::default()
        };
        assert_eq!(custom.annotation("job"), "purge.example.com/job");
    }
}
