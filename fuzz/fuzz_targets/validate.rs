//! Arbitrary bytes into the waPC `validate` entry point: it must answer
//! (never panic, never error) with a ValidationResponse.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let answer = cache_buster::validate(data).expect("validate always answers");
    let response: serde_json::Value = serde_json::from_slice(&answer).expect("the answer is JSON");
    assert!(response["accepted"].is_boolean());
    if response["accepted"] == false {
        assert!(response["message"].as_str().is_some_and(|m| !m.is_empty()), "a rejection says why");
    }
});
