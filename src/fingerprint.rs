//! Which policy release and which settings made a stamp: the value of the
//! Job's `P/stamped-by` annotation, `cache-buster <version>, settings <hash>`.
//!
//! The stamp is a pure function of the Deployment's inputs, the settings and
//! the code; the fingerprint names the last two, so that an UPDATE whose
//! inputs and stamp are those of `oldObject` can be answered without
//! deriving the Job again (`admission::unchanged`), while a new release or a
//! settings change still re-stamps on the next request.

use crate::settings::Settings;
use sha2::{Digest, Sha256};
use std::cell::RefCell;

/// Hex characters of the settings' hash: as many as the image hash's.
const SETTINGS_HASH_LENGTH: usize = 10;

/// The fingerprint of this release with `settings`. The settings are hashed
/// as the policy understands them (defaults filled in, serialised in one
/// order), so an explicit default or another key order is no change.
pub fn stamped_by(settings: &Settings) -> String {
    // The policy-server evaluates with one settings value for a long time:
    // the last fingerprint is kept, and a comparison is cheaper than a hash.
    thread_local! {
        static LAST: RefCell<Option<(Settings, String)>> = const { RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((known, fingerprint)) if known == settings => fingerprint.clone(),
        _ => {
            let fingerprint = fingerprint_of(env!("CARGO_PKG_VERSION"), settings);
            *last = Some((settings.clone(), fingerprint.clone()));
            fingerprint
        }
    })
}

/// The fingerprint of `release` with `settings`.
pub fn fingerprint_of(release: &str, settings: &Settings) -> String {
    // Serialising plain structs, strings and BTreeMaps cannot fail; were it
    // to, every settings value would share one fingerprint of no bytes,
    // which costs a re-derivation, never a wrong answer.
    let canonical = serde_json::to_vec(settings).unwrap_or_default();
    let digest = Sha256::digest(&canonical);
    let mut hash = String::with_capacity(SETTINGS_HASH_LENGTH);
    for byte in digest.iter().take(SETTINGS_HASH_LENGTH / 2) {
        hash.push_str(&format!("{byte:02x}"));
    }
    format!("cache-buster {release}, settings {hash}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::parse_settings;

    #[test]
    fn names_the_release_and_the_settings() {
        let fingerprint = stamped_by(&Settings::default());
        let expected_start = format!("cache-buster {}, settings ", env!("CARGO_PKG_VERSION"));
        let hash = fingerprint.strip_prefix(&expected_start).unwrap();
        assert_eq!(hash.len(), SETTINGS_HASH_LENGTH);
        assert!(
            hash.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }

    #[test]
    fn a_settings_change_or_a_new_release_is_another_fingerprint() {
        let defaults = Settings::default();
        let other = Settings {
            backoff_limit: defaults.backoff_limit + 1,
            ..Settings::default()
        };
        assert_ne!(stamped_by(&defaults), stamped_by(&other));
        assert_ne!(
            fingerprint_of("0.1.0", &defaults),
            fingerprint_of("0.2.0", &defaults)
        );
        // The memo follows the settings it is asked about.
        assert_eq!(
            stamped_by(&defaults),
            fingerprint_of(env!("CARGO_PKG_VERSION"), &defaults)
        );
    }

    #[test]
    fn the_same_settings_written_otherwise_are_one_fingerprint() {
        let explicit =
            parse_settings(br#"{"backoffLimit": 3, "annotationPrefix": "cache-buster.io"}"#)
                .unwrap();
        let reordered =
            parse_settings(br#"{"annotationPrefix": "cache-buster.io", "backoffLimit": 3}"#)
                .unwrap();
        assert_eq!(stamped_by(&explicit), stamped_by(&Settings::default()));
        assert_eq!(stamped_by(&reordered), stamped_by(&Settings::default()));
    }
}
