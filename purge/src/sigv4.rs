//! AWS Signature Version 4, made anew for each try of a request (its
//! `X-Amz-Date` is part of it), as CloudFront's API requires: signed
//! headers `host`, `x-amz-date` and, with temporary credentials,
//! `x-amz-security-token`. Checked against AWS's published test suite.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Credentials and scope a request is signed with.
#[derive(Clone, PartialEq, Eq)]
pub struct SigV4 {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Temporary credentials (STS, Pod Identity) come with one.
    pub session_token: Option<String>,
    pub region: String,
    pub service: &'static str,
}

impl std::fmt::Debug for SigV4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigV4 {{ {}/{} .. }}", self.region, self.service)
    }
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    // HMAC takes a key of any length: this never fails.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// RFC 3986 encoding of everything but the unreserved characters, as SigV4
/// canonicalises query names and values.
fn uri_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

impl SigV4 {
    /// The headers to add to a request to `https://host/path?query` with
    /// this body at `amz_date` (`20150830T123600Z`): `X-Amz-Date`, the
    /// session token if any, and `Authorization`.
    pub fn headers(
        &self,
        method: &str,
        host: &str,
        path: &str,
        query: &str,
        body: &[u8],
        amz_date: &str,
    ) -> Vec<(&'static str, String)> {
        let mut signed: Vec<(&'static str, String)> = vec![
            ("host", host.to_ascii_lowercase()),
            ("x-amz-date", amz_date.to_owned()),
        ];
        if let Some(token) = &self.session_token {
            signed.push(("x-amz-security-token", token.clone()));
        }
        let mut pairs: Vec<(String, String)> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (uri_encode(name), uri_encode(value))
            })
            .collect();
        pairs.sort();
        let canonical_query: Vec<String> = pairs
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        let canonical_headers: String = signed
            .iter()
            .map(|(name, value)| format!("{name}:{}\n", value.trim()))
            .collect();
        let signed_names: Vec<&str> = signed.iter().map(|(name, _)| *name).collect();
        let signed_names = signed_names.join(";");
        let canonical_request = format!(
            "{method}\n{path}\n{}\n{canonical_headers}\n{signed_names}\n{}",
            canonical_query.join("&"),
            hex(&Sha256::digest(body))
        );
        let date = amz_date.get(..8).unwrap_or_default();
        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical_request.as_bytes()))
        );
        let key = [self.region.as_str(), self.service, "aws4_request"]
            .iter()
            .fold(
                hmac(format!("AWS4{}", self.secret_access_key).as_bytes(), date),
                |key, part| hmac(&key, part),
            );
        let signature = hex(&hmac(&key, &string_to_sign));
        let mut headers: Vec<(&'static str, String)> = signed.into_iter().skip(1).collect();
        headers.push((
            "Authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_names}, Signature={signature}",
                self.access_key_id
            ),
        ));
        headers
    }
}

/// SigV4's timestamp of now: `yyyyMMddTHHmmssZ`.
pub fn amz_date_now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The credentials and scope of AWS's SigV4 test suite.
    fn suite() -> SigV4 {
        SigV4 {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
            region: "us-east-1".to_owned(),
            service: "service",
        }
    }

    fn authorization(signer: &SigV4, method: &str, query: &str) -> String {
        signer
            .headers(
                method,
                "example.amazonaws.com",
                "/",
                query,
                b"",
                "20150830T123600Z",
            )
            .into_iter()
            .find(|(name, _)| *name == "Authorization")
            .map(|(_, value)| value)
            .unwrap()
    }

    /// get-vanilla, post-vanilla and post-vanilla-query of the suite.
    #[test]
    fn the_signatures_are_those_of_aws_test_suite() {
        let scope = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                     SignedHeaders=host;x-amz-date, Signature=";
        for (method, query, signature) in [
            (
                "GET",
                "",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
            (
                "POST",
                "",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
            ),
            (
                "POST",
                "Param1=value1",
                "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
            ),
        ] {
            assert_eq!(
                authorization(&suite(), method, query),
                format!("{scope}{signature}"),
                "{method} ?{query}"
            );
        }
    }

    #[test]
    fn temporary_credentials_sign_their_token() {
        let signer = SigV4 {
            session_token: Some("FwoGZXIvYXdzEXAMPLE".into()),
            ..suite()
        };
        let headers = signer.headers(
            "POST",
            "example.amazonaws.com",
            "/",
            "",
            b"",
            "20150830T123600Z",
        );
        assert_eq!(headers[0], ("x-amz-date", "20150830T123600Z".to_owned()));
        assert_eq!(
            headers[1],
            ("x-amz-security-token", "FwoGZXIvYXdzEXAMPLE".to_owned())
        );
        assert!(
            headers[2]
                .1
                .contains("SignedHeaders=host;x-amz-date;x-amz-security-token, ")
        );
        assert_ne!(headers[2].1, authorization(&suite(), "POST", ""));
        assert!(!format!("{signer:?}").contains("EXAMPLEKEY"));
    }

    #[test]
    fn the_date_has_sigv4s_form() {
        let now = amz_date_now();
        assert_eq!(now.len(), "20150830T123600Z".len(), "{now}");
        assert!(now.ends_with('Z') && now.as_bytes()[8] == b'T', "{now}");
    }
}
