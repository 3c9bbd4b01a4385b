//! `/healthz` (the process answers), `/readyz` (its watches run) and
//! `/metrics` over HTTP.

use crate::health::Watches;
use crate::metrics::render;
use axum::Router;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::sync::Arc;

pub fn router(registry: Arc<Registry>, watches: Arc<Watches>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let watches = Arc::clone(&watches);
                async move {
                    match watches.readiness() {
                        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
                        Err(problems) => (StatusCode::SERVICE_UNAVAILABLE, format!("{problems}\n")),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let registry = Arc::clone(&registry);
                async move {
                    (
                        [(
                            CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        render(&registry),
                    )
                        .into_response()
                }
            }),
        )
}
