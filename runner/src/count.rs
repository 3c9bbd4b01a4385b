//! `kwrun count`: one request evaluated `1 + N` times on one instance, the
//! first apart, so that an instruction counter (callgrind) counts the `N`
//! others alone. Compiling the module, instantiating it and the first
//! evaluation's one-time work (the guest's heap growing, lazy statics) stay
//! out of the count: what is left is the work of one evaluation, the same for
//! every module, and repeatable where timings are not.
//!
//! ```text
//! valgrind --tool=callgrind --collect-atstart=no \
//!   --toggle-collect='*counted_evaluations*' kwrun count -n 10 -r req.json policy.wasm
//! ```

use crate::host::{Limits, LoadedPolicy, Policy};
use crate::request::{AdmissionRequest, validate_payload};
use anyhow::{Result, bail};
use kubewarden_policy_sdk::response::ValidationResponse;
use serde_json::Value;

/// What the evaluations answered, checked alike for the first and the last.
pub fn count(
    policy_uri: &str,
    request: &AdmissionRequest,
    settings: &Value,
    limits: Limits,
    evaluations: usize,
) -> Result<String> {
    let policy = LoadedPolicy::load(policy_uri)?.instantiate(limits)?;
    policy.protocol_version()?;
    let answer = policy.validate_settings(settings);
    if !answer.valid {
        bail!(
            "provided settings are not valid: {:?}",
            answer.message.unwrap_or_default()
        );
    }
    let payload = validate_payload(request, settings)?;
    let first = policy.call("validate", &payload)?;
    let last = counted_evaluations(&policy, &payload, evaluations)?;
    if last.as_ref().is_some_and(|last| *last != first) {
        bail!("the policy answered the same request differently: it is not deterministic");
    }
    outcome(&first)
}

/// The evaluations callgrind counts (`--toggle-collect` names this function):
/// never inlined, so that its name stays in the program.
#[inline(never)]
pub fn counted_evaluations(
    policy: &Policy,
    payload: &[u8],
    evaluations: usize,
) -> Result<Option<Vec<u8>>> {
    let mut last = None;
    for _ in 0..evaluations {
        last = Some(std::hint::black_box(policy.call("validate", payload)?));
    }
    Ok(last)
}

fn outcome(answer: &[u8]) -> Result<String> {
    let response: ValidationResponse = serde_json::from_slice(answer)?;
    Ok(
        match (response.accepted, response.mutated_object.is_some()) {
            (true, true) => "accepted with a mutation",
            (true, false) => "accepted without mutation",
            (false, _) => "rejected",
        }
        .to_owned(),
    )
}
