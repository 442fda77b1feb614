//! `/v1/roles`: the roles in force, as loaded from the role files.

use axum::Json;
use axum::extract::{Path, State};
use breakglass_core::{DomainError, Role};
use serde_json::{Value, json};

use crate::api::{ApiError, AppState, audited};
use crate::broker::Caller;

pub(crate) fn view(r: &Role) -> Value {
    json!({
        "id": r.id, "title": r.title, "description": r.description, "owner": r.owner,
        "requesters": r.requesters, "approvers": r.approvers, "quorum": r.quorum,
        "default_duration": r.default_duration, "max_duration": r.max_duration,
        "request_ttl": r.request_ttl, "max_extensions": r.max_extensions,
        "require_incident": r.require_incident,
        "incident_pattern": r.incident_pattern.as_ref().map(|p| p.as_str()),
        "target": r.target, "hash": r.hash, "file": r.file,
    })
}

pub(crate) async fn list(State(b): State<AppState>, _caller: Caller) -> Json<Value> {
    Json(Value::Array(b.roles().iter().map(view).collect()))
}

pub(crate) async fn show(
    State(b): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    audited(&b, &caller, "role.show", async {
        let roles = b.roles();
        let r = roles.get(&id).ok_or_else(|| DomainError::UnknownRole {
            role: id.chars().take(80).collect(),
        })?;
        Ok(Json(view(r)))
    })
    .await
}
