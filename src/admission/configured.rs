//! The settings as an evaluation uses them, read once per settings text.
//!
//! A policy-server evaluates every request of a policy with one settings
//! value, for as long as it runs: the settings are parsed, and the names and
//! texts that follow from them alone (the stamped annotations' keys, how a
//! stamped Job of this release begins) are made, on the first request and
//! again only when the settings' text changes. The reconcile's no-op
//! (`unchanged`) then costs no formatting at all.

use super::skim::Raw;
use crate::deployment::stamp_keys;
use crate::error::PolicyError;
use crate::fingerprint::stamped_by;
use crate::keys::STAMPED_BY;
use crate::settings::{Settings, parse_settings};
use std::cell::RefCell;
use std::rc::Rc;

pub(super) struct Configured {
    pub settings: Settings,
    /// `P/image-hash`, `P/job-name`, `P/job`: the stamp's keys.
    pub stamp_keys: [String; 3],
    /// How the JSON text of a stamped Job made by this release with these
    /// settings begins, as it stands escaped in a request:
    /// `"{\"apiVersion\":\"batch/v1\",\"kind\":\"Job\",\"metadata\":{\"annotations\":{\"P/stamped-by\":\"…\"}`.
    pub stamped_job_start: String,
}

impl Configured {
    fn new(settings: Settings) -> Configured {
        Configured {
            stamp_keys: stamp_keys(&settings),
            stamped_job_start: stamped_job_start(&settings),
            settings,
        }
    }

    /// Whether `key` is one of the policy's own annotations (`P/…`).
    pub fn is_own_annotation(&self, key: &str) -> bool {
        key.strip_prefix(self.settings.annotation_prefix.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// The request's settings (`None`: the defaults), parsed or remembered.
pub(super) fn configured(raw: Option<Raw<'_>>) -> Result<Rc<Configured>, PolicyError> {
    thread_local! {
        static LAST: RefCell<Option<(String, Rc<Configured>)>> = const { RefCell::new(None) };
    }
    // No settings and `{}` are both the defaults, and are remembered alike.
    let text = raw.map_or("{}", Raw::get);
    LAST.with_borrow_mut(|last| {
        if let Some((known, configured)) = last.as_ref()
            && known == text
        {
            return Ok(Rc::clone(configured));
        }
        let settings = parse_settings(text.as_bytes()).map_err(PolicyError::UnreadableSettings)?;
        let configured = Rc::new(Configured::new(settings));
        *last = Some((text.to_owned(), Rc::clone(&configured)));
        Ok(configured)
    })
}

fn stamped_job_start(settings: &Settings) -> String {
    let member = serde_json::to_string(&settings.annotation(STAMPED_BY)).unwrap_or_default();
    let value = serde_json::to_string(&stamped_by(settings)).unwrap_or_default();
    let start = format!(
        r#"{{"apiVersion":"batch/v1","kind":"Job","metadata":{{"annotations":{{{member}:{value}}}"#
    );
    let mut escaped = serde_json::to_string(&start).unwrap_or_default();
    escaped.pop(); // the closing quote: the Job goes on
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Raw<'_> {
        Raw::from_serde(serde_json::from_str(text).unwrap())
    }

    #[test]
    fn the_same_text_is_parsed_once() {
        let settings = raw(r#"{"provider": "fastly"}"#);
        let first = configured(Some(settings)).unwrap();
        let again = configured(Some(raw(r#"{"provider": "fastly"}"#))).unwrap();
        assert!(Rc::ptr_eq(&first, &again));
        assert_eq!(first.settings.provider, crate::providers::Provider::Fastly);
    }

    #[test]
    fn other_settings_are_parsed_again() {
        let fastly = configured(Some(raw(r#"{"provider": "fastly"}"#))).unwrap();
        let prefixed =
            configured(Some(raw(r#"{"annotationPrefix": "purge.example.com"}"#))).unwrap();
        assert!(!Rc::ptr_eq(&fastly, &prefixed));
        assert_eq!(
            prefixed.stamp_keys,
            [
                "purge.example.com/image-hash",
                "purge.example.com/job-name",
                "purge.example.com/job"
            ]
        );
        assert!(prefixed.is_own_annotation("purge.example.com/urls"));
        assert!(!prefixed.is_own_annotation("purge.example.com.evil/urls"));
        assert!(!prefixed.is_own_annotation("cache-buster.io/urls"));
    }

    #[test]
    fn no_settings_are_the_defaults() {
        let none = configured(None).unwrap();
        assert_eq!(none.settings, Settings::default());
        assert!(Rc::ptr_eq(&none, &configured(Some(raw("{}"))).unwrap()));
    }

    #[test]
    fn bad_settings_are_refused_every_time() {
        for _ in 0..2 {
            let error = configured(Some(raw(r#"{"provider": "nope"}"#)))
                .err()
                .unwrap();
            assert!(
                matches!(error, PolicyError::UnreadableSettings(_)),
                "{error}"
            );
        }
    }

    #[test]
    fn a_stamped_job_begins_with_its_fingerprint_escaped() {
        let defaults = configured(None).unwrap();
        let expected = format!(
            r#""{{\"apiVersion\":\"batch/v1\",\"kind\":\"Job\",\"metadata\":{{\"annotations\":{{\"cache-buster.io/stamped-by\":\"{}\"}}"#,
            stamped_by(&Settings::default())
        );
        assert_eq!(defaults.stamped_job_start, expected);
    }
}
