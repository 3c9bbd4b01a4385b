//! The purge's layout (docs/development.md, "Adding a provider"): one
//! module per provider, named after it. Circles of modules are ruled out
//! in every crate by the workspace's tests/layout.rs.

use cache_buster_purge::Provider;
use std::path::Path;

fn source_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))
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
