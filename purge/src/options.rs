//! The providers' options and the names they are given in (SPEC §5, §6):
//! shared by the policy, which checks them at admission and writes them
//! into the Job's argv, and the program, which reads them from it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where the Job mounts the credentials Secret in the purge container.
pub const CREDENTIALS_DIR: &str = "/var/run/secrets/cache-buster";

/// How long the purge may take with all its retries (`--budget-seconds`,
/// the program's default too); the policy's deadline check counts on it.
pub const PURGE_BUDGET_SECONDS: i64 = 180;

/// The budget of a purge through these layers: [`PURGE_BUDGET_SECONDS`],
/// and as long again as the slowest of them may take to finish a purge it
/// accepted (SPEC §6: `activeDeadlineSeconds` must leave room for it).
pub fn purge_budget_seconds(layers: &[crate::Provider]) -> i64 {
    let completion = layers
        .iter()
        .map(|provider| provider.info().completion_seconds)
        .max()
        .unwrap_or(0);
    PURGE_BUDGET_SECONDS.saturating_add(completion)
}

/// The shortest `activeDeadlineSeconds` that leaves the Job time for all it
/// may have to do: wait for its stamp and the rollout as long as the
/// rollout timeout, then purge through all its retries and wait until the
/// slowest layer's CDN has finished.
pub fn shortest_deadline_seconds(
    rollout_timeout_seconds: i64,
    providers: &[crate::Provider],
) -> i64 {
    rollout_timeout_seconds.saturating_add(purge_budget_seconds(providers))
}

/// Fast Purge's action: invalidate (serve stale while revalidating) or
/// delete (setting `akamaiAction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AkamaiAction {
    #[default]
    Invalidate,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AkamaiNetwork {
    #[default]
    Production,
    Staging,
}

impl AkamaiAction {
    pub fn name(self) -> &'static str {
        match self {
            AkamaiAction::Invalidate => "invalidate",
            AkamaiAction::Delete => "delete",
        }
    }
}

impl AkamaiNetwork {
    pub fn name(self) -> &'static str {
        match self {
            AkamaiNetwork::Production => "production",
            AkamaiNetwork::Staging => "staging",
        }
    }
}

/// What the webhook receives, in the field order of SPEC §5.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload<'a, Url = crate::targets::TargetUrl> {
    pub site: &'a str,
    pub namespace: &'a str,
    pub deployment: &'a str,
    /// The canonical image; with several counted containers, their
    /// `name=image` lines joined by ", ".
    pub image: String,
    pub image_hash: &'a str,
    pub job_name: &'a str,
    pub urls: &'a [Url],
    pub prefixes: &'a [String],
    pub hosts: &'a [String],
    pub tags: &'a [String],
    pub everything: bool,
}

/// The Service whose ready endpoints each get the purge, in the site's
/// namespace, and which of its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpService {
    pub name: String,
    /// The Service's port, by number or name; none: its only port.
    pub port: Option<ServicePort>,
}

/// A port of a Service as `P/http-service` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServicePort {
    Number(u16),
    Name(String),
}

/// What is expected of `P/http-service`, for every message about it.
pub const EXPECTED_SERVICE: &str = "<service>[:<port>], a Service in the Deployment's namespace (a DNS-1035 label) and optionally one of its ports by number (1-65535) or name, such as varnish or varnish:http";

impl HttpService {
    /// Reads `<service>[:<port>]`; the problem, when there is one, is said
    /// of the value (it follows the value in the message).
    pub fn parse(value: &str) -> Result<HttpService, String> {
        let value = value.trim();
        let (name, port) = match value.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (value, None),
        };
        if !is_dns1035_label(name) {
            return Err(format!(
                "names no Service: {name:?} is not a DNS-1035 label"
            ));
        }
        let port = match port {
            None => None,
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                match digits.parse::<u16>() {
                    Ok(number) if number > 0 => Some(ServicePort::Number(number)),
                    _ => return Err(format!("has port {digits}, out of range 1-65535")),
                }
            }
            Some(name) if is_port_name(name) => Some(ServicePort::Name(name.to_owned())),
            Some(name) => {
                return Err(format!(
                    "has port {name:?}, neither a number nor a port name (at most 15 of a-z, 0-9 and -, with a letter)"
                ));
            }
        };
        Ok(HttpService {
            name: name.to_owned(),
            port,
        })
    }
}

