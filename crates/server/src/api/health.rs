//! `/healthz` (the process answers) and `/readyz` (it can reach its database).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::api::AppState;

pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub(crate) async fn readyz(State(b): State<AppState>) -> (StatusCode, Json<Value>) {
    match b.store.audit_size().await {
        Ok(n) => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "audit_events": n, "roles": b.roles().len() })),
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
