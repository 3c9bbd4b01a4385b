//! The purge's layout (docs/development.md, "Adding a provider"): one
//! module per provider, named after it, and no two modules that import
//! each other (a pair that does hides a third module).

use cache_buster_purge::Provider;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn source_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))
}

/// Each module's name (`providers::cloudflare`) and its code before its tests.
fn modules() -> BTreeMap<String, String> {
    let mut modules = BTreeMap::new();
    let mut dirs = vec![source_dir().to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let relative = path.strip_prefix(source_dir()).unwrap().with_extension("");
            let name = relative
                .to_string_lossy()
                .trim_end_matches("/mod")
                .replace('/', "::");
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap().to_owned();
            modules.insert(name, code);
        }
    }
    modules
}

/// The modules `code` (of module `name`) uses: `crate::a`, `crate::a::b`
/// where `a::b` is a module, a child's `super::`, a parent's `child::`.
fn imports(name: &str, code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for (index, _) in code.match_indices("crate::") {
        let path: String = code[index + "crate::".len()..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let mut parts = path.split("::");
        let first = parts.next().unwrap_or_default().to_owned();
        let nested = parts.next().map(|second| format!("{first}::{second}"));
        match nested.filter(|nested| known.contains(nested)) {
            Some(nested) => used.insert(nested),
            None => used.insert(first),
        };
    }
    if code.contains("super::")
        && let Some((parent, _)) = name.rsplit_once("::")
    {
        used.insert(parent.to_owned());
    }
    for child in known
        .iter()
        .filter(|child| child.starts_with(&format!("{name}::")))
    {
        let last = child.rsplit("::").next().unwrap();
        if code.contains(&format!("{last}::")) {
            used.insert(child.clone());
        }
    }
    used.remove(name);
    used
}

#[test]
fn no_two_modules_import_each_other() {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    let graph: BTreeMap<&String, BTreeSet<String>> = modules
        .iter()
        .map(|(name, code)| (name, imports(name, code, &known)))
        .collect();
    let mut pairs = Vec::new();
    for (name, used) in &graph {
        for other in used {
            if graph.get(other).is_some_and(|back| back.contains(*name)) && *name < other {
                pairs.push(format!("{name} <-> {other}"));
            }
        }
    }
    assert!(
        pairs.is_empty(),
        "modules that import each other: {pairs:?}"
    );
    // The check sees imports at all: the runner uses the providers, and
    // the table its rows.
    assert!(graph[&"run".to_owned()].contains("providers"));
    assert!(graph[&"providers".to_owned()].contains("providers::cloudflare"));
}

#[test]
fn every_provider_has_its_own_module() {
    for provider in Provider::ALL {
        let file = source_dir().join(format!("providers/{}.rs", provider.name()));
        let code = std::fs::read_to_string(&file)
            .unwrap_or_else(|error| panic!("{}: {error}", file.display()));
        assert!(
            code.contains(&format!("name: \"{}\"", provider.name())),
            "{} holds no row named {provider}",
            file.display()
        );
        assert!(code.contains("impl Cdn for"), "{}", file.display());
    }
}
