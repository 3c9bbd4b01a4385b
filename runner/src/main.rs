//! kwrun: evaluates a Kubewarden waPC policy locally, like `kwctl run`, on
//! the engine kwctl and policy-server use (wasmtime through waPC).

mod annotate;
mod bench;
mod count;
mod host;
mod request;
mod response;

use anyhow::{Result, anyhow};
use clap::{Args, Parser, Subcommand};
use host::{Limits, LoadedPolicy};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "kwrun",
    version,
    about = "Run Kubewarden waPC policies locally, like kwctl run"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate a policy against an admission request; prints the AdmissionResponse
    Run(RunArgs),
    /// Embed policy metadata into the module, like `kwctl annotate`
    Annotate {
        /// The metadata file (YAML)
        #[arg(short = 'm', long)]
        metadata_path: PathBuf,
        /// A file embedded as the policy's usage text (README)
        #[arg(short = 'u', long)]
        usage_path: Option<PathBuf>,
        /// Where to write the annotated module
        #[arg(short = 'o', long)]
        output_path: PathBuf,
        /// The policy module
        wasm_path: PathBuf,
    },
    /// Print the metadata embedded in a module, as JSON
    Inspect {
        /// The policy module
        wasm_path: PathBuf,
    },
    /// Measure a policy's evaluation of one request
    Bench {
        #[command(flatten)]
        run: RunArgs,
        /// Seconds of evaluations before measuring
        #[arg(long, default_value_t = 1.0)]
        warm_up_time: f64,
        /// Seconds of measurement per operation
        #[arg(long, default_value_t = 3.0)]
        measurement_time: f64,
        /// Most samples kept per operation
        #[arg(long, default_value_t = 1_000_000)]
        num_samples: usize,
        /// Print the figures as JSON
        #[arg(long)]
        json: bool,
    },
    /// Evaluate one request 1 + N times, the N apart, for an instruction
    /// counter: valgrind --tool=callgrind --collect-atstart=no
    /// --toggle-collect='*counted_evaluations*' kwrun count …
    Count {
        #[command(flatten)]
        run: RunArgs,
        /// Evaluations counted, after a first one that is not
        #[arg(short = 'n', long, default_value_t = 10)]
        evaluations: usize,
    },
}

#[derive(Args)]
struct RunArgs {
    /// The AdmissionRequest or AdmissionReview to evaluate (JSON; - for stdin)
    #[arg(short = 'r', long)]
    request_path: String,
    /// Policy settings as a JSON object
    #[arg(long, conflicts_with = "settings_path")]
    settings_json: Option<String>,
    /// File with the policy settings (JSON or YAML)
    #[arg(short = 's', long)]
    settings_path: Option<PathBuf>,
    /// Evaluation time limit, like policy-server's timeoutEvalSeconds (kwrun only)
    #[arg(long, default_value_t = 10)]
    timeout_eval_seconds: u64,
    /// Cap on the policy's linear memory, in MiB (kwrun only)
    #[arg(long, default_value_t = 256)]
    max_memory_mib: usize,
    /// The policy: a path or a file:// URI
    policy: String,
}

impl RunArgs {
    fn limits(&self) -> Limits {
        Limits {
            timeout: Duration::from_secs(self.timeout_eval_seconds.max(1)),
            max_memory_bytes: self.max_memory_mib.saturating_mul(1024 * 1024),
        }
    }

    fn settings(&self) -> Result<serde_json::Value> {
        request::read_settings(self.settings_json.as_deref(), self.settings_path.as_deref())
    }
}

fn run(args: &RunArgs) -> Result<()> {
    let request = request::read_request(&args.request_path)?;
    let settings = args.settings()?;
    let policy = LoadedPolicy::load(&args.policy)?.instantiate(args.limits())?;
    policy.protocol_version()?;
    let answer = policy.validate_settings(&settings);
    if !answer.valid {
        return Err(anyhow!(
            "Provided settings are not valid: {:?}",
            answer.message.unwrap_or_default()
        ));
    }
    let response = policy.validate(&request, &settings);
    println!("{}", serde_json::to_string(&response)?);
    Ok(())
}

fn inspect(wasm_path: &std::path::Path) -> Result<()> {
    let bytes = std::fs::read(wasm_path)
        .map_err(|error| anyhow!("cannot read {}: {error}", wasm_path.display()))?;
    match annotate::read_metadata_section(&bytes)? {
        Some(metadata) => println!("{}", serde_json::to_string_pretty(&metadata)?),
        None => {
            return Err(anyhow!(
                "{} carries no metadata: annotate it first",
                wasm_path.display()
            ));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Run(args) => run(args),
        Command::Annotate {
            metadata_path,
            usage_path,
            output_path,
            wasm_path,
        } => annotate::annotate(wasm_path, metadata_path, usage_path.as_deref(), output_path)
            .map(drop),
        Command::Inspect { wasm_path } => inspect(wasm_path),
        Command::Bench {
            run,
            warm_up_time,
            measurement_time,
            num_samples,
            json,
        } => (|| {
            let request = request::read_request(&run.request_path)?;
            let config = bench::BenchConfig {
                warm_up: Duration::from_secs_f64(warm_up_time.max(0.0)),
                measurement: Duration::from_secs_f64(measurement_time.max(0.0)),
                max_samples: (*num_samples).max(1),
            };
            let report = bench::bench(
                &run.policy,
                &run.request_path,
                &request,
                &run.settings()?,
                run.limits(),
                &config,
            )?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", bench::render(&report));
            }
            Ok(())
        })(),
        Command::Count { run, evaluations } => (|| {
            let request = request::read_request(&run.request_path)?;
            let outcome = count::count(
                &run.policy,
                &request,
                &run.settings()?,
                run.limits(),
                *evaluations,
            )?;
            println!("{evaluations} evaluations counted, after a first one: {outcome}");
            Ok(())
        })(),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The shape kwctl's errors have: "Error: <message>: <cause>".
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
