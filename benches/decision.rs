//! The native decision (`cache_buster::validate`, what the waPC call runs)
//! on the requests `make bench` also measures in Wasm through kwrun:
//! pass-through, stamping, no-op, a 1,000-container Deployment and a
//! `urls` annotation of about 250 KB (Kubernetes allows 256 KiB for all of
//! an object's annotations).

// The no-panic lints guard the policy itself; a test or benchmark may panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use std::hint::black_box;

fn fixture(name: &str) -> Value {
    let path = format!("{}/e2e-tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON")
}

fn payload(review: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"settings": {}, "request": review["request"]})).expect("payload")
}

/// The labelled CREATE with 1,000 containers (as `scripts/bench.sh` builds it).
pub fn thousand_containers() -> Value {
    let mut review = fixture("create-labelled.json");
    let containers: Vec<Value> = (0..1000)
        .map(
            |i| json!({"name": format!("c{i}"), "image": format!("ghcr.io/acme/part-{i}:1.0.{i}")}),
        )
        .collect();
    review["request"]["object"]["spec"]["template"]["spec"]["containers"] =
        Value::Array(containers);
    review
}

/// The labelled CREATE with 5,348 URLs in `cache-buster.io/urls` (as
/// `scripts/bench.sh` builds it).
pub fn urls_256k() -> Value {
    let mut review = fixture("create-labelled.json");
    let urls: Vec<String> = (0..5348)
        .map(|i| format!("https://shop.example.com/posts/{i}/index.html"))
        .collect();
    review["request"]["object"]["metadata"]["annotations"]["cache-buster.io/urls"] =
        Value::String(urls.join(" "));
    review
}

fn decision(c: &mut Criterion) {
    let cases = [
        // Names are the directories criterion writes to; scripts/bench.sh reads them.
        ("pass_through", fixture("create-unlabelled.json")),
        ("stamp", fixture("update-image-changed.json")),
        ("no_op", fixture("update-unchanged-image.json")),
        ("containers_1000", thousand_containers()),
        ("urls_256k", urls_256k()),
    ];
    for (name, review) in cases {
        let payload = payload(&review);
        c.bench_function(name, |b| {
            b.iter(|| cache_buster::validate(black_box(&payload)))
        });
    }
}

criterion_group!(benches, decision);
criterion_main!(benches);
