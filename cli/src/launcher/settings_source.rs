//! Where the launcher's settings come from. By default from where Kubewarden
//! keeps the policy's: the ClusterAdmissionPolicy's `spec.settings`,
//! watched, so that the policy and the launcher have one source and a change
//! applies without a restart. A file (`--settings`) stands in for setups
//! without a ClusterAdmissionPolicy.

use cache_buster::settings::{Settings, parse_and_validate};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher;
use serde_json::Value;
use std::sync::Arc;

pub const POLICY_GROUP: &str = "policies.kubewarden.io";
pub const POLICY_VERSION: &str = "v1";
pub const POLICY_KIND: &str = "ClusterAdmissionPolicy";
pub const POLICY_PLURAL: &str = "clusteradmissionpolicies";

/// The API resource of Kubewarden's ClusterAdmissionPolicy.
pub fn policy_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(POLICY_GROUP, POLICY_VERSION, POLICY_KIND),
        POLICY_PLURAL,
    )
}

/// The settings a stamp may have been made with. After a change the
/// policy-server needs a moment to reload (Kubewarden's controller restarts
/// it), and rollouts admitted meanwhile carry stamps of the settings before:
/// those were made by the policy too, so they are accepted as well.
#[derive(Clone, Debug, PartialEq)]
pub struct Accepted {
    pub current: Arc<Settings>,
    pub previous: Option<Arc<Settings>>,
}

impl Accepted {
    pub fn new(settings: Settings) -> Self {
        Accepted {
            current: Arc::new(settings),
            previous: None,
        }
    }

    /// After the settings became `next`; `None` when they did not change.
    pub fn after(&self, next: Settings) -> Option<Accepted> {
        (*self.current != next).then(|| Accepted {
            current: Arc::new(next),
            previous: Some(Arc::clone(&self.current)),
        })
    }

    /// Newest first.
    pub fn candidates(&self) -> Vec<&Settings> {
        std::iter::once(self.current.as_ref())
            .chain(self.previous.as_deref())
            .collect()
    }
}

/// What the launcher can derive with.
#[derive(Clone, Debug, PartialEq)]
pub enum SettingsState {
    /// Nothing read yet.
    Waiting,
    /// The first settings read are invalid: the launcher does not start.
    Invalid(String),
    Ready(Accepted),
}

/// The settings of a ClusterAdmissionPolicy, checked as the policy's
/// `validate_settings` checks them.
pub fn settings_of(policy: &DynamicObject) -> Result<Settings, String> {
    let name = policy.metadata.name.as_deref().unwrap_or_default();
    let settings = policy
        .data
        .get("spec")
        .and_then(|spec| spec.get("settings"))
        .cloned()
        .unwrap_or(Value::Null);
    parse_and_validate(settings.to_string().as_bytes())
        .map_err(|problems| format!("invalid settings in {POLICY_KIND} {name}: {problems}"))
}

/// What one event of the policy's watch changes.
#[derive(Debug, PartialEq)]
pub struct Step {
    /// The new state, if it changed.
    pub next: Option<SettingsState>,
    /// Whether what the watch shows can be used, if that is known now.
    pub usable: Option<Result<(), String>>,
}

/// Folds the events of a watch of one ClusterAdmissionPolicy (by name).
#[derive(Default)]
pub struct Follower {
    /// Whether the (re)list in progress has shown the object.
    listed: bool,
}

