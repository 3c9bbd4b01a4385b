//! What a purge clears (SPEC §2): the lists the policy reads from the
//! Deployment's annotations and the program from its argv.

pub use crate::target_checks::TargetUrl;

/// The purge targets of one Deployment, duplicates removed, order kept.
/// The program holds its URLs parsed ([`TargetUrl`]); the policy, which
/// only checks them and writes them into the Job, holds their text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeTargets<Url = TargetUrl> {
    pub urls: Vec<Url>,
    pub prefixes: Vec<String>,
    pub hosts: Vec<String>,
    pub tags: Vec<String>,
    pub everything: bool,
}

/// A kind of target a provider may or may not purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Urls,
    Prefixes,
    Hosts,
    Tags,
    Everything,
}

impl Target {
    /// The lists, in the order of SPEC §2 (`Everything` is no list).
    pub const LISTS: [Target; 4] = [Target::Urls, Target::Prefixes, Target::Hosts, Target::Tags];

    /// The annotation's name without its prefix (`urls`).
    pub fn key(self) -> &'static str {
        match self {
            Target::Urls => "urls",
            Target::Prefixes => "prefixes",
            Target::Hosts => "hosts",
            Target::Tags => "tags",
            Target::Everything => "everything",
        }
    }

    /// "URL prefix", for "cannot purge by URL prefix".
    pub fn noun(self) -> &'static str {
        match self {
            Target::Urls => "URL",
            Target::Prefixes => "URL prefix",
            Target::Hosts => "host name",
            Target::Tags => "cache tag",
            Target::Everything => "everything",
        }
    }

    /// "URL prefixes", for "cannot purge URL prefixes".
    pub fn plural(self) -> &'static str {
        match self {
            Target::Urls => "URLs",
            Target::Prefixes => "URL prefixes",
            Target::Hosts => "host names",
            Target::Tags => "cache tags",
            Target::Everything => "everything",
        }
    }
}

// Derived, it would ask `Url: Default` of a list's items.
impl<Url> Default for PurgeTargets<Url> {
    fn default() -> Self {
        PurgeTargets {
            urls: Vec::new(),
            prefixes: Vec::new(),
            hosts: Vec::new(),
            tags: Vec::new(),
            everything: false,
        }
    }
}

impl<Url> PurgeTargets<Url> {
    pub fn is_empty(&self) -> bool {
        !self.everything && self.lists().iter().all(|(_, empty)| *empty)
    }

    /// Each list, and whether it is empty.
    fn lists(&self) -> [(Target, bool); 4] {
        [
            (Target::Urls, self.urls.is_empty()),
            (Target::Prefixes, self.prefixes.is_empty()),
            (Target::Hosts, self.hosts.is_empty()),
            (Target::Tags, self.tags.is_empty()),
        ]
    }

    /// The kinds of list that hold something, in SPEC order.
    pub fn non_empty(&self) -> Vec<Target> {
        self.lists()
            .into_iter()
            .filter_map(|(target, empty)| (!empty).then_some(target))
            .collect()
    }

    /// The names of the lists that hold something, for messages.
    pub fn non_empty_lists(&self) -> Vec<&'static str> {
        self.non_empty().into_iter().map(Target::key).collect()
    }

    /// Every kind asked for, `Everything` first when it is.
    pub fn asked(&self) -> Vec<Target> {
        let mut asked = Vec::new();
        if self.everything {
            asked.push(Target::Everything);
        }
        asked.extend(self.non_empty());
        asked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_empty_lists_are_listed_in_spec_order() {
        let targets: PurgeTargets = PurgeTargets {
            tags: vec!["a".into()],
            hosts: vec!["example.com".into()],
            ..PurgeTargets::default()
        };
        assert_eq!(targets.non_empty_lists(), ["hosts", "tags"]);
        assert!(!targets.is_empty());
        assert!(PurgeTargets::<TargetUrl>::default().is_empty());
        let everything = PurgeTargets {
            everything: true,
            ..targets
        };
        assert_eq!(
            everything.asked(),
            [Target::Everything, Target::Hosts, Target::Tags]
        );
    }
}
