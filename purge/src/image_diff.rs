//! SPEC §9: which files differ between two images, from the layers they
//! do not share. The layers both images start with (the same digests in the
//! same order) are the same filesystem below each image's own layers; a path
//! neither image's own layers touch is the same in both, and is never read.
//! A path one image's own layers write and the other's leave to the shared
//! layers cannot be proven unchanged without the shared layers: it is
//! counted as changed, and purged (an extra purge costs a miss; a missed one
//! leaves a stale page).

use crate::layers::{Entry, LayerChanges};
use std::collections::{BTreeMap, BTreeSet};

/// What an image's own layers make of a path, over the shared layers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Present(Entry),
    /// Removed by a whiteout, or hidden by an opaque directory.
    Absent,
}

/// An image's own layers applied in order, as the OCI image spec's layer
/// rules say: a layer's whiteouts and opaque directories hide what is below
/// first, then its entries apply.
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    entries: BTreeMap<String, State>,
    /// Paths whose shared content is hidden: a whiteout's path and what is
    /// under it, an opaque directory's content.
    hidden: BTreeSet<String>,
}

impl Overlay {
    pub fn apply(&mut self, layer: LayerChanges) {
        for removed in layer.whiteouts {
            self.remove_under(&removed);
            self.entries.insert(removed.clone(), State::Absent);
            self.hidden.insert(removed);
        }
        for dir in layer.opaque {
            self.remove_under(&dir);
            self.hidden.insert(dir);
        }
        for (path, entry) in layer.entries {
            self.entries.insert(path, State::Present(entry));
        }
    }

    /// Drops what the layers below wrote under `path`.
    fn remove_under(&mut self, path: &str) {
        let under = [path, "/"].concat();
        self.entries
            .retain(|written, _| !written.starts_with(&under));
    }

    /// The path's state, or None when it is the shared layers'.
    fn state(&self, path: &str) -> Option<State> {
        if let Some(state) = self.entries.get(path) {
            return Some(state.clone());
        }
        let hidden = self.hidden.iter().any(|hidden| {
            path.strip_prefix(hidden.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        });
        hidden.then_some(State::Absent)
    }
}

/// The files that differ between the old image and the new one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// Directories whose shared content one image hides and the other
    /// shows: their files are known only from the shared layers.
    pub hidden_in_one: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.changed.is_empty()
            && self.removed.is_empty()
            && self.hidden_in_one.is_empty()
    }
}

/// Compares two images' own layers, applied over the same shared layers.
pub fn compare(old: &Overlay, new: &Overlay) -> Changes {
    let mut changes = Changes::default();
    let paths: BTreeSet<&String> = old.entries.keys().chain(new.entries.keys()).collect();
    for path in paths {
        let path = path.clone();
        match (old.state(&path), new.state(&path)) {
            (Some(State::Absent), Some(State::Absent)) => {}
            (Some(State::Present(a)), Some(State::Present(b))) => {
                if a != b || a == Entry::Unknown {
                    changes.changed.push(path);
                }
            }
            (Some(State::Absent), Some(State::Present(_))) => changes.added.push(path),
            (Some(State::Present(_)), Some(State::Absent)) => changes.removed.push(path),
            // One side is the shared layers': not provable either way.
            (None, Some(State::Present(_))) | (Some(State::Present(_)), None) => {
                changes.changed.push(path);
            }
            (None, Some(State::Absent)) => changes.removed.push(path),
            (Some(State::Absent), None) => changes.added.push(path),
            (None, None) => {}
        }
    }
    changes.hidden_in_one = old
        .hidden
        .symmetric_difference(&new.hidden)
        .cloned()
        .collect();
    changes
}

