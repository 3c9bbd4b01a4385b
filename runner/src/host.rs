//! The waPC host: wasmtime through wapc + wasmtime-provider, as in
//! policy-server, with an evaluation deadline (epoch interruption) and a cap
//! on the guest's linear memory.

use crate::request::{AdmissionRequest, validate_payload};
use crate::response::AdmissionResponse;
use anyhow::{Context, Result, anyhow, bail};
use kubewarden_policy_sdk::response::ValidationResponse;
use kubewarden_policy_sdk::settings::SettingsValidationResponse;
use serde_json::Value;
use std::error::Error;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use wapc::WapcHost;
use wasmtime_provider::wasmtime::{Config, Engine, Module};
use wasmtime_provider::{EpochDeadlines, ResourceLimits, WasmtimeEngineProviderBuilder};

/// How often the engine's epoch advances; deadlines are counted in ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);
const WASM_MAGIC: &[u8] = b"\0asm";

/// Bounds on one evaluation, like policy-server's `timeoutEvalSeconds` and
/// its memory limit.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub max_memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(10),
            max_memory_bytes: 256 * 1024 * 1024,
        }
    }
}

/// A compiled policy module, ready to be instantiated.
pub struct LoadedPolicy {
    engine: Engine,
    module: Module,
    pub load_time: Duration,
}

/// One instantiated policy (one wasmtime Store).
pub struct Policy {
    host: WapcHost,
}

impl LoadedPolicy {
    /// Reads and compiles `uri`: a path or a `file://` URI.
    pub fn load(uri: &str) -> Result<Self> {
        let path = uri.strip_prefix("file://").unwrap_or(uri);
        if uri.contains("://") && !uri.starts_with("file://") {
            bail!(
                "cannot load policy {uri}: kwrun runs local policies only (a path or a file:// URI)"
            );
        }
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read policy file {path}"))?;
        Self::from_bytes(&bytes, Path::new(path))
    }

    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        if !bytes.starts_with(WASM_MAGIC) {
            bail!("{} is not a WebAssembly module", path.display());
        }
        let engine = shared_engine()?;
        let started = Instant::now();
        let module = Module::new(&engine, bytes)
            .map_err(|error| anyhow!("cannot compile {}: {error}", path.display()))?;
        let load_time = started.elapsed();
        let exports: Vec<&str> = module.exports().map(|export| export.name()).collect();
        for required in ["wapc_init", "__guest_call"] {
            if !exports.contains(&required) {
                bail!(
                    "{} is not a waPC policy: it does not export {required} (exports: {})",
                    path.display(),
                    exports.join(", ")
                );
            }
        }
        Ok(LoadedPolicy {
            engine,
            module,
            load_time,
        })
    }

    /// Instantiates the module and runs its `wapc_init`.
    pub fn instantiate(&self, limits: Limits) -> Result<Policy> {
        let ticks = limits
            .timeout
            .as_millis()
            .div_ceil(EPOCH_TICK.as_millis())
            .max(1) as u64;
        let provider = WasmtimeEngineProviderBuilder::new()
            .engine(self.engine.clone())
            .module(self.module.clone())
            .enable_epoch_interruptions(EpochDeadlines {
                wapc_init: ticks,
                wapc_func: ticks,
            })
            .enable_resource_limits(ResourceLimits {
                max_memory_size: Some(limits.max_memory_bytes),
                max_table_elements: Some(100_000),
            })
            .build()
            .map_err(|error| anyhow!("cannot instantiate the policy: {error}"))?;
        let host = WapcHost::new(Box::new(provider), Some(Box::new(host_callback)))
            .map_err(|error| anyhow!("cannot initialise the policy (wapc_init): {error}"))?;
        Ok(Policy { host })
    }
}

/// One engine for the process (its configuration never varies), whose epoch
/// a daemon thread advances every tick.
fn shared_engine() -> Result<Engine> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config)
            .map_err(|error| format!("cannot create the wasmtime engine: {error}"))?;
        let ticking = engine.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                ticking.increment_epoch();
            }
        });
        Ok(engine)
    });
    engine.clone().map_err(|error| anyhow!(error))
}