impl Follower {
    pub fn step(&mut self, state: &SettingsState, event: &watcher::Event<DynamicObject>) -> Step {
        let ready = matches!(state, SettingsState::Ready(_));
        let keeping = if ready {
            "the launcher keeps deriving with the last valid settings"
        } else {
            "the launcher creates no Job until it exists"
        };
        match event {
            watcher::Event::Init => {
                self.listed = false;
                Step {
                    next: None,
                    usable: None,
                }
            }
            watcher::Event::InitApply(policy) | watcher::Event::Apply(policy) => {
                self.listed = true;
                match (settings_of(policy), state) {
                    (Ok(settings), SettingsState::Ready(accepted)) => Step {
                        next: accepted.after(settings).map(SettingsState::Ready),
                        usable: Some(Ok(())),
                    },
                    (Ok(settings), _) => Step {
                        next: Some(SettingsState::Ready(Accepted::new(settings))),
                        usable: Some(Ok(())),
                    },
                    (Err(problem), SettingsState::Ready(_)) => Step {
                        next: None,
                        usable: Some(Err(format!("{problem}; {keeping}"))),
                    },
                    (Err(problem), _) => Step {
                        next: Some(SettingsState::Invalid(problem.clone())),
                        usable: Some(Err(problem)),
                    },
                }
            }
            watcher::Event::InitDone => Step {
                next: None,
                usable: (!self.listed).then(|| Err(format!("not found; {keeping}"))),
            },
            watcher::Event::Delete(_) => Step {
                next: None,
                usable: Some(Err(format!("deleted; {keeping}"))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(settings: Value) -> DynamicObject {
        let mut policy = DynamicObject::new("cache-buster", &policy_resource());
        policy.data = json!({"spec": {"module": "registry://example/cache-buster:v0.1.0", "settings": settings}});
        policy
    }

    fn ready(follower: &mut Follower, settings: Value) -> SettingsState {
        let step = follower.step(
            &SettingsState::Waiting,
            &watcher::Event::InitApply(policy(settings)),
        );
        step.next
            .expect("a first valid policy makes the launcher ready")
    }

    #[test]
    fn the_policys_settings_are_read_as_the_policy_reads_them() {
        let settings = settings_of(&policy(json!({"backoffLimit": 5}))).unwrap();
        assert_eq!(settings.backoff_limit, 5);
        // A policy without settings runs with the defaults, as the policy does.
        let mut bare = policy(Value::Null);
        bare.data = json!({"spec": {"module": "registry://example/cache-buster:v0.1.0"}});
        assert_eq!(settings_of(&bare).unwrap(), Settings::default());
    }

    #[test]
    fn invalid_settings_are_named_with_the_policy_and_every_problem() {
        let problem = settings_of(&policy(
            json!({"backoffLimit": -1, "provider": "Cloudflare"}),
        ))
        .unwrap_err();
        assert_eq!(
            problem,
            "invalid settings in ClusterAdmissionPolicy cache-buster: settings.provider: unknown provider \"Cloudflare\", expected one of cloudflare, fastly, webhook, bunny, akamai, http, cloudfront, gcp, azure (provider names are lowercase: did you mean \"cloudflare\"?); backoffLimit: -1 is out of range; expected 0 to 20"
        );
    }

    #[test]
    fn a_change_keeps_the_settings_before_it_for_the_stamps_made_meanwhile() {
        let mut follower = Follower::default();
        let SettingsState::Ready(first) = ready(&mut follower, json!({"backoffLimit": 3})) else {
            panic!("not ready");
        };
        assert_eq!(first.candidates().len(), 1);
        let step = follower.step(
            &SettingsState::Ready(first.clone()),
            &watcher::Event::Apply(policy(json!({"backoffLimit": 5}))),
        );
        let Some(SettingsState::Ready(second)) = step.next else {
            panic!("a changed policy changes the settings: {step:?}");
        };
        let limits: Vec<i64> = second
            .candidates()
            .iter()
            .map(|settings| settings.backoff_limit)
            .collect();
        assert_eq!(limits, [5, 3]);
        // An unchanged policy (a status update, a resync) changes nothing.
        let again = follower.step(
            &SettingsState::Ready(second),
            &watcher::Event::Apply(policy(json!({"backoffLimit": 5}))),
        );
        assert_eq!(
            again,
            Step {
                next: None,
                usable: Some(Ok(()))
            }
        );
    }

    #[test]
    fn invalid_settings_stop_the_start_but_not_a_running_launcher() {
        let invalid = policy(json!({"backoffLimit": -1}));
        let mut follower = Follower::default();
        let step = follower.step(
            &SettingsState::Waiting,
            &watcher::Event::InitApply(invalid.clone()),
        );
        let problem = "invalid settings in ClusterAdmissionPolicy cache-buster: backoffLimit: -1 is out of range; expected 0 to 20";
        assert_eq!(step.next, Some(SettingsState::Invalid(problem.to_owned())));

        let running = ready(&mut Follower::default(), json!({}));
        let step = follower.step(&running, &watcher::Event::Apply(invalid));
        assert_eq!(
            step,
            Step {
                next: None,
                usable: Some(Err(format!(
                    "{problem}; the launcher keeps deriving with the last valid settings"
                )))
            }
        );
    }

    #[test]
    fn a_missing_or_deleted_policy_is_named() {
        let mut follower = Follower::default();
        follower.step(&SettingsState::Waiting, &watcher::Event::Init);
        let step = follower.step(&SettingsState::Waiting, &watcher::Event::InitDone);
        assert_eq!(
            step.usable,
            Some(Err(
                "not found; the launcher creates no Job until it exists".to_owned()
            ))
        );
        let running = ready(&mut follower, json!({}));
        let step = follower.step(&running, &watcher::Event::Delete(policy(json!({}))));
        assert_eq!(
            step.usable,
            Some(Err(
                "deleted; the launcher keeps deriving with the last valid settings".to_owned()
            ))
        );
        assert_eq!(step.next, None);
    }
}
