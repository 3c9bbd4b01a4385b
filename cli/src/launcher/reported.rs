//! The names of the Events the launcher recorded (or found recorded), so a
//! resync does not ask the API server again, remembered only as long as the
//! API server itself keeps an Event (`--event-ttl`, an hour by default):
//! one launcher serves thousands of sites for months, and a set that only
//! grows would hold every Event it ever wrote. What it forgets it asks the
//! API server about again, whose AlreadyExists says the same while the
//! Event lives; an outcome is not reported at all once older than the
//! reporting window (`plan::OUTCOME_WINDOW_SECONDS`).

use crate::launcher::plan::OUTCOME_WINDOW_SECONDS;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a name is remembered: the reporting window, and a margin for
/// an outcome reported at its very end.
pub const REMEMBERED: Duration = Duration::from_secs(OUTCOME_WINDOW_SECONDS.unsigned_abs() + 600);
/// Names older than [`REMEMBERED`] are dropped at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Reported {
    names: HashMap<String, Instant>,
    swept: Instant,
}

impl Reported {
    pub fn new(now: Instant) -> Reported {
        Reported {
            names: HashMap::new(),
            swept: now,
        }
    }

    pub fn contains(&self, name: &str, now: Instant) -> bool {
        self.names
            .get(name)
            .is_some_and(|at| now.saturating_duration_since(*at) < REMEMBERED)
    }

    pub fn insert(&mut self, name: String, now: Instant) {
        self.names.insert(name, now);
        if now.saturating_duration_since(self.swept) >= SWEEP_EVERY {
            self.names
                .retain(|_, at| now.saturating_duration_since(*at) < REMEMBERED);
            self.swept = now;
        }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A launcher that records an Event a second for a day holds about an
    /// hour's worth of names, not a day's.
    #[test]
    fn names_are_held_as_long_as_the_api_server_holds_events() {
        let start = Instant::now();
        let mut reported = Reported::new(start);
        for second in 0..86_400u64 {
            reported.insert(
                format!("shop.{second}.purged"),
                start + Duration::from_secs(second),
            );
        }
        let end = start + Duration::from_secs(86_399);
        assert!(
            reported.len() <= (REMEMBERED + SWEEP_EVERY).as_secs() as usize,
            "{} names held",
            reported.len()
        );
        assert!(reported.contains("shop.86399.purged", end));
        assert!(reported.contains("shop.84000.purged", end));
        assert!(!reported.contains("shop.3600.purged", end));
    }

    /// The README's "Memory per site" says how long, as this module keeps.
    #[test]
    fn the_readme_says_how_long_names_are_kept() {
        let said = format!("recorded for {} minutes", REMEMBERED.as_secs() / 60);
        assert!(
            include_str!("../../../README.md")
                .replace('\n', " ")
                .contains(&said),
            "the README does not say {said:?}"
        );
    }

    #[test]
    fn a_name_older_than_remembered_is_asked_about_again() {
        let start = Instant::now();
        let mut reported = Reported::new(start);
        reported.insert("shop.a.cancelled".to_owned(), start);
        assert!(reported.contains("shop.a.cancelled", start + REMEMBERED / 2));
        assert!(!reported.contains("shop.a.cancelled", start + REMEMBERED));
        assert!(!reported.is_empty());
    }
}
