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
pub(crate) async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    let checked = async {
        let size = app.store.audit_size().await?;
        let backlog = app.store.alert_backlog().await?;
        Ok((size, metrics::failing_channels(&backlog)))
    };
    let res: Result<_, breakglass_store::StoreError> = checked.await;
    let roles = app.catalog.roles().len();
    match res {
        Ok((n, failing)) if failing.is_empty() => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "audit_events": n, "roles": roles })),
        ),
        Ok((n, failing)) => (
            StatusCode::OK,
            Json(json!({
                "status": "degraded",
                "failing_channels": failing,
                "audit_events": n,
                "roles": roles,
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

pub(crate) async fn metrics(State(app): State<AppState>) -> Result<Response, ApiError> {
    let snapshot = metrics::snapshot(
        app.store.as_ref(),
        app.clock.as_ref(),
        &app.alerts.channel_names(),
    )
    .await?;
    let body = metrics::encode(&app.metrics, &snapshot).map_err(|e| ApiError::internal(&e))?;
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response())
}
