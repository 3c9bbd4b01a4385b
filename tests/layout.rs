//! The house's rules (docs/development.md, "The house"), checked over every
//! crate of the workspace:
//! - no circle of modules, of any length: a strongly connected component
//!   of more than one module hides a module that both sides need;
//! - no source file over 600 lines of code, its tests apart;
//! - providers are named one by one only in their own modules and the
//!   registry (purge/src/providers/), never elsewhere.

// Indices into a text come from `find` and `char_indices`: on character
// boundaries.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::string_slice
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates' source folders, from the workspace's root.
const CRATES: [&str; 5] = [
    "src",
    "purge/src",
    "cli/src",
    "runner/src",
    "e2e-cluster/src",
];

/// A file's lines of code: neither blank nor a comment.
const MAX_LINES_OF_CODE: usize = 600;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A source file: its module's path (`providers::cloudflare`), its code
/// before its tests, and whether its parent compiles it only for tests.
struct Module {
    file: PathBuf,
    code: String,
}

/// The code of a file without its test module (`#[cfg(test)] mod tests`,
/// whose lines follow the code) and without the modules only tests compile.
fn code_before_tests(text: &str) -> String {
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") || trimmed.starts_with("#[cfg(all(test") {
            // A test module declared elsewhere (`mod readme;`) is skipped
            // alone; one written inline ends the code.
            match lines.peek() {
                Some(next) if next.trim_end().ends_with(';') => {
                    lines.next();
                    continue;
                }
                _ => break,
            }
        }
        code.push_str(line);
        code.push('\n');
    }
    code
}

/// A module compiled only for tests, as its parent declares it.
#[derive(Debug, PartialEq)]
enum TestOnly {
    /// `#[cfg(test)] mod name;`: the parent's child `name`.
    Child(String),
    /// `#[cfg(test)] #[path = "x_tests.rs"] mod tests;`: that file, beside
    /// the parent.
    File(String),
}

/// The modules compiled only for tests: `#[cfg(test)]`, maybe a
/// `#[path = "…"]`, then `mod name;`.
fn test_only_children(text: &str) -> Vec<TestOnly> {
    let mut children = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if !(line.starts_with("#[cfg(test)]") || line.starts_with("#[cfg(all(test")) {
            continue;
        }
        let mut file = None;
        for next in lines.by_ref() {
            if let Some(path) = next.strip_prefix("#[path = \"") {
                file = path.strip_suffix("\"]").map(str::to_owned);
                continue;
            }
            if let Some(declaration) = next.trim_start_matches("pub ").strip_prefix("mod ")
                && let Some(name) = declaration.strip_suffix(';')
            {
                children.push(match file {
                    Some(file) => TestOnly::File(file),
                    None => TestOnly::Child(name.trim().to_owned()),
                });
            }
            break;
        }
    }
    children
}

/// A module's name from its file under `source` (`launcher/plan.rs` is
/// `launcher::plan`, `providers/mod.rs` is `providers`).
fn module_name(source: &Path, file: &Path) -> String {
    file.strip_prefix(source)
        .unwrap()
        .with_extension("")
        .to_string_lossy()
        .trim_end_matches("/mod")
        .replace('/', "::")
}

/// Every module of the crate whose sources are under `source`, by path.
fn modules(source: &Path) -> BTreeMap<String, Module> {
    let mut modules = BTreeMap::new();
    let mut test_only = BTreeSet::new();
    let mut dirs = vec![source.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|extension| extension != "rs") {
                continue;
            }
            let name = module_name(source, &path);
            let text = std::fs::read_to_string(&path).unwrap();
            let parent = match name.as_str() {
                "lib" | "main" => String::new(),
                _ => format!("{name}::"),
            };
            test_only.extend(
                test_only_children(&text)
                    .into_iter()
                    .map(|child| match child {
                        TestOnly::Child(child) => format!("{parent}{child}"),
                        TestOnly::File(file) => module_name(source, &dir.join(file)),
                    }),
            );
            modules.insert(
                name,
                Module {
                    file: path.clone(),
                    code: code_before_tests(&text),
                },
            );
        }
    }
    // A test-only module's own children are test-only too.
    modules.retain(|name, _| {
        !test_only
            .iter()
            .any(|test| name == test || name.starts_with(&format!("{test}::")))
    });
    modules
}

/// The paths that follow `anchor` (`crate::`, `super::`) in `code`,
/// `crate::{a::B, c}` included; a visibility (`pub(in crate::a)`) is none.
fn paths_after(code: &str, anchor: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for (index, _) in code.match_indices(anchor) {
        if code[..index].ends_with("(in ") || code[..index].ends_with("super::") {
            continue;
        }
        paths.extend(paths_in(&code[index + anchor.len()..]));
    }
    paths
}