/// The layers both images start with: the length of their common prefix.
pub fn shared_layers<T: PartialEq>(old: &[T], new: &[T]) -> usize {
    old.iter()
        .zip(new)
        .take_while(|(old, new)| old == new)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::tests::tar_of;
    use crate::layers::{Compression, read_layer};

    const HTML: &str = "usr/share/nginx/html";

    fn layer(entries: &[(&str, &str)]) -> LayerChanges {
        let wanted = |path: &str| path.starts_with(HTML) || HTML.starts_with(path);
        read_layer(&tar_of(entries)[..], Compression::None, &wanted).unwrap()
    }

    fn overlay(layers: &[&[(&str, &str)]]) -> Overlay {
        let mut overlay = Overlay::default();
        for entries in layers {
            overlay.apply(layer(entries));
        }
        overlay
    }

    fn site(files: &[(&str, &str)]) -> Overlay {
        let entries: Vec<(String, &str)> = files
            .iter()
            .map(|(path, content)| (format!("{HTML}/{path}"), *content))
            .collect();
        let entries: Vec<(&str, &str)> = entries
            .iter()
            .map(|(path, content)| (path.as_str(), *content))
            .collect();
        overlay(&[&entries])
    }

    fn paths(list: &[String]) -> Vec<&str> {
        list.iter()
            .map(|path| path.trim_start_matches(HTML).trim_start_matches('/'))
            .collect()
    }

    /// The typical rebuild: the site layer written anew, one post added,
    /// the index and the feed changed, the rest the same bytes.
    #[test]
    fn a_rebuilt_site_layer_gives_exactly_the_files_that_differ() {
        let a = site(&[
            ("index.html", "home v1"),
            ("index.xml", "feed v1"),
            ("posts/hello/index.html", "hello"),
            ("css/site.css", "body{}"),
        ]);
        let b = site(&[
            ("index.html", "home v2"),
            ("index.xml", "feed v2"),
            ("posts/hello/index.html", "hello"),
            ("posts/new/index.html", "new"),
            ("css/site.css", "body{}"),
        ]);
        let changes = compare(&a, &b);
        // Added by B's layer, absent from A's: the shared base may hold it.
        assert_eq!(
            paths(&changes.changed),
            ["index.html", "index.xml", "posts/new/index.html"]
        );
        assert!(changes.added.is_empty() && changes.removed.is_empty());
        // The other way, the new post goes too.
        assert_eq!(
            paths(&compare(&b, &a).changed),
            ["index.html", "index.xml", "posts/new/index.html"]
        );
    }

    #[test]
    fn a_whiteout_removes_and_the_next_layer_adds_back() {
        let a = overlay(&[&[
            ("usr/share/nginx/html/old.html", "old"),
            ("usr/share/nginx/html/keep.html", "keep"),
        ]]);
        let b = overlay(&[
            &[
                ("usr/share/nginx/html/old.html", "old"),
                ("usr/share/nginx/html/keep.html", "keep"),
            ],
            &[("usr/share/nginx/html/.wh.old.html", "")],
        ]);
        let changes = compare(&a, &b);
        assert_eq!(paths(&changes.removed), ["old.html"]);
        assert!(changes.changed.is_empty() && changes.added.is_empty());
        assert_eq!(paths(&compare(&b, &a).added), ["old.html"]);
    }

    #[test]
    fn a_whiteout_applies_before_its_own_layers_entries() {
        let a = site(&[("posts/a.html", "a")]);
        let b = overlay(&[&[
            ("usr/share/nginx/html/.wh.posts", ""),
            ("usr/share/nginx/html/posts/b.html", "b"),
        ]]);
        let changes = compare(&a, &b);
        // The whiteout's own path too: a file or a directory, the shared
        // layers would say; an extra purge costs a miss.
        assert_eq!(paths(&changes.removed), ["posts", "posts/a.html"]);
        // b.html: B writes it, A leaves it to the shared layers.
        assert_eq!(paths(&changes.changed), ["posts/b.html"]);
        assert_eq!(paths(&changes.hidden_in_one), ["posts"]);
    }

    #[test]
    fn an_opaque_directory_hides_what_is_below_and_says_so() {
        let a = site(&[("tags/go.html", "go")]);
        let b = overlay(&[&[
            ("usr/share/nginx/html/tags/.wh..wh..opq", ""),
            ("usr/share/nginx/html/tags/rust.html", "rust"),
        ]]);
        let changes = compare(&a, &b);
        assert_eq!(paths(&changes.removed), ["tags/go.html"]);
        assert_eq!(paths(&changes.changed), ["tags/rust.html"]);
        assert_eq!(paths(&changes.hidden_in_one), ["tags"]);
    }

    #[test]
    fn links_compare_by_target_and_an_unknown_hard_link_always_differs() {
        let a = site(&[("latest", "->posts/a/"), ("same", "->x")]);
        let b = site(&[("latest", "->posts/b/"), ("same", "->x")]);
        assert_eq!(paths(&compare(&a, &b).changed), ["latest"]);
        let linked = site(&[("copy.html", "=>etc/elsewhere")]);
        assert_eq!(paths(&compare(&linked, &linked).changed), ["copy.html"]);
    }

    #[test]
    fn the_same_layers_give_no_change() {
        let a = site(&[("index.html", "home"), ("about/index.html", "about")]);
        assert!(compare(&a, &a.clone()).is_empty());
    }

    #[test]
    fn the_shared_layers_are_the_common_prefix() {
        assert_eq!(shared_layers(&["base", "site-a"], &["base", "site-b"]), 1);
        assert_eq!(shared_layers(&["base", "site"], &["base", "site"]), 2);
        assert_eq!(shared_layers(&["other", "site"], &["base", "site"]), 0);
    }
}
