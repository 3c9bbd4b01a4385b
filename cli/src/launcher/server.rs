//! `/healthz` (the process answers), `/readyz` (its watches run, and its
//! role: leader or standby) and `/metrics` over HTTP.

use crate::launcher::health::Watches;
use crate::launcher::leader::Leadership;
use crate::launcher::metrics::render;
use axum::Router;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::sync::Arc;

pub fn router(
    registry: Arc<Registry>,
    watches: Arc<Watches>,
    leadership: Arc<Leadership>,
) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let watches = Arc::clone(&watches);
                let leadership = Arc::clone(&leadership);
                async move {
                    match watches.readiness() {
                        // Both roles are ready: a standby's caches are warm.
                        Ok(()) => (
                            StatusCode::OK,
                            format!("ok: {}\n", leadership.role().name()),
                        ),
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
