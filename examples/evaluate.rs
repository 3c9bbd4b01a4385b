//! Evaluates one admission request N times with the native decision
//! (`cache_buster::validate`, what the waPC call runs), for instruction
//! counts under callgrind (scripts/instructions.sh): the difference between
//! N and 1 evaluations, divided by N - 1, is the cost of one evaluation
//! without the program's start.
//!   cargo run --release --example evaluate -- REQUEST.json N

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: evaluate REQUEST.json N");
    let times: usize = args.next().map_or(1, |n| n.parse().expect("N"));
    let review: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("request file")).expect("JSON");
    let payload =
        serde_json::to_vec(&serde_json::json!({"settings": {}, "request": review["request"]}))
            .expect("payload");
    for _ in 0..times {
        black_box(cache_buster::validate(black_box(&payload))).expect("evaluation");
    }
}
