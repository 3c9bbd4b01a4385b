//! One HTTP request of a purge, as a provider plans it before anything is
//! sent: method, URL, headers, body, what it purges, its pace and signer.

use crate::edgegrid::EdgeGrid;
use crate::sigv4::SigV4;
use std::borrow::Cow;
use std::time::Duration;

/// One HTTP request of the purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<Header>,
    /// A JSON body.
    pub body: Option<String>,
    /// What it purges, for the outcome ("30 URLs").
    pub purges: Purges,
    /// Sent at least this long after the request before it: a CDN's
    /// documented rate (Bunny's), kept rather than met with 429s.
    pub gap: Duration,
    /// Signed anew on each try (Akamai's EdgeGrid, AWS's SigV4).
    pub signed_by: Option<Signer>,
    /// An answer 400 with this error code is waited out and retried, as a
    /// 429 is (CloudFront's TooManyInvalidationsInProgress).
    pub waits_out: Option<&'static str>,
    /// The answer's header that names the accepted purge, when its body
    /// does not (Azure's `Azure-AsyncOperation`, the URL to poll).
    pub id_header: Option<&'static str>,
}

impl PlannedRequest {
    /// A request that fetches what a purge needs (credentials, a token): a
    /// GET, or a POST of `body`; unpaced, unsigned.
    pub fn fetching(
        url: String,
        headers: Vec<Header>,
        body: Option<String>,
        what: &'static str,
    ) -> PlannedRequest {
        PlannedRequest {
            method: if body.is_some() { "POST" } else { "GET" },
            url,
            headers,
            body,
            purges: Purges::whole(what),
            gap: Duration::ZERO,
            signed_by: None,
            waits_out: None,
            id_header: None,
        }
    }

    /// `METHOD URL (Header: value, …) BODY`: what a dry run reports. Only
    /// for a request planned with placeholder credentials, as it quotes
    /// every header.
    pub fn describe(&self) -> String {
        let mut text = format!("{} {}", self.method, self.url);
        let headers: Vec<String> = self
            .headers
            .iter()
            .filter(|(name, _)| *name != "Content-Type")
            .map(|(name, value)| format!("{name}: {value}"))
            .collect();
        if !headers.is_empty() {
            text.push_str(&format!(" ({})", headers.join(", ")));
        }
        if let Some(body) = &self.body {
            text.push(' ');
            text.push_str(body);
        }
        text
    }
}

/// A count of one kind of target ("30 URLs"), or a whole ("everything").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purges {
    pub count: usize,
    pub one: &'static str,
    pub many: &'static str,
}

impl Purges {
    pub const fn whole(what: &'static str) -> Purges {
        Purges {
            count: 1,
            one: what,
            many: what,
        }
    }
}

impl std::fmt::Display for Purges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.count {
            _ if self.one == self.many => f.write_str(self.one),
            1 => write!(f, "1 {}", self.one),
            count => write!(f, "{count} {}", self.many),
        }
    }
}

/// A header's name (most are fixed, a self-hosted cache's tag header is a
/// setting) and value.
pub type Header = (Cow<'static, str>, String);

pub fn header(name: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Header {
    (name.into(), value.into())
}

/// `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> Header {
    header("Authorization", format!("Bearer {token}"))
}

pub fn counted(count: usize, one: &'static str, many: &'static str) -> Purges {
    Purges { count, one, many }
}

pub fn json_request(
    url: String,
    headers: Vec<Header>,
    body: serde_json::Value,
    purges: Purges,
) -> PlannedRequest {
    let mut headers = headers;
    headers.push(header("Content-Type", "application/json"));
    PlannedRequest {
        method: "POST",
        url,
        headers,
        body: Some(body.to_string()),
        purges,
        gap: Duration::ZERO,
        signed_by: None,
        waits_out: None,
        id_header: None,
    }
}

/// How a request is signed, anew for each try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    EdgeGrid(EdgeGrid),
    SigV4(SigV4),
}

pub fn without_scheme(url: &str) -> &str {
    url.split_once("://").map_or(url, |(_, rest)| rest)
}

/// A credential placed in a URL path: percent-encoded, so a stray `/` or
/// `?` cannot change which API is called.
pub fn path_segment(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
