//! `/v1/roles/{id}/attest`: a member of the role's owner group confirms it is still needed and
//! correctly scoped. The role listing's `attestation` block is shaped here too.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use breakglass_core::attestation::AttestationStatus;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::extract::RawBody;
use crate::api::{ApiError, AppState, audited};
use crate::governance::attestations;
use crate::signin::Caller;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AttestBody {
    pub(crate) note: String,
}

/// A role's attestation status as the API shows it.
pub(crate) fn view(s: &AttestationStatus) -> Value {
    json!({
        "status": s.state.as_str(),
        "due": s.due,
        "last_attested": s.last_attested,
        "last_attested_by": s.last_attested_by,
        "expires": s.expires,
        "on_lapse": s.on_lapse,
    })
}

pub(crate) async fn attest(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: RawBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    audited(&app, &caller, None, async {
        let req: AttestBody =
            body.json(r#"{"note": "still needed for database recovery; scope checked"}"#)?;
        let (a, status) = attestations::attest(&app, &caller, &id, &req.note).await?;
        Ok((
            StatusCode::CREATED,
            Json(json!({
                "role": a.role, "hash": a.hash, "by": a.by, "note": a.note,
                "attested_at": a.at, "next_due": a.next_due,
                "attestation": view(&status),
            })),
        ))
    })
    .await
}
