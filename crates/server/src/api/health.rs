//! `/healthz` (the process answers), `/readyz` (it can reach its database, and whether an alert
//! channel is failing) and `/metrics` (OpenMetrics text). None of them needs a token, and none
//! says anything secret.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::api::{ApiError, AppState};
use crate::metrics;

pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready while the database answers. A failing alert channel makes it `degraded`, still 200: the
/// broker serves grants without its alerts, and a load balancer must not take it out for that.
pub(crate) async fn readyz(State(b): State<AppState>) -> (StatusCode, Json<Value>) {
    let checked = async { Ok((b.store.audit_size().await?, b.failing_channels().await?)) };
    let res: Result<_, crate::broker::BrokerError> = checked.await;
    match res {
        Ok((n, failing)) if failing.is_empty() => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "audit_events": n, "roles": b.roles().len() })),
        ),
        Ok((n, failing)) => (
            StatusCode::OK,
            Json(json!({
                "status": "degraded",
                "failing_channels": failing,
                "audit_events": n,
                "roles": b.roles().len(),
            })),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "reason": "the database cannot be read" })),
            )
        }
    }
}

pub(crate) async fn metrics(State(b): State<AppState>) -> Result<Response, ApiError> {
    let snapshot = b.metrics_snapshot().await?;
    let body = metrics::encode(&b.metrics, &snapshot).map_err(|e| ApiError::internal(&e))?;
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response())
}
