//! `/v1/roles`: the roles in force, as loaded from the role files.

use axum::Json;
use axum::extract::{Path, State};
use breakglass_core::{DomainError, Role};
use serde_json::{Value, json};

use crate::api::attestations as api_attestations;
use crate::api::{ApiError, AppState, audited};
use crate::governance::attestations;
use crate::signin::Caller;

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

pub(crate) async fn list(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        let roles = app.catalog.roles();
        // Owner attestation (issue 13, item 2): each role's `attestation` block.
        let attested = attestations::statuses(&app).await?;
        // Drill status: left out (and logged) if the store cannot say, rather than failing the list.
        let drills = crate::governance::drills::statuses(&app)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "could not read the roles' drill status");
                Default::default()
            });
        let list = roles
            .iter()
            .map(|r| {
                let mut v = view(r);
                if let (Some(obj), Some((_, s))) = (
                    v.as_object_mut(),
                    attested.iter().find(|(id, _)| id == r.id.as_str()),
                ) {
                    obj.insert("attestation".into(), api_attestations::view(s));
                }
                if let (Some(obj), Some(d)) = (v.as_object_mut(), drills.get(r.id.as_str())) {
                    obj.insert("drill".into(), json!(d));
                }
                v
            })
            .collect();
        Ok(Json(Value::Array(list)))
    })
    .await
}

pub(crate) async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        let roles = app.catalog.roles();
        let r = roles.get(&id).ok_or_else(|| DomainError::UnknownRole {
            role: breakglass_core::text::shown(&id, 80),
        })?;
        let mut v = view(r);
        if let (Some(obj), Some((_, s))) = (
            v.as_object_mut(),
            attestations::statuses(&app)
                .await?
                .iter()
                .find(|(id, _)| id == r.id.as_str()),
        ) {
            obj.insert("attestation".into(), api_attestations::view(s));
        }
        Ok(Json(v))
    })
    .await
}