/// The policy's logs go to stderr; every other host capability is refused,
/// as for a policy run without capabilities.
fn host_callback(
    _id: u64,
    binding: &str,
    namespace: &str,
    operation: &str,
    payload: &[u8],
) -> Result<Vec<u8>, Box<dyn Error + Send + Sync>> {
    match (binding, namespace, operation) {
        ("kubewarden", "tracing", "log") => {
            eprintln!("{}", format_log(payload));
            Ok(Vec::new())
        }
        _ => Err(format!(
            "host capability {binding}/{namespace}/{operation} is not available: kwrun offers the policy only logging"
        )
        .into()),
    }
}

/// `LEVEL message key=value …` from the SDK's JSON log event.
pub fn format_log(payload: &[u8]) -> String {
    let Ok(Value::Object(mut event)) = serde_json::from_slice::<Value>(payload) else {
        return format!("policy log: {}", String::from_utf8_lossy(payload));
    };
    let text = |value: Option<Value>| match value {
        Some(Value::String(text)) => text,
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let level = text(event.remove("level")).to_uppercase();
    let message = text(event.remove("message"));
    let fields: Vec<String> = event
        .into_iter()
        .map(|(key, value)| format!("{key}={}", text(Some(value))))
        .collect();
    format!("{level:5} {message} {}", fields.join(" "))
        .trim_end()
        .to_owned()
}

impl Policy {
    pub fn call(&self, operation: &str, payload: &[u8]) -> Result<Vec<u8>> {
        self.host
            .call(operation, payload)
            .map_err(|error| anyhow!("{error}"))
    }

    /// The protocol the policy speaks; kwctl and policy-server know `v1`.
    pub fn protocol_version(&self) -> Result<String> {
        let answer = self
            .call("protocol_version", &[])
            .context("cannot call protocol_version: is this a Kubewarden policy?")?;
        let version: String = serde_json::from_slice(&answer).with_context(|| {
            format!(
                "protocol_version answered {:?}",
                String::from_utf8_lossy(&answer)
            )
        })?;
        if version != "v1" {
            bail!("unsupported policy protocol version {version:?}: expected \"v1\"");
        }
        Ok(version)
    }

    pub fn validate_settings(&self, settings: &Value) -> SettingsValidationResponse {
        let payload = settings.to_string();
        match self.call("validate_settings", payload.as_bytes()) {
            Ok(answer) => {
                serde_json::from_slice(&answer).unwrap_or_else(|error| SettingsValidationResponse {
                    valid: false,
                    message: Some(format!("error: {error:?}")),
                })
            }
            Err(error) => SettingsValidationResponse {
                valid: false,
                message: Some(format!(
                    "Error invoking settings validation callback: {error:?}"
                )),
            },
        }
    }

    /// One evaluation, answered as policy-server answers the API server.
    pub fn validate(&self, request: &AdmissionRequest, settings: &Value) -> AdmissionResponse {
        let payload = match validate_payload(request, settings) {
            Ok(payload) => payload,
            Err(error) => return AdmissionResponse::internal_server_error(&request.uid, error),
        };
        match self.call("validate", &payload) {
            Ok(answer) => match serde_json::from_slice::<ValidationResponse>(&answer) {
                Ok(policy) => {
                    AdmissionResponse::from_policy(&request.uid, request.object.as_ref(), &policy)
                }
                Err(error) => AdmissionResponse::internal_server_error(
                    &request.uid,
                    format!("cannot decode the policy's response: {error}"),
                ),
            },
            Err(error) => AdmissionResponse::internal_server_error(&request.uid, error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_read_like_lines() {
        let line = format_log(br#"{"level":"info","message":"mutating Deployment","policy":"cache-buster","name":"shop"}"#);
        assert_eq!(
            line,
            "INFO  mutating Deployment name=shop policy=cache-buster"
        );
        assert_eq!(format_log(b"not json"), "policy log: not json");
    }

    #[test]
    fn other_capabilities_are_refused() {
        let error =
            host_callback(0, "kubewarden", "kubernetes", "get_resource", b"{}").unwrap_err();
        assert_eq!(
            error.to_string(),
            "host capability kubewarden/kubernetes/get_resource is not available: kwrun offers the policy only logging"
        );
        assert_eq!(
            host_callback(0, "kubewarden", "tracing", "log", b"{}").unwrap(),
            Vec::<u8>::new()
        );
    }

    #[test]
    fn non_wasm_files_are_refused() {
        let error = LoadedPolicy::from_bytes(b"#!/bin/sh", Path::new("x.wasm"))
            .err()
            .unwrap();
        assert_eq!(error.to_string(), "x.wasm is not a WebAssembly module");
    }

    #[test]
    fn modules_without_wapc_exports_are_refused() {
        // An empty module: `(module)`.
        let empty = b"\0asm\x01\0\0\0";
        let error = LoadedPolicy::from_bytes(empty, Path::new("empty.wasm"))
            .err()
            .unwrap();
        assert!(
            error
                .to_string()
                .starts_with("empty.wasm is not a waPC policy: it does not export wapc_init"),
            "{error}"
        );
    }

    #[test]
    fn remote_policies_are_refused() {
        let error = LoadedPolicy::load("registry://ghcr.io/x/y:v1")
            .err()
            .unwrap();
        assert!(error.to_string().contains("kwrun runs local policies only"));
        let error = LoadedPolicy::load("file:///nonexistent/policy.wasm")
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "cannot read policy file /nonexistent/policy.wasm"
        );
    }
}

/// Misbehaving waPC guests, in WAT: the host must turn each into an answer.
#[cfg(test)]
mod guest_failures {
    use super::*;
    use crate::request::parse_request;
    use serde_json::json;

    fn guest(call_body: &str) -> LoadedPolicy {
        let wat = format!(
            r#"(module
                 (memory (export "memory") 1)
                 (func (export "wapc_init"))
                 (func (export "__guest_call") (param i32 i32) (result i32) {call_body}))"#
        );
        LoadedPolicy::from_bytes(&wat::parse_str(wat).unwrap(), Path::new("guest.wasm")).unwrap()
    }

    fn request() -> AdmissionRequest {
        parse_request(json!({
            "uid": "u-1",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "operation": "CREATE",
            "userInfo": {},
            "object": {}
        }))
        .unwrap()
    }

    fn limits(timeout_ms: u64, memory_mib: usize) -> Limits {
        Limits {
            timeout: Duration::from_millis(timeout_ms),
            max_memory_bytes: memory_mib << 20,
        }
    }

    #[test]
    fn a_trap_is_an_internal_server_error() {
        let policy = guest("unreachable").instantiate(Limits::default()).unwrap();
        let response = policy.validate(&request(), &json!({}));
        assert!(!response.allowed);
        let status = response.status.unwrap();
        assert_eq!(status.code, Some(500));
        assert!(
            status
                .message
                .unwrap()
                .starts_with("internal server error: ")
        );
    }

    #[test]
    fn an_endless_evaluation_is_interrupted_at_the_deadline() {
        let policy = guest("(loop (br 0)) i32.const 1")
            .instantiate(limits(200, 16))
            .unwrap();
        let started = Instant::now();
        let response = policy.validate(&request(), &json!({}));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        let status = response.status.unwrap();
        assert_eq!(status.code, Some(500));
        assert!(
            status
                .message
                .unwrap()
                .contains("execution deadline exceeded")
        );
    }

    #[test]
    fn memory_beyond_the_cap_cannot_be_had() {
        // Grows by 512 pages (32 MiB); traps when the host refuses (-1).
        let body =
            "i32.const 512 memory.grow i32.const -1 i32.eq (if (then unreachable)) i32.const 1";
        let capped = guest(body).instantiate(limits(1000, 16)).unwrap();
        let response = capped.validate(&request(), &json!({}));
        assert_eq!(response.status.unwrap().code, Some(500));
        // With room, the same guest gets past the growth (and then answers nothing readable).
        let roomy = guest(body).instantiate(limits(1000, 64)).unwrap();
        let message = roomy
            .validate(&request(), &json!({}))
            .status
            .unwrap()
            .message
            .unwrap();
        assert!(!message.contains("unreachable"), "{message}");
    }

    #[test]
    fn a_failed_settings_call_is_an_invalid_answer() {
        let policy = guest("unreachable").instantiate(Limits::default()).unwrap();
        let answer = policy.validate_settings(&json!({}));
        assert!(!answer.valid);
        assert!(
            answer
                .message
                .unwrap()
                .starts_with("Error invoking settings validation callback")
        );
    }
}
