//! Which replica acts. Two launchers run (deploy/launcher.yaml); both watch
//! and keep warm caches, but only the one holding the Lease reconciles,
//! writes Events and creates or deletes Jobs.
//!
//! kube-lease-manager takes and renews the Lease. What this replica may do
//! is decided here, from the Lease as the API server last showed it: it
//! leads while the Lease names it and its last renewal is fresh, that is
//! younger than the lease duration less a margin. A leader cut off from the
//! API server sees no renewal, so it stops acting before the Lease expires
//! and a standby may take it: the two never act at once (as long as their
//! clocks differ by less than the margin). Should they ever, the API server
//! still keeps SPEC §8: a Job or an Event is created under a name derived
//! from what it is, so the second create is an AlreadyExists.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::sync::Mutex;
use std::time::Duration;

/// How long a Lease holds without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// The holder renews this long before the Lease would expire.
pub const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(5);
/// A leader stops acting this long before its Lease would expire unrenewed.
pub const STEP_DOWN_MARGIN: Duration = Duration::from_secs(3);

// The holder renews 10 s after its last renewal and steps down at 12 s:
// 2 s for the renewal to come back through the watch.
const _: () = assert!(STEP_DOWN_MARGIN.as_secs() < RENEW_BEFORE_EXPIRY.as_secs());
const _: () = assert!(RENEW_BEFORE_EXPIRY.as_secs() < LEASE_DURATION.as_secs());

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Leader,
    Standby,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Standby => "standby",
        }
    }
}

/// What this replica knows of the Lease.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseView {
    pub holder: Option<String>,
    pub renewed: Option<Timestamp>,
    pub duration: Option<Duration>,
}

impl LeaseView {
    pub fn of(lease: &Lease) -> LeaseView {
        let spec = lease.spec.as_ref();
        LeaseView {
            holder: spec.and_then(|spec| spec.holder_identity.clone()),
            renewed: spec.and_then(|spec| spec.renew_time.as_ref().map(|time| time.0)),
            duration: spec
                .and_then(|spec| spec.lease_duration_seconds)
                .and_then(|seconds| u64::try_from(seconds).ok())
                .map(Duration::from_secs),
        }
    }
}

/// The role of `me` at `now`, given the Lease.
pub fn role(view: &LeaseView, me: &str, now: Timestamp) -> Role {
    let (Some(holder), Some(renewed), Some(duration)) =
        (view.holder.as_deref(), view.renewed, view.duration)
    else {
        return Role::Standby;
    };
    let fresh_for = duration.saturating_sub(STEP_DOWN_MARGIN);
    let age = now.duration_since(renewed);
    let fresh = age < SignedDuration::try_from(fresh_for).unwrap_or(SignedDuration::ZERO);
    if holder == me && fresh {
        Role::Leader
    } else {
        Role::Standby
    }
}

/// A change of role, as `Leadership::update` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Every site is reconciled at once: what the other replica left
    /// undone, or what happened while it was gone.
    BecameLeader,
    SteppedDown,
}

/// This replica's role, shared by the reconciliations, `/readyz` and the
/// metric.
#[derive(Debug)]
pub struct Leadership {
    me: String,
    /// The only replica, with no Lease: it always leads.
    alone: bool,
    state: Mutex<(LeaseView, Role)>,
}

impl Leadership {
    pub fn new(me: impl Into<String>) -> Leadership {
        Leadership {
            me: me.into(),
            alone: false,
            state: Mutex::new((LeaseView::default(), Role::Standby)),
        }
    }

    /// A replica that always leads: the only one, without a Lease.
    pub fn alone() -> Leadership {
        Leadership {
            me: "alone".to_owned(),
            alone: true,
            state: Mutex::new((LeaseView::default(), Role::Leader)),
        }
    }

    pub fn identity(&self) -> &str {
        &self.me
    }

    /// Takes in the Lease as last seen (or the same view again, as time
    /// passes) and says how the role changed, if it did.
    pub fn update(&self, view: Option<LeaseView>, now: Timestamp) -> Option<Transition> {
        if self.alone {
            return None;
        }
        let mut state = self.state.lock().ok()?;
        if let Some(view) = view {
            state.0 = view;
        }
        let next = role(&state.0, &self.me, now);
        let before = std::mem::replace(&mut state.1, next);
        match (before, next) {
            (Role::Standby, Role::Leader) => Some(Transition::BecameLeader),
            (Role::Leader, Role::Standby) => Some(Transition::SteppedDown),
            _ => None,
        }
    }

