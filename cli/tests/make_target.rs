//! `make launcher` (what the cluster tests and `make bench-purge` run) lets
//! cargo decide what is stale: a binary newer than every file make could
//! list is still rebuilt when, say, only a purge module changed. A target
//! whose prerequisites were `launcher/src/*.rs` ran a stale program after a
//! change to a module of the purge (then `launcher/src/purge/*.rs`).

use std::path::Path;
use std::process::Command;

#[test]
fn make_asks_cargo_even_when_the_binary_is_newer_than_every_source() {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    // A binary newer than every source: make alone would call it up to date.
    let binary = dir.path().join("cache-buster");
    std::fs::write(&binary, "").unwrap();
    let output = Command::new("make")
        .current_dir(&repository)
        .args(["--dry-run", "--no-print-directory"])
        .arg(format!("LAUNCHER={}", binary.display()))
        .arg(&binary)
        .env("CARGO", "cargo")
        .output()
        .expect("make runs");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        printed.contains("cargo build --locked --workspace --profile tools --bin cache-buster"),
        "make did not ask cargo: {printed:?}"
    );
}
