//! `cache-buster`, the project's one program (SPEC §4): the launcher, and
//! the companion Job's `wait-rollout` and `purge`. Each subcommand is a
//! module of the library; this only dispatches.

use cache_buster_cli::{launcher, purge, wait_rollout};
use clap::Parser;

/// The project's one program (SPEC §4): the launcher, and the companion
/// Job's two commands.
#[derive(Parser)]
#[command(
    name = "cache-buster",
    version,
    about = "Purges a site's CDN cache after each rollout: the launcher, and the companion Job's commands"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Create each stamped cache-buster Job exactly once, and report its outcome
    Launcher(launcher::run::LauncherArgs),
    /// The Job's init container: wait until this image hash is rolled out
    WaitRollout(wait_rollout::WaitRolloutArgs),
    /// The Job's container: purge the CDN, write the outcome
    Purge(Box<purge::PurgeArgs>),
}
#[tokio::main]
async fn main() -> std::process::ExitCode {
    match Cli::parse().command {
        Command::Launcher(args) => launcher::run::launch(args).await,
        Command::WaitRollout(args) => wait_rollout::command(args).await,
        Command::Purge(args) => purge::command(*args).await,
    }
}
