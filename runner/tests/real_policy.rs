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

/// A labelled CREATE from the e2e fixture, reshaped by `change`, written to a
/// temporary file for kwrun.
fn request_file(dir: &Path, name: &str, change: impl FnOnce(&mut Value)) -> PathBuf {
    let mut review: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("create-labelled.json")).unwrap())
            .unwrap();
    change(&mut review["request"]["object"]);
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec(&review).unwrap()).unwrap();
    path
}

/// Evaluates under a 64 MiB memory cap and a 2 s deadline, as a
/// policy-server with tight limits would.
fn evaluate_limited(request: &Path) -> Value {
    let policy = module("policy.wasm");
    let started = std::time::Instant::now();
    let output = kwrun(&[
        "run",
        "--max-memory-mib",
        "64",
        "--timeout-eval-seconds",
        "2",
        "-r",
        text(request),
        text(&policy),
    ]);
    let response = stdout_json(&output);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert_ne!(
        response["status"]["code"], 500,
        "the policy failed: {response}"
    );
    response
}

#[test]
#[ignore = "needs policy.wasm and annotated-policy.wasm: run `make wasm-tests`"]
fn a_3_mib_deployment_is_answered_within_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    // The API server refuses requests over 3 MiB; fill the object up to that.
    let request = request_file(dir.path(), "large.json", |object| {
        object["metadata"]["annotations"]["example.com/blob"] =
            "x".repeat(3 * 1024 * 1024 - 8 * 1024).into();
    });
    let size = std::fs::metadata(&request).unwrap().len();
    assert!(
        (3 * 1024 * 1024 - 8 * 1024..3 * 1024 * 1024).contains(&size),
        "{size} bytes"
    );
    let response = evaluate_limited(&request);
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
}

#[test]
#[ignore = "needs policy.wasm and annotated-policy.wasm: run `make wasm-tests`"]
fn a_deployment_with_1000_containers_is_answered_within_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let request = request_file(dir.path(), "wide.json", |object| {
        let containers: Vec<Value> = (0..1000)
            .map(|i| serde_json::json!({"name": format!("c{i}"), "image": format!("ghcr.io/acme/part-{i}:1.0.{i}")}))
            .collect();
        object["spec"]["template"]["spec"]["containers"] = Value::Array(containers);
    });
    let response = evaluate_limited(&request);
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
}

#[test]
#[ignore = "needs policy.wasm and annotated-policy.wasm: run `make wasm-tests`"]
fn too_little_memory_is_an_internal_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let request = request_file(dir.path(), "large.json", |object| {
        object["metadata"]["annotations"]["example.com/blob"] =
            "x".repeat(3 * 1024 * 1024 - 16 * 1024).into();
    });
    let policy = module("policy.wasm");
    let response = stdout_json(&kwrun(&[
        "run",
        "--max-memory-mib",
        "4",
        "-r",
        text(&request),
        text(&policy),
    ]));
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 500);
    assert!(
        response["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with("internal server error: ")
    );
}

/// `kwrun count`, which `make bench-official` runs under callgrind: each
/// request's outcome, said after the counted evaluations, as `run` answers.
#[test]
#[ignore = "needs policy.wasm and annotated-policy.wasm: run `make wasm-tests`"]
fn count_evaluates_the_request_and_says_what_it_answered() {
    let policy = module("policy.wasm");
    for (request, outcome) in [
        ("update-unchanged-image.json", "accepted without mutation"),
        ("update-image-changed.json", "accepted with a mutation"),
        ("create-bad-url.json", "rejected"),
    ] {
        let output = kwrun(&["count", "-n", "3", "-r", &fixture(request), text(&policy)]);
        assert!(
            output.status.success(),
            "{request}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            format!("3 evaluations counted, after a first one: {outcome}"),
            "{request}"
        );
    }
    let bad_settings = kwrun(&[
        "count",
        "--settings-json",
        r#"{"provider": "nope"}"#,
        "-r",
        &fixture("update-image-changed.json"),
        text(&policy),
    ]);
    assert!(!bad_settings.status.success());
    assert!(String::from_utf8_lossy(&bad_settings.stderr).contains("settings are not valid"));
}

/// Issue "the reconcile costs nothing": the module, with every provider
/// linked, stays within 1 MiB (what the policy-server downloads and
/// compiles for each policy).
#[test]
#[ignore = "needs policy.wasm and annotated-policy.wasm: run `make wasm-tests`"]
fn the_module_stays_within_one_mib() {
    let size = std::fs::metadata(module("policy.wasm")).unwrap().len();
    assert!(
        size <= 1024 * 1024,
        "policy.wasm is {size} bytes, over 1 MiB"
    );
}
