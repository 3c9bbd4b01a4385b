//! Self-hosted caches for provider `http`: several cache endpoints behind
//! one Service, each a plain-HTTP server on its own loopback address and
//! the same port (as a Service's endpoints are), that answer `PURGE` and
//! `BAN` as Varnish's VCL examples do, record what they get, and refuse on
//! demand (405, as Varnish answers a purge it does not allow).
//!
//! Without a control plane (a clean clone), [`EndpointsApi`] serves the
//! Service and its EndpointSlices as the API server does, over plain HTTP
//! with a kubeconfig, so the real purge program reads them through kube-rs.
//! Where the control plane runs, the cluster scenarios use the real one.

use crate::recorded::Recorded;
use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

#[derive(Default)]
struct Shared {
    requests: Vec<Recorded>,
    /// The endpoints that refuse every purge (405).
    refusing: BTreeSet<String>,
}

/// The requests recorded so far that `keep` keeps, in order.
fn recorded(shared: &Mutex<Shared>, keep: impl Fn(&Recorded) -> bool) -> Vec<Recorded> {
    shared
        .lock()
        .map(|shared| {
            shared
                .requests
                .iter()
                .filter(|r| keep(r))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `answer` for each request to `listener`, until the task is aborted.
pub(crate) fn serve<F>(listener: TcpListener, answer: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(Recorded, SocketAddr) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let local = listener.local_addr().ok();
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            let Some(local) = local else { return };
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let answer = answer.clone();
                    async move {
                        let recorded = Recorded::of(request).await?;
                        Ok::<_, hyper::Error>(answer(recorded, local))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

pub(crate) fn respond(
    status: StatusCode,
    content_type: &str,
    body: String,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

/// The caches: one server per address, all on one port.
pub struct Caches {
    pub endpoints: Vec<SocketAddr>,
    shared: Arc<Mutex<Shared>>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

/// An address of this host that is not loopback (the API server refuses
/// loopback endpoints in an EndpointSlice): the one its route to a
/// TEST-NET address leaves from. A UDP connect sends nothing. None on a
/// host with no route at all.
pub fn host_address() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let address = socket.local_addr().ok()?.ip();
    (!address.is_loopback() && !address.is_unspecified()).then_some(address)
}

impl Caches {
    /// A cache on each of `addresses` (loopback ones: 127.0.0.0/8 is all
    /// on `lo`), on a port free on the first.
    pub async fn start(addresses: &[IpAddr]) -> Result<Caches> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let mut endpoints = Vec::new();
        let mut servers = Vec::new();
        let mut port = 0;
        for address in addresses {
            let listener = TcpListener::bind(SocketAddr::new(*address, port))
                .await
                .with_context(|| format!("a cache cannot listen on {address}:{port}"))?;
            let local = listener.local_addr()?;
            port = local.port();
            endpoints.push(local);
            let state = shared.clone();
            servers.push(serve(listener, move |request, local| {
                cache_answer(&state, request, local)
            }));
        }
        Ok(Caches {
            endpoints,
            shared,
            servers,
        })
    }

    /// The cache at `endpoint` refuses every purge from now on.
    pub fn refuse(&self, endpoint: SocketAddr) {
        if let Ok(mut shared) = self.shared.lock() {
            shared.refusing.insert(endpoint.to_string());
        }
    }

    /// Every cache accepts purges again.
    pub fn refuse_none(&self) {
        if let Ok(mut shared) = self.shared.lock() {
            shared.refusing.clear();
        }
    }

    /// What the cache at `endpoint` was sent, in order (the `host` field is
    /// the request's `Host` header, which says which site to purge).
    pub fn requests(&self, endpoint: SocketAddr) -> Vec<Recorded> {
        let endpoint = endpoint.to_string();
        recorded(&self.shared, |request| {
            request.header("x-cache-endpoint") == Some(endpoint.as_str())
        })
    }
}

impl Drop for Caches {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

/// As Varnish's VCL answers a purge: `200 Purged.`, or for the tags
/// (xkey) `200 Invalidated N objects`; `405 Not allowed.` when refusing.
fn cache_answer(
    shared: &Mutex<Shared>,
    mut request: Recorded,
    local: SocketAddr,
) -> Response<Full<Bytes>> {
    // Which endpoint got it, for the test to ask by endpoint.
    request
        .headers
        .push(("x-cache-endpoint".to_owned(), local.to_string()));
    let refusing = shared
        .lock()
        .map(|mut shared| {
            shared.requests.push(request.clone());
            shared.refusing.contains(&local.to_string())
        })
        .unwrap_or(false);
    if refusing || !matches!(request.method.as_str(), "PURGE" | "BAN") {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "Not allowed.".to_owned(),
        );
    }
    let tags = ["xkey", "surrogate-key"]
        .iter()
        .find_map(|name| request.header(name))
        .map(|keys| keys.split_whitespace().count());
    match tags {
        Some(count) => respond(
            StatusCode::OK,
            "text/plain",
            format!("Invalidated {count} objects"),
        ),
        None => respond(StatusCode::OK, "text/plain", "Purged.".to_owned()),
    }
}

/// The Service and EndpointSlices API of one namespace, as the API server
/// serves them, for a Service `name` with the ports `http` (80) and `purge`
/// (the caches' port), whose slices list `ready` and `not_ready` endpoints.
pub struct EndpointsApi {
    pub kubeconfig: PathBuf,
    shared: Arc<Mutex<Shared>>,
    server: tokio::task::JoinHandle<()>,
}

impl EndpointsApi {
    pub async fn start(
        dir: &Path,
        namespace: &str,
        name: &str,
        ready: &[SocketAddr],
        not_ready: &[SocketAddr],
    ) -> Result<EndpointsApi> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let service = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"ports": [
                {"name": "http", "port": 80, "targetPort": 6081},
                {"name": "purge", "port": 6091, "targetPort": "purge"}
            ]}
        });
        let port = ready
            .iter()
            .chain(not_ready)
            .map(SocketAddr::port)
            .next()
            .unwrap_or(6091);
        let endpoint = |address: &SocketAddr, ready: bool| json!({"addresses": [address.ip().to_string()], "conditions": {"ready": ready, "serving": ready, "terminating": !ready}});
        let slices = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList",
            "metadata": {"resourceVersion": "4711"},
            "items": [{
                "metadata": {"name": format!("{name}-x7k2p"), "namespace": namespace,
                             "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 6081, "protocol": "TCP"},
                          {"name": "purge", "port": port, "protocol": "TCP"}],
                "endpoints": ready.iter().map(|a| endpoint(a, true))
                    .chain(not_ready.iter().map(|a| endpoint(a, false))).collect::<Vec<_>>()
            }]
        });
        let service_path = format!("/api/v1/namespaces/{namespace}/services/{name}");
        let slices_path =
            format!("/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices");
        let selector = format!("labelSelector=kubernetes.io%2Fservice-name%3D{name}");
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = shared.clone();
        let server = serve(listener, move |request, _| {
            if let Ok(mut shared) = state.lock() {
                shared.requests.push(request.clone());
            }
            let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
            let answer =
                |body: &Value| respond(StatusCode::OK, "application/json", body.to_string());
            match (request.method.as_str(), path) {
                ("GET", path) if path == service_path => answer(&service),
                ("GET", path) if path == slices_path && query.contains(&selector) => {
                    answer(&slices)
                }
                _ => respond(
                    StatusCode::NOT_FOUND,
                    "application/json",
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "NotFound", "code": 404,
                           "message": format!("{} {} not found", request.method, request.path)})
                    .to_string(),
                ),
            }
        });
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: http://{address}\n\
                 users:\n- name: test\n  user: {{}}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n\
                 current-context: test\n"
            ),
        )?;
        Ok(EndpointsApi {
            kubeconfig,
            shared,
            server,
        })
    }

    /// `METHOD path?query` of every request the API got.
    pub fn requests(&self) -> Vec<String> {
        recorded(&self.shared, |_| true)
            .iter()
            .map(|request| format!("{} {}", request.method, request.path))
            .collect()
    }
}

impl Drop for EndpointsApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}
