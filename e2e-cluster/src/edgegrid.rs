//! The CDN double's check of an Akamai EdgeGrid signature, written from
//! Akamai's description of `EG1-HMAC-SHA256` (and its edgegrid-python
//! client) rather than from the purge program's signer, so that a shared
//! mistake cannot pass.

use crate::recorded::Recorded;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Whether `request` carries an EdgeGrid signature made with these
/// credentials; if not, the reason, in the words of Akamai's gateway.
pub fn verify(
    request: &Recorded,
    client_token: &str,
    client_secret: &str,
    access_token: &str,
) -> Result<(), &'static str> {
    let header = request
        .header("authorization")
        .ok_or("Authorization header is missing")?;
    let fields = header
        .strip_prefix("EG1-HMAC-SHA256 ")
        .ok_or("Invalid authorization header")?;
    let field = |name: &str| {
        fields.split(';').find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key == name).then_some(value)
        })
    };
    if field("client_token") != Some(client_token) {
        return Err("Invalid client token");
    }
    if field("access_token") != Some(access_token) {
        return Err("Invalid access token");
    }
    let (Some(timestamp), Some(nonce), Some(signature)) =
        (field("timestamp"), field("nonce"), field("signature"))
    else {
        return Err("Invalid authorization header");
    };
    // yyyyMMddTHH:mm:ss+0000, as Akamai reads it.
    if timestamp.len() != 22 || !timestamp.ends_with("+0000") || timestamp.as_bytes()[8] != b'T' {
        return Err("Invalid timestamp");
    }
    let unsigned = format!(
        "EG1-HMAC-SHA256 client_token={client_token};access_token={access_token};timestamp={timestamp};nonce={nonce};"
    );
    let body_hash = if request.method == "POST" && !request.body.is_empty() {
        let body = request.body.as_bytes();
        STANDARD.encode(Sha256::digest(&body[..body.len().min(131_072)]))
    } else {
        String::new()
    };
    let signed = format!(
        "{}\thttps\t{}\t{}\t\t{body_hash}\t{unsigned}",
        request.method,
        request.host.to_ascii_lowercase(),
        request.path
    );
    let key = base64_hmac(client_secret.as_bytes(), timestamp.as_bytes());
    if base64_hmac(key.as_bytes(), signed.as_bytes()) == signature {
        Ok(())
    } else {
        Err("The signature does not match")
    }
}

fn base64_hmac(key: &[u8], message: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(message);
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(authorization: &str, body: &str) -> Recorded {
        Recorded {
            at: std::time::Instant::now(),
            method: "POST".into(),
            host: "akab-test.luna.akamaiapis.net".into(),
            path: "/ccu/v3/invalidate/url/production".into(),
            headers: vec![("authorization".into(), authorization.into())],
            body: body.into(),
        }
    }

    /// The vector computed with Python's hmac and hashlib, as
    /// edgegrid-python signs.
    const SIGNED: &str = "EG1-HMAC-SHA256 client_token=akab-client-token;access_token=akab-access-token;\
        timestamp=20260101T00:00:00+0000;nonce=nonce-xyz;signature=1gRR3TorSzuCBbOpIAQgxlZq0deuiKVgLbiWpS0wgGw=";
    const BODY: &str = r#"{"objects":["https://www.example.com/"]}"#;

    fn verified(authorization: &str, body: &str, secret: &str) -> Result<(), &'static str> {
        verify(
            &request(authorization, body),
            "akab-client-token",
            secret,
            "akab-access-token",
        )
    }

    #[test]
    fn a_signature_made_with_the_secret_passes() {
        assert_eq!(verified(SIGNED, BODY, "test-client-secret"), Ok(()));
    }

    #[test]
    fn anything_else_is_refused() {
        assert_eq!(
            verified(SIGNED, BODY, "another-secret"),
            Err("The signature does not match")
        );
        assert_eq!(
            verified(
                SIGNED,
                r#"{"objects":["https://www.example.com/x"]}"#,
                "test-client-secret"
            ),
            Err("The signature does not match")
        );
        assert_eq!(
            verified(
                &SIGNED.replace("akab-access-token", "other"),
                BODY,
                "test-client-secret"
            ),
            Err("Invalid access token")
        );
        assert_eq!(
            verified("Bearer x", BODY, "test-client-secret"),
            Err("Invalid authorization header")
        );
    }
}