impl fmt::Display for HttpService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        match &self.port {
            Some(ServicePort::Number(number)) => write!(f, ":{number}"),
            Some(ServicePort::Name(name)) => write!(f, ":{name}"),
            None => Ok(()),
        }
    }
}

/// The request each cache gets (setting `httpMethod`): Varnish's VCL
/// examples and ngx_cache_purge use `PURGE`, some VCLs `BAN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Purge,
    Ban,
}

impl HttpMethod {
    pub fn name(self) -> &'static str {
        match self {
            HttpMethod::Purge => "PURGE",
            HttpMethod::Ban => "BAN",
        }
    }

    pub fn from_name(name: &str) -> Option<HttpMethod> {
        [HttpMethod::Purge, HttpMethod::Ban]
            .into_iter()
            .find(|method| method.name() == name)
    }
}

/// The header that carries the tags (setting `httpTagHeader`): `xkey` for
/// Varnish's xkey vmod, `Surrogate-Key` for Souin.
pub const DEFAULT_TAG_HEADER: &str = "xkey";

/// RFC 9110 `token`: what an HTTP header name is made of.
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A Service name: at most 63 of `[a-z0-9-]`, starting with a letter and
/// ending alphanumeric.
fn is_dns1035_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// IANA_SVC_NAME, as apimachinery checks a port's name.
fn is_port_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::name_only("varnish", "varnish", None)]
    #[case::port_number("varnish:6081", "varnish", Some(ServicePort::Number(6081)))]
    #[case::port_name("varnish:http", "varnish", Some(ServicePort::Name("http".into())))]
    #[case::spaces_around(" souin:http-cache ", "souin", Some(ServicePort::Name("http-cache".into())))]
    fn services_are_read(
        #[case] value: &str,
        #[case] name: &str,
        #[case] port: Option<ServicePort>,
    ) {
        let service = HttpService::parse(value).unwrap();
        assert_eq!(
            service,
            HttpService {
                name: name.into(),
                port
            }
        );
        assert_eq!(service.to_string(), value.trim());
    }

    #[rstest]
    #[case::empty("", "names no Service: \"\" is not a DNS-1035 label")]
    #[case::capitals("Varnish", "names no Service: \"Varnish\" is not a DNS-1035 label")]
    #[case::starts_with_digit("1cache", "names no Service: \"1cache\" is not a DNS-1035 label")]
    #[case::namespaced(
        "varnish.web",
        "names no Service: \"varnish.web\" is not a DNS-1035 label"
    )]
    #[case::port_zero("varnish:0", "has port 0, out of range 1-65535")]
    #[case::port_too_big("varnish:65536", "has port 65536, out of range 1-65535")]
    #[case::port_empty(
        "varnish:",
        "has port \"\", neither a number nor a port name (at most 15 of a-z, 0-9 and -, with a letter)"
    )]
    #[case::port_name_too_long(
        "varnish:a-very-long-port-name",
        "has port \"a-very-long-port-name\", neither a number nor a port name (at most 15 of a-z, 0-9 and -, with a letter)"
    )]
    #[case::two_colons(
        "varnish:http:80",
        "has port \"http:80\", neither a number nor a port name (at most 15 of a-z, 0-9 and -, with a letter)"
    )]
    fn bad_services_say_why(#[case] value: &str, #[case] problem: &str) {
        assert_eq!(HttpService::parse(value).unwrap_err(), problem);
    }

    #[test]
    fn header_names_are_tokens() {
        for good in ["xkey", "Surrogate-Key", "X-Cache-Tags", "Cache_Tag"] {
            assert!(is_header_name(good), "{good}");
        }
        for bad in ["", "x key", "xkey:", "tag\u{e9}"] {
            assert!(!is_header_name(bad), "{bad}");
        }
    }

    #[test]
    fn methods_are_named_as_sent() {
        for method in [HttpMethod::Purge, HttpMethod::Ban] {
            assert_eq!(HttpMethod::from_name(method.name()), Some(method));
            assert_eq!(serde_json::to_value(method).unwrap(), method.name());
        }
        assert_eq!(HttpMethod::from_name("purge"), None);
    }
}
