//! Whether the launcher's watches are running, for `/readyz`: a launcher
//! whose watch fails (RBAC Forbidden, an unreachable API server) creates no
//! Job, and must say so where Kubernetes and an operator look, not only in
//! its log.

use crate::launcher::metrics::WatchLabels;
use kube::runtime::watcher;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Listing for the first time.
    Starting,
    /// Listed, and watching.
    Running,
    /// The last attempt failed with this error; retried with back-off.
    Failing(String),
    /// The watch runs, but what it shows cannot be used (an invalid or
    /// missing ClusterAdmissionPolicy): the operator must act.
    Unusable(String),
}

/// The state of each watch, by name (`jobs in all namespaces`, …).
pub struct Watches {
    states: Mutex<BTreeMap<String, State>>,
    errors: Family<WatchLabels, Counter>,
}

impl Watches {
    /// Watch errors are counted in `errors`, by watched resource.
    pub fn new(errors: Family<WatchLabels, Counter>) -> Self {
        Watches {
            states: Mutex::new(BTreeMap::new()),
            errors,
        }
    }

    /// A watch that is starting: not ready until its first list is in.
    pub fn register(&self, watch: &str) {
        if let Ok(mut states) = self.states.lock() {
            states.insert(watch.to_owned(), State::Starting);
        }
    }

    /// Follows one event of watch `watch` of `resource` (`jobs`, `deployments`).
    pub fn observe<K>(
        &self,
        watch: &str,
        resource: &str,
        event: &Result<watcher::Event<K>, watcher::Error>,
    ) {
        let next = match event {
            Err(error) => {
                self.errors
                    .get_or_create(&WatchLabels {
                        resource: resource.to_owned(),
                    })
                    .inc();
                Some(State::Failing(error.to_string()))
            }
            // A list done, or a watch event after one: it runs.
            Ok(watcher::Event::InitDone | watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                Some(State::Running)
            }
            // Partway through a (re)list: nothing to say yet.
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => None,
        };
        if let (Some(next), Ok(mut states)) = (next, self.states.lock()) {
            states.insert(watch.to_owned(), next);
        }
    }

    /// The watch runs and what it shows can be used (`Ok`), or cannot, and why.
    pub fn settle(&self, watch: &str, usable: Result<(), String>) {
        let state = match usable {
            Ok(()) => State::Running,
            Err(problem) => State::Unusable(problem),
        };
        if let Ok(mut states) = self.states.lock() {
            states.insert(watch.to_owned(), state);
        }
    }

    /// Ready when every watch runs; otherwise what is not, one watch a line.
    pub fn readiness(&self) -> Result<(), String> {
        let states = self
            .states
            .lock()
            .map_err(|_| "the watch states are unreadable".to_owned())?;
        let problems: Vec<String> = states
            .iter()
            .filter_map(|(watch, state)| match state {
                State::Running => None,
                State::Starting => Some(format!("watch of {watch}: still listing")),
                State::Failing(error) => Some(format!(
                    "watch of {watch} failing (retried with back-off): {error}"
                )),
                State::Unusable(problem) => Some(format!("{watch}: {problem}")),
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::Job;

    fn forbidden() -> watcher::Error {
        watcher::Error::InitialListFailed(kube::Error::Api(Box::new(
            kube::core::Status::failure(
                "jobs.batch is forbidden: User \"system:serviceaccount:cache-buster-system:launcher\" cannot list resource \"jobs\"",
                "Forbidden",
            )
            .with_code(403),
        )))
    }

    #[test]
    fn ready_only_once_every_watch_has_listed() {
        let watches = Watches::new(Family::default());
        watches.register("jobs in all namespaces");
        watches.register("deployments in all namespaces");
        assert_eq!(
            watches.readiness(),
            Err("watch of deployments in all namespaces: still listing\n\
                 watch of jobs in all namespaces: still listing"
                .to_owned())
        );
        watches.observe::<Job>("jobs in all namespaces", "jobs", &Ok(watcher::Event::Init));
        watches.observe::<Job>(
            "jobs in all namespaces",
            "jobs",
            &Ok(watcher::Event::InitDone),
        );
        watches.observe::<Job>(
            "deployments in all namespaces",
            "deployments",
            &Ok(watcher::Event::InitDone),
        );
        assert_eq!(watches.readiness(), Ok(()));
    }

    #[test]
    fn a_failing_watch_says_why_is_counted_and_recovers() {
        let errors = Family::<WatchLabels, Counter>::default();
        let watches = Watches::new(errors.clone());
        watches.register("jobs in web");
        watches.observe::<Job>("jobs in web", "jobs", &Err(forbidden()));
        watches.observe::<Job>("jobs in web", "jobs", &Err(forbidden()));
        let problem = watches.readiness().unwrap_err();
        assert!(
            problem.starts_with("watch of jobs in web failing (retried with back-off): ")
                && problem.contains("cannot list resource"),
            "{problem}"
        );
        let count = errors
            .get_or_create(&WatchLabels {
                resource: "jobs".into(),
            })
            .get();
        assert_eq!(count, 2);
        // A relist in progress does not hide the failure; its end does.
        watches.observe::<Job>("jobs in web", "jobs", &Ok(watcher::Event::Init));
        assert!(watches.readiness().is_err());
        watches.observe::<Job>("jobs in web", "jobs", &Ok(watcher::Event::InitDone));
        assert_eq!(watches.readiness(), Ok(()));
    }

    #[test]
    fn an_unusable_watched_object_is_named_until_it_is_mended() {
        let watches = Watches::new(Family::default());
        watches.register("ClusterAdmissionPolicy cache-buster");
        watches.settle(
            "ClusterAdmissionPolicy cache-buster",
            Err("not found: no Job is created until it exists".to_owned()),
        );
        assert_eq!(
            watches.readiness(),
            Err(
                "ClusterAdmissionPolicy cache-buster: not found: no Job is created until it exists"
                    .to_owned()
            )
        );
        watches.settle("ClusterAdmissionPolicy cache-buster", Ok(()));
        assert_eq!(watches.readiness(), Ok(()));
    }
}
