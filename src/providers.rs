//! Purge providers (SPEC §5): which targets each can purge and the curl
//! command line of the Job's `purge` container.
//!
//! The command is an argv array for the curl image, never a shell script.
//! Credentials stay in files of the mounted Secret: curl reads them with
//! `--variable NAME@file` and places them with `--expand-*`, trimmed, so no
//! secret value is ever part of the Job, an annotation or a command line.

use crate::error::{PolicyError, PolicyResult};
use crate::keys;
use crate::targets::PurgeTargets;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where the Job mounts the credentials Secret in the purge container.
pub const CREDENTIALS_DIR: &str = "/var/run/secrets/cache-buster";
const CLOUDFLARE_API: &str = "https://api.cloudflare.com/client/v4";
const FASTLY_API: &str = "https://api.fastly.com";
/// Fastly accepts at most 256 surrogate keys in one purge request.
pub const FASTLY_SURROGATE_KEYS_PER_REQUEST: usize = 256;

/// The longest one request may take (`--max-time`).
const REQUEST_MAX_SECONDS: i64 = 60;
/// How long curl starts retries of a request (`--retry-max-time`).
const RETRY_MAX_SECONDS: i64 = 120;
/// The longest one purge request takes with all its retries: the last retry
/// starts within the retry window and lasts at most one request's time.
pub const PURGE_REQUEST_SECONDS: i64 = RETRY_MAX_SECONDS + REQUEST_MAX_SECONDS;

