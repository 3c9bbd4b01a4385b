//! The real policy modules, through the kwrun binary: what `make` builds
//! (policy.wasm, annotated-policy.wasm) and what users and CI run.
//! These need the built modules, so plain `cargo test` skips them; `make
//! wasm-tests` builds the modules and runs them.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NEEDS_MODULES: &str = "needs policy.wasm and annotated-policy.wasm: run `make wasm-tests`";

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn module(name: &str) -> PathBuf {
    let path = repository().join(name);
    assert!(
        path.exists(),
        "{} is missing: {NEEDS_MODULES}",
        path.display()
    );
    path
}

fn kwrun(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kwrun"))
        .args(args)
        .output()
        .expect("kwrun runs")
}

fn stdout_json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "kwrun failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("kwrun prints JSON")
}

fn fixture(name: &str) -> String {
    repository()
        .join("e2e-tests/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
#[ignore = "needs policy.wasm and annotated-policy.wasm: run `make wasm-tests`"]
fn the_annotated_module_carries_the_metadata_where_kwctl_puts_it() {
    let annotated = module("annotated-policy.wasm");
    let embedded = stdout_json(&kwrun(&["inspect", text(&annotated)]));
    let source: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repository().join("policy-metadata.yml")).unwrap(),
    )
    .unwrap();

    assert_eq!(embedded["protocolVersion"], "v1");
    assert_eq!(embedded["rules"], source["rules"]);
    assert_eq!(embedded["mutating"], source["mutating"]);
    assert_eq!(embedded["backgroundAudit"], source["backgroundAudit"]);
    assert_eq!(embedded["executionMode"], source["executionMode"]);
    let annotations = embedded["annotations"].as_object().unwrap();
    for (key, value) in source["annotations"].as_object().unwrap() {
        assert_eq!(annotations.get(key), Some(value), "{key}");
    }
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    assert_eq!(annotations["io.kubewarden.policy.usage"], readme.as_str());
    assert!(annotations.contains_key("io.kubewarden.kwctl"));
}

#[test]
#[ignore = "needs policy.wasm and annotated-policy.wasm: run `make wasm-tests`"]
fn annotating_changes_nothing_the_policy_does() {
    let plain = module("policy.wasm");
    let annotated = module("annotated-policy.wasm");
    for name in [
        "create-labelled.json",
        "update-image-changed.json",
        "create-bad-url.json",
        "create-unlabelled.json",
    ] {
        let request = fixture(name);
        let from_plain = stdout_json(&kwrun(&["run", "-r", &request, text(&plain)]));
        let from_annotated = stdout_json(&kwrun(&["run", "-r", &request, text(&annotated)]));
        assert_eq!(from_plain, from_annotated, "{name}");
    }
    let unannotated = kwrun(&["inspect", text(&plain)]);
    assert!(!unannotated.status.success());
    assert!(String::from_utf8_lossy(&unannotated.stderr).contains("carries no metadata"));
}