    /// Whether this replica may write now: it leads, and its Lease is still
    /// fresh at this very moment (not only at the last update).
    pub fn may_act(&self, now: Timestamp) -> bool {
        self.alone
            || self.state.lock().is_ok_and(|state| {
                state.1 == Role::Leader && role(&state.0, &self.me, now) == Role::Leader
            })
    }

    pub fn role(&self) -> Role {
        self.state.lock().map_or(Role::Standby, |state| state.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const T: i64 = 1_790_000_000;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(T + second).unwrap()
    }

    fn lease(holder: Option<&str>, renewed: Option<i64>) -> LeaseView {
        LeaseView {
            holder: holder.map(str::to_owned),
            renewed: renewed.map(at),
            duration: Some(LEASE_DURATION),
        }
    }

    /// Who acts, by the Lease and the clock: the holder while its last
    /// renewal is younger than 15 s less the 3 s margin.
    #[rstest]
    #[case::holder_just_renewed(lease(Some("a"), Some(0)), "a", 0, Role::Leader)]
    #[case::holder_before_the_next_renewal(lease(Some("a"), Some(0)), "a", 10, Role::Leader)]
    #[case::holder_unrenewed_near_expiry(lease(Some("a"), Some(0)), "a", 12, Role::Standby)]
    #[case::holder_unrenewed_after_expiry(lease(Some("a"), Some(0)), "a", 15, Role::Standby)]
    #[case::other_holder(lease(Some("b"), Some(0)), "a", 1, Role::Standby)]
    #[case::released(lease(None, None), "a", 1, Role::Standby)]
    #[case::no_duration(LeaseView { duration: None, ..lease(Some("a"), Some(0)) }, "a", 1, Role::Standby)]
    #[case::renewed_ahead_of_this_clock(lease(Some("a"), Some(2)), "a", 0, Role::Leader)]
    fn the_role_follows_the_lease_and_its_freshness(
        #[case] view: LeaseView,
        #[case] me: &str,
        #[case] now: i64,
        #[case] expected: Role,
    ) {
        assert_eq!(role(&view, me, at(now)), expected);
    }

    /// A leader that sees no renewal (it lost the API server) steps down
    /// before the Lease expires, so that a standby taking it over never
    /// acts at the same time.
    #[test]
    fn a_leader_cut_off_steps_down_before_its_lease_expires() {
        let leadership = Leadership::new("a");
        assert_eq!(
            leadership.update(Some(lease(Some("a"), Some(0))), at(0)),
            Some(Transition::BecameLeader)
        );
        assert!(leadership.may_act(at(5)));
        // No renewal comes: the same view as time passes.
        assert_eq!(leadership.update(None, at(11)), None);
        assert!(
            !leadership.may_act(at(12)),
            "acting 12 s after its last renewal"
        );
        assert_eq!(
            leadership.update(None, at(12)),
            Some(Transition::SteppedDown)
        );
        // The standby may take the Lease once it expires, at 15 s.
        let standby = Leadership::new("b");
        standby.update(Some(lease(Some("a"), Some(0))), at(12));
        assert!(!standby.may_act(at(12)));
        assert_eq!(
            standby.update(Some(lease(Some("b"), Some(15))), at(15)),
            Some(Transition::BecameLeader)
        );
        assert!(standby.may_act(at(15)));
    }

    /// Renewals keep the leader leading; another holder makes it step down.
    #[test]
    fn renewals_keep_the_role_and_a_new_holder_ends_it() {
        let leadership = Leadership::new("a");
        leadership.update(Some(lease(Some("a"), Some(0))), at(0));
        for renewal in [10, 20, 30] {
            assert_eq!(
                leadership.update(Some(lease(Some("a"), Some(renewal))), at(renewal)),
                None
            );
            assert!(leadership.may_act(at(renewal + 11)));
        }
        assert_eq!(
            leadership.update(Some(lease(Some("b"), Some(50))), at(50)),
            Some(Transition::SteppedDown)
        );
        assert_eq!(leadership.role(), Role::Standby);
        assert!(!leadership.may_act(at(50)));
    }

    /// `may_act` reads the clock itself: a reconciliation that began while
    /// leading does not write once the Lease has gone stale.
    #[test]
    fn may_act_is_judged_at_the_moment_of_the_write() {
        let leadership = Leadership::new("a");
        leadership.update(Some(lease(Some("a"), Some(0))), at(0));
        assert_eq!(leadership.role(), Role::Leader);
        assert!(leadership.may_act(at(11)));
        assert!(!leadership.may_act(at(13)));
    }

    #[test]
    fn a_lone_launcher_always_acts() {
        let alone = Leadership::alone();
        assert!(alone.may_act(at(0)));
        assert_eq!(alone.update(None, at(1000)), None);
        assert_eq!(alone.role(), Role::Leader);
    }
}