/// The paths at the start of `text`: `a::b::C` or a braced group.
fn paths_in(text: &str) -> Vec<Vec<String>> {
    if let Some(group) = text.strip_prefix('{') {
        let mut depth = 0usize;
        let mut items = Vec::new();
        let mut start = 0;
        for (index, character) in group.char_indices() {
            match character {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    items.push(&group[start..index]);
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&group[start..index]);
                    start = index + 1;
                }
                _ => {}
            }
        }
        return items
            .into_iter()
            .flat_map(|item| paths_in(item.trim_start()))
            .collect();
    }
    let mut segments = Vec::new();
    let mut rest = text;
    loop {
        let length = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if length == 0 {
            if let Some(group) = rest.strip_prefix('{') {
                return paths_in(&format!("{{{group}"))
                    .into_iter()
                    .map(|tail| segments.iter().cloned().chain(tail).collect())
                    .collect();
            }
            break;
        }
        segments.push(rest[..length].to_owned());
        match rest[length..].strip_prefix("::") {
            Some(next) => rest = next,
            None => break,
        }
    }
    vec![segments]
}

/// The modules `name`'s code uses: the longest module path each
/// `crate::` or `super::` path starts with (an item of the parent itself
/// is the parent), and a parent's `child::`.
fn imports(name: &str, code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let parent = name.rsplit_once("::").map(|(parent, _)| parent.to_owned());
    let absolute = paths_after(code, "crate::");
    let relative = paths_after(code, "super::").into_iter().map(|path| {
        parent
            .iter()
            .flat_map(|parent| parent.split("::"))
            .map(str::to_owned)
            .chain(path)
            .collect::<Vec<_>>()
    });
    let mut used = BTreeSet::new();
    for path in absolute.into_iter().chain(relative) {
        let longest = (1..=path.len())
            .rev()
            .map(|length| path[..length].join("::"))
            .find(|module| known.contains(module));
        used.extend(longest);
    }
    for child in known
        .iter()
        .filter(|child| child.starts_with(&format!("{name}::")))
    {
        let last = child.rsplit("::").next().unwrap();
        if child.matches("::").count() == name.matches("::").count() + 1
            && code.contains(&format!("{last}::"))
        {
            used.insert(child.clone());
        }
    }
    used.remove(name);
    used.remove("lib");
    used.remove("main");
    used
}

type Graph = BTreeMap<String, BTreeSet<String>>;

fn graph(source: &Path) -> Graph {
    let modules = modules(source);
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(name, module)| (name.clone(), imports(name, &module.code, &known)))
        .collect()
}

/// The strongly connected components of more than one module (Tarjan's
/// algorithm): each is a circle of imports, whatever its length.
fn circles(graph: &Graph) -> Vec<Vec<String>> {
    struct Search<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<Vec<String>>,
    }
    impl<'a> Search<'a> {
        fn visit(&mut self, node: &'a str) {
            let order = self.index.len();
            self.index.insert(node, order);
            self.low.insert(node, order);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flatten() {
                let next = next.as_str();
                if !self.graph.contains_key(next) {
                    continue;
                }
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack.remove(member);
                    component.push(member.to_owned());
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.components.push(component);
                }
            }
        }
    }
    let mut search = Search {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for node in graph.keys() {
        if !search.index.contains_key(node.as_str()) {
            search.visit(node);
        }
    }
    search.components
}

#[test]
fn no_crate_has_a_circle_of_modules() {
    let mut found = Vec::new();
    for source in CRATES {
        for circle in circles(&graph(&root().join(source))) {
            found.push(format!("{source}: {}", circle.join(" -> ")));
        }
    }
    assert!(
        found.is_empty(),
        "modules that import each other, through a circle:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_circle_finder_sees_a_circle_of_any_length() {
    let graph = |edges: &[(&str, &str)]| {
        let mut graph = Graph::new();
        for (from, to) in edges {
            graph
                .entry((*from).to_owned())
                .or_default()
                .insert((*to).to_owned());
            graph.entry((*to).to_owned()).or_default();
        }
        graph
    };
    assert_eq!(
        circles(&graph(&[("job", "settings"), ("settings", "job")])),
        [["job", "settings"]]
    );
    assert_eq!(
        circles(&graph(&[
            ("cdn", "aws"),
            ("aws", "recorded"),
            ("recorded", "cdn"),
            ("cdn", "pki")
        ])),
        [["aws", "cdn", "recorded"]]
    );
    assert!(circles(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])).is_empty());
}

