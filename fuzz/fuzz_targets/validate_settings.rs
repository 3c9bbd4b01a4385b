//! Arbitrary bytes into `validate_settings`: always an answer, and an
//! invalid answer always says why.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let answer = cache_buster::validate_settings(data).expect("validate_settings always answers");
    let response: serde_json::Value = serde_json::from_slice(&answer).expect("the answer is JSON");
    if response["valid"] == false {
        assert!(response["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
});
