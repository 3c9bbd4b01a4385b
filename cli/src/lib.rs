//! `cache-buster`, the project's one program (SPEC §4), one module per
//! subcommand: the launcher, which creates each companion Job the policy
//! stamps exactly once (SPEC §8), and the Job's two commands, `wait-rollout`
//! and `purge`.

pub mod launcher;
pub mod purge;
pub mod wait_rollout;

#[cfg(test)]
#[path = "../../src/readme.rs"]
mod readme;

/// Shared with the API tests in tests/.
#[cfg(test)]
#[path = "../tests/support/mod.rs"]
mod test_support;

/// The exit code the Job's podFailurePolicy fails the Job at once on.
pub fn final_failure() -> std::process::ExitCode {
    std::process::ExitCode::from(
        u8::try_from(cache_buster::job::FINAL_FAILURE_EXIT_CODE).unwrap_or(1),
    )
}
