//! The GitHub workflows are thin and say what the docs say: every step runs a
//! make target that exists, every action is pinned by commit SHA with its
//! version in a comment, docs/development.md names each workflow's targets,
//! and the README's compatibility table names the versions the workflow
//! tests (scripts/tools.versions). The schema and zizmor checks are
//! `make lint-workflows`.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn repository_file(path: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|error| panic!("{}: {error}", full.display()))
}

const WORKFLOWS: [&str; 2] = ["test.yml", "release.yml"];

fn workflow(name: &str) -> Value {
    serde_yaml::from_str(&repository_file(&format!(".github/workflows/{name}")))
        .unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn steps(name: &str) -> Vec<Value> {
    workflow(name)["jobs"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|job| job["steps"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// The make targets a workflow's `run:` steps call.
fn make_targets(workflow: &str) -> BTreeSet<String> {
    steps(workflow)
        .iter()
        .filter_map(|step| step["run"].as_str())
        .map(|run| {
            let target = run
                .trim()
                .strip_prefix("make ")
                .unwrap_or_else(|| panic!("{workflow}: a step runs `{run}`, not one make target"));
            assert!(
                !target.contains(' ') && !target.contains('\n'),
                "{workflow}: `{run}` is more than one make target"
            );
            target.to_owned()
        })
        .collect()
}

fn pin(name: &str) -> String {
    repository_file("scripts/tools.versions")
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")).map(str::to_owned))
        .unwrap_or_else(|| panic!("scripts/tools.versions has no {name}"))
}

#[test]
fn every_step_is_a_make_target_of_the_makefile() {
    let makefile = repository_file("Makefile");
    for workflow in WORKFLOWS {
        let targets = make_targets(workflow);
        assert!(!targets.is_empty(), "{workflow} runs no make target");
        for target in targets {
            let rule = format!("\n{target}:");
            assert!(
                makefile.contains(&rule),
                "{workflow}: the Makefile has no target {target}"
            );
        }
    }
}

#[test]
fn every_action_is_pinned_by_commit_sha_with_its_version() {
    for workflow in WORKFLOWS {
        let text = repository_file(&format!(".github/workflows/{workflow}"));
        for line in text
            .lines()
            .filter(|line| line.trim_start().starts_with("- uses:"))
        {
            let reference = line
                .split_once("uses:")
                .map(|(_, r)| r.trim())
                .unwrap_or_default();
            if reference.starts_with("./") {
                continue;
            }
            let (action, rest) = reference
                .split_once('@')
                .unwrap_or_else(|| panic!("{line}"));
            let (sha, comment) = rest.split_once(" # v").unwrap_or_else(|| {
                panic!("{workflow}: {action} has no `# v<version>` comment after its SHA")
            });
            assert!(
                sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
                "{workflow}: {action} is pinned by {sha}, not a full commit SHA"
            );
            assert!(comment.starts_with(|c: char| c.is_ascii_digit()), "{line}");
        }
    }
}

#[test]
fn development_md_names_each_workflows_targets() {
    let docs = repository_file("docs/development.md");
    for workflow in WORKFLOWS {
        let row = docs
            .lines()
            .find(|line| line.starts_with(&format!("| `{workflow}` |")))
            .unwrap_or_else(|| panic!("docs/development.md has no row for {workflow}"));
        for target in make_targets(workflow) {
            assert!(
                row.contains(&target),
                "docs/development.md's {workflow} row omits {target}"
            );
        }
    }
}

#[test]
fn the_cluster_tests_run_on_the_oldest_and_newest_kubernetes_the_readme_names() {
    let test = repository_file(".github/workflows/test.yml");
    assert!(
        test.contains("kubernetes: [oldest, newest]"),
        "the cluster job's matrix"
    );
    let readme = repository_file("README.md");
    let row = readme
        .lines()
        .find(|line| line.starts_with("| Kubernetes |"))
        .expect("the README's compatibility table has a Kubernetes row");
    for version in [pin("KUBERNETES_OLDEST"), pin("KUBERNETES_NEWEST")] {
        assert!(
            row.contains(&version),
            "README's Kubernetes row omits {version}: {row}"
        );
    }
    let kubewarden = readme
        .lines()
        .find(|line| line.starts_with("| Kubewarden |"))
        .expect("the README's compatibility table has a Kubewarden row");
    assert!(
        kubewarden.contains(&pin("KUBEWARDEN_VERSION")),
        "{kubewarden}"
    );
    let docs = repository_file("docs/development.md");
    for version in [pin("KUBERNETES_OLDEST"), pin("KUBERNETES_NEWEST")] {
        assert!(
            docs.contains(&version),
            "docs/development.md omits {version}"
        );
    }
}

#[test]
fn every_job_has_its_own_least_permissions() {
    for file in WORKFLOWS {
        let parsed = workflow(file);
        assert_eq!(
            parsed["permissions"],
            serde_json::json!({}),
            "{file}: top-level permissions"
        );
        for (name, job) in parsed["jobs"].as_object().unwrap() {
            let permissions = job["permissions"]
                .as_object()
                .unwrap_or_else(|| panic!("{file}: job {name} states no permissions"));
            let writes: Vec<&String> = permissions
                .iter()
                .filter(|(_, v)| *v == "write")
                .map(|(k, _)| k)
                .collect();
            if file == "test.yml" {
                assert!(writes.is_empty(), "{file}: job {name} may write {writes:?}");
            }
        }
    }
}