#[test]
fn imports_are_read_in_every_form() {
    let known: BTreeSet<String> = [
        "cdn",
        "providers",
        "providers::http",
        "credentials",
        "options",
    ]
    .map(str::to_owned)
    .into();
    let used = imports(
        "providers::fastly",
        "use crate::{cdn::{Cdn, Layer}, credentials::Credentials};\nuse crate::providers::http::X;\nlet x = super::Y;",
        &known,
    );
    assert_eq!(
        used,
        ["cdn", "credentials", "providers", "providers::http"]
            .map(str::to_owned)
            .into()
    );
    let parent = imports("providers", "match p { P::Http => http::INFO }", &known);
    assert_eq!(parent, ["providers::http"].map(str::to_owned).into());
}

#[test]
fn test_only_modules_are_found_inline_declared_and_in_sibling_files() {
    let text = "pub mod code;\n#[cfg(test)]\nmod readme;\n#[cfg(test)]\n#[path = \"plan_tests.rs\"]\nmod tests;\n#[cfg(test)]\nmod inline {\n}\n";
    assert_eq!(
        test_only_children(text),
        [
            TestOnly::Child("readme".to_owned()),
            TestOnly::File("plan_tests.rs".to_owned())
        ]
    );
    let source = Path::new("/crate/src");
    assert_eq!(
        module_name(source, &source.join("launcher").join("plan_tests.rs")),
        "launcher::plan_tests"
    );
    assert_eq!(
        module_name(source, &source.join("providers/mod.rs")),
        "providers"
    );
}

#[test]
fn the_graph_sees_the_imports_of_every_crate() {
    let purge = graph(&root().join("purge/src"));
    assert!(purge["run"].contains("providers"), "{:?}", purge["run"]);
    assert!(purge["providers"].contains("providers::cloudflare"));
    let policy = graph(&root().join("src"));
    assert!(
        policy["deployment"].contains("job"),
        "{:?}",
        policy["deployment"]
    );
    assert!(
        !policy.contains_key("readme"),
        "a test-only module is not code"
    );
    assert!(
        !policy.contains_key("deployment_tests"),
        "a module's tests in a sibling file are not code"
    );
}

fn lines_of_code(code: &str) -> usize {
    code.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("//"))
        .count()
}

#[test]
fn no_source_file_passes_600_lines_of_code() {
    let mut long = Vec::new();
    for source in CRATES {
        for module in modules(&root().join(source)).values() {
            let lines = lines_of_code(&module.code);
            if lines > MAX_LINES_OF_CODE {
                long.push(format!(
                    "{}: {lines}",
                    module.file.strip_prefix(root()).unwrap().display()
                ));
            }
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES_OF_CODE} lines of code (tests apart):\n{}",
        long.join("\n")
    );
}

/// Where a provider may be named one by one, outside its own module and
/// the registry (purge/src/providers/): the settings, whose provider
/// settings become that provider's flags (`Settings::provider_flags`).
const NAMES_PROVIDERS: [&str; 1] = ["src/settings.rs"];

/// The providers' names as the code spells them: `Provider::Cloudflare`,
/// `providers::cloudflare`.
fn provider_mentions(code: &str) -> Vec<String> {
    let names: Vec<String> = std::fs::read_dir(root().join("purge/src/providers"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.file_stem().is_some_and(|stem| stem != "mod"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut mentions = Vec::new();
    for name in &names {
        let mut variant = name.clone();
        variant[..1].make_ascii_uppercase();
        for spelled in [
            format!("Provider::{variant}"),
            format!("providers::{name}::"),
        ] {
            for (at, _) in code.match_indices(&spelled) {
                let next = code[at + spelled.len()..].chars().next();
                if !next.is_some_and(|c| c.is_alphanumeric() || c == '_') || spelled.ends_with("::")
                {
                    mentions.push(spelled.clone());
                }
            }
        }
    }
    mentions
}

/// Adding a provider touches its module and the registry's line, not code
/// elsewhere that names providers one by one (docs/development.md lists
/// the files a new provider touches).
#[test]
fn no_code_outside_the_providers_names_them_one_by_one() {
    let mut found = Vec::new();
    for source in CRATES {
        for module in modules(&root().join(source)).values() {
            let file = module.file.strip_prefix(root()).unwrap().to_path_buf();
            let in_providers = file.starts_with("purge/src/providers");
            // A module's tests in a sibling file (`argv_tests.rs`).
            let tests = file.to_string_lossy().ends_with("_tests.rs");
            let allowed = NAMES_PROVIDERS.iter().any(|path| file == Path::new(path));
            if in_providers || allowed || tests {
                continue;
            }
            for mention in provider_mentions(&module.code) {
                found.push(format!("{}: {mention}", file.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "providers named one by one outside purge/src/providers/:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_naming_check_sees_both_spellings() {
    let code = "let p = Provider::Http; let f = crate::providers::fastly::Flags::default(); let all = Provider::ALL;";
    assert_eq!(
        provider_mentions(code),
        ["providers::fastly::", "Provider::Http"]
    );
}
