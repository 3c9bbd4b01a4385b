//! RS256 JWTs as the doubles meet them: Google's token endpoint verifies a
//! service account's assertion, Entra ID a cluster's federated token. One
//! RSA key made for the tests plays both the service account's and the
//! cluster issuer's; the doubles verify with it, the tests sign with it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};

/// A 2048-bit RSA key made for the tests only.
pub const TEST_KEY_PEM: &str = include_str!("../../purge/tests/data/gcp-test-key.pem");

fn key_pair() -> Option<ring::signature::RsaKeyPair> {
    use rustls::pki_types::PrivatePkcs8KeyDer;
    use rustls::pki_types::pem::PemObject as _;
    let der = PrivatePkcs8KeyDer::from_pem_slice(TEST_KEY_PEM.as_bytes()).ok()?;
    ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).ok()
}

/// `text` signed RS256 with the test key, base64url (empty if it cannot be).
pub fn sign(text: &str) -> String {
    let Some(pair) = key_pair() else {
        return String::new();
    };
    let mut signature = vec![0; pair.public().modulus_len()];
    let signed = pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        text.as_bytes(),
        &mut signature,
    );
    match signed {
        Ok(()) => URL_SAFE_NO_PAD.encode(signature),
        Err(_) => String::new(),
    }
}

/// Whether `signature` (base64url) is the test key's RS256 over `signed`.
pub fn verify(signed: &str, signature: &str) -> bool {
    use ring::signature::KeyPair as _;
    let (Some(pair), Ok(signature)) = (key_pair(), URL_SAFE_NO_PAD.decode(signature)) else {
        return false;
    };
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        pair.public_key().as_ref(),
    )
    .verify(signed.as_bytes(), &signature)
    .is_ok()
}

/// A JWT's header and claims when its signature is the test key's; None
/// for a malformed or forged one.
pub fn verified(jwt: &str) -> Option<(Value, Value)> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return None;
    };
    if !verify(&format!("{header}.{claims}"), signature) {
        return None;
    }
    let decode = |part: &str| -> Value {
        URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(Value::Null)
    };
    Some((decode(header), decode(claims)))
}

/// A JWT of `header` and `claims`, signed with the test key.
pub fn signed(header: &Value, claims: &Value) -> String {
    let text = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    format!("{text}.{}", sign(&text))
}

/// Seconds since the epoch, as JWT claims count them.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_signature_covers_header_and_claims() {
        let signature = sign("header.claims");
        assert!(verify("header.claims", &signature));
        assert!(!verify("header.claimz", &signature));
        assert!(!verify("header.claims", "AAAA"));
        let jwt = signed(&json!({"alg": "RS256"}), &json!({"sub": "a"}));
        assert_eq!(
            verified(&jwt),
            Some((json!({"alg": "RS256"}), json!({"sub": "a"})))
        );
        let (head, _) = jwt.rsplit_once('.').unwrap();
        assert_eq!(verified(&format!("{head}.AAAA")), None);
        assert_eq!(verified("not-a-jwt"), None);
    }
}