/// Options every request repeats: curl resets per-request options at `--next`.
/// `--globoff`: URLs are purged as written, `[]{}` are not curl globs.
/// `--retry` covers time-outs, 408, 429 (honouring Retry-After) and 5xx with
/// exponential back-off.
const REQUEST_OPTIONS: &[&str] = &[
    "--silent",
    "--show-error",
    // Like --fail, and the CDN's answer is printed too: with the container's
    // FallbackToLogsOnError it reaches the pod status, and the launcher's
    // CacheBusterPurgeFailed Event quotes it.
    "--fail-with-body",
    "--globoff",
    "--retry",
    "5",
    "--retry-connrefused",
    "--retry-max-time",
    "120",
    "--connect-timeout",
    "10",
    "--max-time",
    "60",
];

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Provider {
    Cloudflare,
    Fastly,
    Webhook,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::Cloudflare, Provider::Fastly, Provider::Webhook];

    pub fn name(self) -> &'static str {
        match self {
            Provider::Cloudflare => "cloudflare",
            Provider::Fastly => "fastly",
            Provider::Webhook => "webhook",
        }
    }

    pub fn from_name(name: &str) -> Option<Provider> {
        Provider::ALL
            .into_iter()
            .find(|provider| provider.name() == name)
    }

    /// For a name that is not a provider, the provider it most likely means,
    /// as a hint to add to the message: the same name in another case, or
    /// one within two edits (`fasty`, `web-hook`).
    pub fn did_you_mean(name: &str) -> Option<String> {
        let lowercase = name.trim().to_lowercase();
        if let Some(provider) = Provider::from_name(&lowercase) {
            return Some(format!(
                "provider names are lowercase: did you mean {:?}?",
                provider.name()
            ));
        }
        Provider::ALL
            .into_iter()
            .map(|provider| (strsim::levenshtein(&lowercase, provider.name()), provider))
            .filter(|(distance, _)| *distance <= 2)
            .min_by_key(|(distance, _)| *distance)
            .map(|(_, provider)| format!("did you mean {:?}?", provider.name()))
    }

    /// "one of cloudflare, fastly, webhook", with the hint for `name`.
    pub fn expected_for(name: &str) -> String {
        let mut expected = "one of cloudflare, fastly, webhook".to_owned();
        if let Some(hint) = Provider::did_you_mean(name) {
            expected.push_str(&format!(" ({hint})"));
        }
        expected
    }

    /// The keys the credentials Secret must (or, for `WEBHOOK_TOKEN`, may) hold.
    pub fn secret_keys(self) -> &'static [&'static str] {
        match self {
            Provider::Cloudflare => &["CLOUDFLARE_ZONE_ID", "CLOUDFLARE_API_TOKEN"],
            Provider::Fastly => &["FASTLY_SERVICE_ID", "FASTLY_API_TOKEN"],
            Provider::Webhook => &["WEBHOOK_URL", "WEBHOOK_TOKEN"],
        }
    }

    /// Those of `secret_keys` the Secret may leave out.
    pub fn optional_secret_keys(self) -> &'static [&'static str] {
        match self {
            Provider::Cloudflare | Provider::Fastly => &[],
            Provider::Webhook => &["WEBHOOK_TOKEN"],
        }
    }

    /// The target lists this provider can purge (besides `everything`).
    fn supported_lists(self) -> &'static [&'static str] {
        match self {
            Provider::Cloudflare | Provider::Webhook => {
                &[keys::URLS, keys::PREFIXES, keys::HOSTS, keys::TAGS]
            }
            Provider::Fastly => &[keys::URLS, keys::TAGS],
        }
    }

    /// SPEC §2: a target the provider cannot purge, or no target at all (the
    /// webhook needs none), is an error. Returns warnings for what is accepted
    /// but has no effect.
    pub fn check_targets(
        self,
        purge: &PurgeTargets,
        deployment: &str,
        key: impl Fn(&str) -> String,
    ) -> PolicyResult<Vec<String>> {
        let supported = self.supported_lists();
        let expected = || {
            let mut names: Vec<String> = supported.iter().map(|name| key(name)).collect();
            names.push(format!("{} (\"true\")", key(keys::EVERYTHING)));
            names.join(", ")
        };
        if let Some(unsupported) = purge
            .non_empty_lists()
            .into_iter()
            .find(|list| !supported.contains(list))
        {
            return Err(PolicyError::UnsupportedTarget {
                key: key(unsupported),
                provider: self.name().to_owned(),
                target: target_noun(unsupported).to_owned(),
                expected: expected(),
            });
        }
        if purge.is_empty() && self != Provider::Webhook {
            return Err(PolicyError::NoPurgeTarget {
                deployment: deployment.to_owned(),
                provider: self.name().to_owned(),
                expected: expected(),
            });
        }
        let redundant = purge.non_empty_lists();
        let mut warnings = Vec::new();
        if purge.everything && !redundant.is_empty() && self != Provider::Webhook {
            warnings.push(format!(
                "{} is \"true\": the whole cache is purged, so {} need no purge of their own",
                key(keys::EVERYTHING),
                redundant
                    .iter()
                    .map(|name| key(name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(warnings)
    }
}

impl TryFrom<String> for Provider {
    type Error = String;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Provider::from_name(&name).ok_or_else(|| {
            format!(
                "unknown provider {name:?}, expected {}",
                Provider::expected_for(&name)
            )
        })
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn target_noun(list: &str) -> &'static str {
    match list {
        keys::PREFIXES => "URL prefix",
        keys::HOSTS => "host name",
        keys::TAGS => "cache tag",
        _ => "URL",
    }
}

/// What the webhook receives, in the field order of SPEC §5.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload<'a> {
    pub site: &'a str,
    pub namespace: &'a str,
    pub deployment: &'a str,
    /// The canonical image; with several counted containers, their
    /// `name=image` lines joined by ", ".
    pub image: String,
    pub image_hash: &'a str,
    pub job_name: &'a str,
    pub urls: &'a [String],
    pub prefixes: &'a [String],
    pub hosts: &'a [String],
    pub tags: &'a [String],
    pub everything: bool,
}

/// The purge container's command line and the environment it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeCommand {
    pub args: Vec<String>,
    /// Environment variables filled from optional Secret keys: (variable, key).
    pub optional_secret_env: Vec<(&'static str, &'static str)>,
}

/// Builds the curl arguments (without the `curl` command itself).
pub fn purge_command(
    provider: Provider,
    purge: &PurgeTargets,
    cloudflare_batch_size: usize,
    webhook: &WebhookPayload<'_>,
) -> PolicyResult<PurgeCommand> {
    let mut command = CommandLine::new();
    let mut optional_secret_env = Vec::new();
    match provider {
        Provider::Cloudflare => {
            command.read_secret_file("CLOUDFLARE_ZONE_ID");
            command.read_secret_file("CLOUDFLARE_API_TOKEN");
            let url =
                format!("{CLOUDFLARE_API}/zones/{{{{CLOUDFLARE_ZONE_ID:trim:url}}}}/purge_cache");
            let auth = "Authorization: Bearer {{CLOUDFLARE_API_TOKEN:trim}}";
            for body in cloudflare_bodies(purge, cloudflare_batch_size.max(1))? {
                command.request(
                    "POST",
                    Url::Expanded(&url),
                    &[Header::Expanded(auth)],
                    Some(&body),
                );
            }
        }
        Provider::Fastly => {
            command.read_secret_file("FASTLY_SERVICE_ID");
            command.read_secret_file("FASTLY_API_TOKEN");
            let auth = Header::Expanded("Fastly-Key: {{FASTLY_API_TOKEN:trim}}");
            let service = format!("{FASTLY_API}/service/{{{{FASTLY_SERVICE_ID:trim:url}}}}");
            if purge.everything {
                let url = format!("{service}/purge_all");
                command.request("POST", Url::Expanded(&url), &[auth], None);
            } else {
                let url = format!("{service}/purge");
                for keys in purge.tags.chunks(FASTLY_SURROGATE_KEYS_PER_REQUEST) {
                    let surrogate_keys = format!("Surrogate-Key: {}", keys.join(" "));
                    let headers = [auth, Header::Plain(&surrogate_keys)];
                    command.request("POST", Url::Expanded(&url), &headers, None);
                }
                for url in &purge.urls {
                    command.request("PURGE", Url::Plain(url), &[auth], None);
                }
            }
        }
        Provider::Webhook => {
            command.read_secret_file("WEBHOOK_URL");
            // A missing file stops curl, a missing optional variable does not:
            // the optional token comes through the environment, empty if unset.
            for &key in provider.optional_secret_keys() {
                command.import_environment_or_empty(key);
                optional_secret_env.push((key, key));
            }
            let body = to_json(webhook)?;
            command.request(
                "POST",
                Url::Expanded("{{WEBHOOK_URL:trim}}"),
                &[Header::Expanded(
                    "Authorization: Bearer {{WEBHOOK_TOKEN:trim}}",
                )],
                Some(&body),
            );
        }
    }
    Ok(PurgeCommand {
        args: command.args,
        optional_secret_env,
    })
}

/// SPEC §5: `{"files":[…]}` in batches, then prefixes, hosts and tags likewise,
/// or `{"purge_everything":true}` alone.
fn cloudflare_bodies(purge: &PurgeTargets, batch_size: usize) -> PolicyResult<Vec<String>> {
    if purge.everything {
        return Ok(vec![to_json(
            &serde_json::json!({"purge_everything": true}),
        )?]);
    }
    let mut bodies = Vec::new();
    for (field, items) in [
        ("files", &purge.urls),
        ("prefixes", &purge.prefixes),
        ("hosts", &purge.hosts),
        ("tags", &purge.tags),
    ] {
        for batch in items.chunks(batch_size) {
            bodies.push(to_json(&serde_json::json!({ field: batch }))?);
        }
    }
    Ok(bodies)
}

fn to_json(value: &impl Serialize) -> PolicyResult<String> {
    serde_json::to_string(value).map_err(|error| PolicyError::JobSerialization(error.to_string()))
}

enum Url<'a> {
    /// Contains `{{variables}}`.
    Expanded(&'a str),
    /// Taken as written.
    Plain(&'a str),
}

#[derive(Clone, Copy)]
enum Header<'a> {
    Expanded(&'a str),
    Plain(&'a str),
}

struct CommandLine {
    args: Vec<String>,
    requests: usize,
}

impl CommandLine {
    fn new() -> Self {
        // Without --fail-early curl goes on after a failed request and exits
        // with the status of the last one, hiding a failed batch.
        CommandLine {
            args: vec!["--fail-early".to_owned()],
            requests: 0,
        }
    }

    fn push(&mut self, args: &[&str]) {
        self.args.extend(args.iter().map(|arg| (*arg).to_owned()));
    }

    fn read_secret_file(&mut self, key: &str) {
        self.push(&["--variable", &format!("{key}@{CREDENTIALS_DIR}/{key}")]);
    }

    fn import_environment_or_empty(&mut self, variable: &str) {
        self.push(&["--variable", &format!("%{variable}=")]);
    }

    fn request(
        &mut self,
        method: &str,
        url: Url<'_>,
        headers: &[Header<'_>],
        json_body: Option<&str>,
    ) {
        if self.requests > 0 {
            self.push(&["--next"]);
        }
        self.requests = self.requests.saturating_add(1);
        self.push(REQUEST_OPTIONS);
        self.push(&["--request", method]);
        match url {
            Url::Expanded(url) => self.push(&["--expand-url", url]),
            Url::Plain(url) => self.push(&["--url", url]),
        }
        for header in headers {
            match header {
                Header::Expanded(header) => self.push(&["--expand-header", header]),
                Header::Plain(header) => self.push(&["--header", header]),
            }
        }
        if let Some(body) = json_body {
            // --data-raw: a body is never read from an @file.
            self.push(&[
                "--header",
                "Content-Type: application/json",
                "--data-raw",
                body,
            ]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's provider table: every provider, with its Secret keys
    /// (the optional ones marked so).
    #[test]
    fn the_readme_names_every_provider_and_its_secret_keys() {
        let documented: Vec<(String, String)> =
            crate::readme::table("| provider | Secret keys | requests |")
                .iter()
                .map(|row| (crate::readme::unquoted(&row[0]).to_owned(), row[1].clone()))
                .collect();
        let expected: Vec<(String, String)> = Provider::ALL
            .iter()
            .map(|provider| {
                let keys: Vec<String> = provider
                    .secret_keys()
                    .iter()
                    .map(|key| {
                        if provider.optional_secret_keys().contains(key) {
                            format!("optional `{key}`")
                        } else {
                            format!("`{key}`")
                        }
                    })
                    .collect();
                (provider.name().to_owned(), keys.join(", "))
            })
            .collect();
        assert_eq!(documented, expected);
    }

    /// The figures the deadline check counts on are the ones curl is given.
    #[test]
    fn the_request_options_are_the_counted_time_limits() {
        let value_of = |flag: &str| {
            let at = REQUEST_OPTIONS.iter().position(|option| *option == flag);
            at.and_then(|at| REQUEST_OPTIONS.get(at + 1)).copied()
        };
        assert_eq!(
            value_of("--max-time"),
            Some(REQUEST_MAX_SECONDS.to_string().as_str())
        );
        assert_eq!(
            value_of("--retry-max-time"),
            Some(RETRY_MAX_SECONDS.to_string().as_str())
        );
    }
    use rstest::rstest;

    fn key(name: &str) -> String {
        format!("cache-buster.io/{name}")
    }

    fn payload<'a>(purge: &'a PurgeTargets) -> WebhookPayload<'a> {
        WebhookPayload {
            site: "shop",
            namespace: "web",
            deployment: "shop",
            image: "docker.io/library/nginx:1.25".to_owned(),
            image_hash: "d568c927cb",
            job_name: "shop-cache-buster-d568c927cb",
            urls: &purge.urls,
            prefixes: &purge.prefixes,
            hosts: &purge.hosts,
            tags: &purge.tags,
            everything: purge.everything,
        }
    }

    fn args(provider: Provider, purge: &PurgeTargets, batch: usize) -> Vec<String> {
        purge_command(provider, purge, batch, &payload(purge))
            .unwrap()
            .args
    }

    /// Splits the argv at `--next` into requests, without the global options.
    fn requests(args: &[String]) -> Vec<Vec<String>> {
        let first_request = args.iter().position(|arg| arg == "--silent").unwrap();
        args[first_request..]
            .split(|arg| arg == "--next")
            .map(<[String]>::to_vec)
            .collect()
    }

    fn value_of<'a>(request: &'a [String], option: &str) -> Vec<&'a str> {
        request
            .windows(2)
            .filter(|pair| pair[0] == option)
            .map(|pair| pair[1].as_str())
            .collect()
    }

    fn urls(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("https://www.example.com/{i}"))
            .collect()
    }

    #[test]
    fn cloudflare_batches_files_then_prefixes_hosts_and_tags() {
        let purge = PurgeTargets {
            urls: urls(65),
            prefixes: vec!["www.example.com/blog".into()],
            hosts: vec!["static.example.com".into()],
            tags: vec!["a".into(), "b".into()],
            everything: false,
        };
        let args = args(Provider::Cloudflare, &purge, 30);
        let requests = requests(&args);
        let bodies: Vec<serde_json::Value> = requests
            .iter()
            .map(|r| serde_json::from_str(value_of(r, "--data-raw")[0]).unwrap())
            .collect();
        assert_eq!(bodies.len(), 6);
        assert_eq!(bodies[0]["files"].as_array().unwrap().len(), 30);
        assert_eq!(bodies[1]["files"].as_array().unwrap().len(), 30);
        assert_eq!(bodies[2]["files"].as_array().unwrap().len(), 5);
        assert_eq!(bodies[2]["files"][4], "https://www.example.com/64");
        assert_eq!(
            bodies[3],
            serde_json::json!({"prefixes": ["www.example.com/blog"]})
        );
        assert_eq!(
            bodies[4],
            serde_json::json!({"hosts": ["static.example.com"]})
        );
        assert_eq!(bodies[5], serde_json::json!({"tags": ["a", "b"]}));
        for request in &requests {
            assert_eq!(value_of(request, "--request"), ["POST"]);
            assert_eq!(
                value_of(request, "--expand-url"),
                [
                    "https://api.cloudflare.com/client/v4/zones/{{CLOUDFLARE_ZONE_ID:trim:url}}/purge_cache"
                ]
            );
            assert_eq!(
                value_of(request, "--expand-header"),
                ["Authorization: Bearer {{CLOUDFLARE_API_TOKEN:trim}}"]
            );
            assert_eq!(
                value_of(request, "--header"),
                ["Content-Type: application/json"]
            );
            for option in REQUEST_OPTIONS.iter().filter(|o| o.starts_with("--")) {
                assert!(
                    request.iter().any(|a| a == option),
                    "{option} missing in {request:?}"
                );
            }
        }
    }

    #[rstest]
    #[case(1, 65)]
    #[case(30, 3)]
    #[case(64, 2)]
    #[case(65, 1)]
    #[case(500, 1)]
    fn cloudflare_batch_size_sets_the_number_of_requests(
        #[case] batch: usize,
        #[case] expected: usize,
    ) {
        let purge = PurgeTargets {
            urls: urls(65),
            ..Default::default()
        };
        assert_eq!(
            requests(&args(Provider::Cloudflare, &purge, batch)).len(),
            expected
        );
    }

    #[test]
    fn cloudflare_everything_is_one_request_alone() {
        let purge = PurgeTargets {
            urls: urls(3),
            everything: true,
            ..Default::default()
        };
        let requests = requests(&args(Provider::Cloudflare, &purge, 30));
        assert_eq!(requests.len(), 1);
        assert_eq!(
            value_of(&requests[0], "--data-raw"),
            [r#"{"purge_everything":true}"#]
        );
    }

    #[test]
    fn credentials_are_read_from_the_secret_files_once_before_any_request() {
        let args = args(
            Provider::Cloudflare,
            &PurgeTargets {
                urls: urls(1),
                ..Default::default()
            },
            30,
        );
        assert_eq!(
            &args[..5],
            [
                "--fail-early",
                "--variable",
                "CLOUDFLARE_ZONE_ID@/var/run/secrets/cache-buster/CLOUDFLARE_ZONE_ID",
                "--variable",
                "CLOUDFLARE_API_TOKEN@/var/run/secrets/cache-buster/CLOUDFLARE_API_TOKEN",
            ]
        );
    }

    #[test]
    fn fastly_purges_keys_in_batches_of_256_then_each_url() {
        let purge = PurgeTargets {
            urls: urls(2),
            tags: (0..300).map(|i| format!("key{i}")).collect(),
            ..Default::default()
        };
        let requests = requests(&args(Provider::Fastly, &purge, 30));
        assert_eq!(requests.len(), 4);
        let service = "https://api.fastly.com/service/{{FASTLY_SERVICE_ID:trim:url}}";
        for (request, count) in requests[..2].iter().zip([256, 44]) {
            assert_eq!(value_of(request, "--request"), ["POST"]);
            assert_eq!(
                value_of(request, "--expand-url"),
                [format!("{service}/purge")]
            );
            let keys = value_of(request, "--header")[0]
                .strip_prefix("Surrogate-Key: ")
                .unwrap();
            assert_eq!(keys.split(' ').count(), count);
        }
        for (request, url) in requests[2..].iter().zip(urls(2)) {
            assert_eq!(value_of(request, "--request"), ["PURGE"]);
            assert_eq!(value_of(request, "--url"), [url.as_str()]);
        }
        for request in &requests {
            assert_eq!(
                value_of(request, "--expand-header"),
                ["Fastly-Key: {{FASTLY_API_TOKEN:trim}}"]
            );
            assert!(value_of(request, "--data-raw").is_empty());
        }
    }

    #[test]
    fn fastly_everything_is_purge_all_alone() {
        let purge = PurgeTargets {
            tags: vec!["a".into()],
            everything: true,
            ..Default::default()
        };
        let requests = requests(&args(Provider::Fastly, &purge, 30));
        assert_eq!(requests.len(), 1);
        assert_eq!(
            value_of(&requests[0], "--expand-url"),
            ["https://api.fastly.com/service/{{FASTLY_SERVICE_ID:trim:url}}/purge_all"]
        );
    }

    #[test]
    fn webhook_posts_the_payload_once() {
        let purge = PurgeTargets {
            urls: urls(1),
            tags: vec!["t".into()],
            ..Default::default()
        };
        let command = purge_command(Provider::Webhook, &purge, 30, &payload(&purge)).unwrap();
        assert_eq!(
            command.optional_secret_env,
            [("WEBHOOK_TOKEN", "WEBHOOK_TOKEN")]
        );
        assert!(
            command
                .args
                .windows(2)
                .any(|w| w == ["--variable", "%WEBHOOK_TOKEN="])
        );
        let requests = requests(&command.args);
        assert_eq!(requests.len(), 1);
        assert_eq!(
            value_of(&requests[0], "--expand-url"),
            ["{{WEBHOOK_URL:trim}}"]
        );
        assert_eq!(
            value_of(&requests[0], "--expand-header"),
            ["Authorization: Bearer {{WEBHOOK_TOKEN:trim}}"]
        );
        let body: serde_json::Value =
            serde_json::from_str(value_of(&requests[0], "--data-raw")[0]).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "site": "shop", "namespace": "web", "deployment": "shop",
                "image": "docker.io/library/nginx:1.25", "imageHash": "d568c927cb",
                "jobName": "shop-cache-buster-d568c927cb",
                "urls": ["https://www.example.com/0"], "prefixes": [], "hosts": [], "tags": ["t"],
                "everything": false
            })
        );
        assert!(
            value_of(&requests[0], "--data-raw")[0]
                .starts_with(r#"{"site":"shop","namespace":"web","deployment":"shop","image":"#)
        );
    }

    #[test]
    fn no_secret_value_or_file_content_is_on_the_command_line() {
        for provider in Provider::ALL {
            let purge = PurgeTargets {
                urls: urls(1),
                ..Default::default()
            };
            for arg in args(provider, &purge, 30) {
                for key in provider.secret_keys() {
                    if arg.contains(key) {
                        // Only references: a file path or a {{variable}} expansion.
                        assert!(
                            arg.contains(&format!("{CREDENTIALS_DIR}/{key}"))
                                || arg.contains(&format!("{{{{{key}:trim"))
                                || arg == format!("%{key}="),
                            "{arg}"
                        );
                    }
                }
            }
        }
    }

    #[rstest]
    #[case::fastly_prefixes(Provider::Fastly, PurgeTargets { prefixes: vec!["a.example/b".into()], ..Default::default() },
        "annotation cache-buster.io/prefixes: provider fastly cannot purge by URL prefix; expected only cache-buster.io/urls, cache-buster.io/tags, cache-buster.io/everything (\"true\") with this provider")]
    #[case::fastly_hosts(Provider::Fastly, PurgeTargets { hosts: vec!["a.example".into()], ..Default::default() },
        "annotation cache-buster.io/hosts: provider fastly cannot purge by host name")]
    #[case::cloudflare_nothing(
        Provider::Cloudflare,
        PurgeTargets::default(),
        "Deployment web/shop has no purge target for provider cloudflare; expected at least one of the annotations cache-buster.io/urls, cache-buster.io/prefixes, cache-buster.io/hosts, cache-buster.io/tags, cache-buster.io/everything (\"true\")"
    )]
    #[case::fastly_nothing(
        Provider::Fastly,
        PurgeTargets::default(),
        "Deployment web/shop has no purge target for provider fastly"
    )]
    fn targets_a_provider_cannot_purge_are_rejected(
        #[case] provider: Provider,
        #[case] purge: PurgeTargets,
        #[case] message: &str,
    ) {
        let error = provider
            .check_targets(&purge, "web/shop", key)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with(message), "{error}");
    }

    #[test]
    fn webhook_needs_no_target() {
        assert_eq!(
            Provider::Webhook.check_targets(&PurgeTargets::default(), "web/shop", key),
            Ok(vec![])
        );
    }

    #[test]
    fn everything_with_other_targets_warns_they_are_redundant() {
        let purge = PurgeTargets {
            urls: urls(1),
            tags: vec!["t".into()],
            everything: true,
            ..Default::default()
        };
        let warnings = Provider::Cloudflare
            .check_targets(&purge, "web/shop", key)
            .unwrap();
        assert_eq!(
            warnings,
            [
                "cache-buster.io/everything is \"true\": the whole cache is purged, so cache-buster.io/urls, cache-buster.io/tags need no purge of their own"
            ]
        );
    }

    #[test]
    fn provider_names_round_trip() {
        for provider in Provider::ALL {
            assert_eq!(Provider::from_name(provider.name()), Some(provider));
            assert_eq!(serde_json::to_value(provider).unwrap(), provider.name());
        }
        assert_eq!(Provider::from_name("akamai"), None);
    }
}
