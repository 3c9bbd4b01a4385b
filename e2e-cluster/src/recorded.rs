//! One request as it reached a double (the CDN's, a token service's, a
//! self-hosted cache's): what every double records and the tests read.

use http_body_util::BodyExt as _;
use hyper::Request;
use hyper::body::Incoming;
use std::time::Instant;

/// One request as it reached the double.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub at: Instant,
    pub method: String,
    pub host: String,
    /// Path and query.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    /// The request as it arrived, its body read whole.
    pub async fn of(request: Request<Incoming>) -> Result<Recorded, hyper::Error> {
        let at = Instant::now();
        let method = request.method().as_str().to_owned();
        let host = request
            .headers()
            .get(hyper::header::HOST)
            .and_then(|host| host.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let path = request
            .uri()
            .path_and_query()
            .map(|path| path.as_str().to_owned())
            .unwrap_or_default();
        let headers = request
            .headers()
            .iter()
            .map(|(key, value)| {
                (
                    key.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = request.into_body().collect().await?.to_bytes();
        Ok(Recorded {
            at,
            method,
            host,
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// A form body's fields (`application/x-www-form-urlencoded`), decoded.
    pub fn form(&self) -> std::collections::BTreeMap<String, String> {
        form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }

    /// The request as one text, for assertions and for searching a secret.
    pub fn dump(&self) -> String {
        let headers: String = self
            .headers
            .iter()
            .map(|(key, value)| format!("{key}: {value}\n"))
            .collect();
        format!(
            "{} https://{}{}\n{headers}\n{}",
            self.method, self.host, self.path, self.body
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_body_is_read_decoded() {
        let request = Recorded {
            at: Instant::now(),
            method: "POST".into(),
            host: "login.microsoftonline.com".into(),
            path: "/t/oauth2/v2.0/token".into(),
            headers: Vec::new(),
            body: "scope=https%3A%2F%2Fmanagement.azure.com%2F.default&secret=a+b%7E%&flag".into(),
        };
        let form = request.form();
        assert_eq!(form["scope"], "https://management.azure.com/.default");
        assert_eq!(form["secret"], "a b~%");
        // A name without `=` is a field with an empty value (WHATWG).
        assert_eq!(form["flag"], "");
        assert_eq!(form.len(), 3);
    }
}
