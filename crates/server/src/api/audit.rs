//! `/v1/audit/tail`: the latest audit events, for admins and auditors.

use axum::Json;
use axum::extract::{Query, State};
use breakglass_core::DomainError;
use serde::Deserialize;
use serde_json::Value;

use crate::api::{ApiError, AppState, audited};
use crate::broker::Caller;

const MAX_TAIL: u32 = 10_000;

#[derive(Deserialize)]
pub(crate) struct TailQuery {
    n: Option<String>,
}

pub(crate) async fn tail(
    State(b): State<AppState>,
    caller: Caller,
    Query(q): Query<TailQuery>,
) -> Result<Json<Value>, ApiError> {
    audited(&b, &caller, "audit.read", async {
        if !caller.principal.may_read_everything() {
            return Err(DomainError::AdminOnly {
                principal: caller.principal.name.to_string(),
                action: "read the audit log",
            }
            .into());
        }
        let n = match q.n.as_deref() {
            None => 20,
            Some(s) => s.parse::<u32>().map_err(|_| {
                ApiError::bad_request(
                    format!(
                        "invalid `n`: `{}` is not a count",
                        s.chars().take(20).collect::<String>()
                    ),
                    format!("pass a whole number up to {MAX_TAIL}"),
                )
            })?,
        }
        .min(MAX_TAIL);
        let events = b
            .store
            .audit_tail(n)
            .await
            .map_err(crate::broker::BrokerError::from)?;
        let mut out = Vec::with_capacity(events.len());
        for e in &events {
            out.push(e.to_json().ok_or_else(|| {
                ApiError::internal(&format!("audit event {} is not valid JSON", e.seq))
            })?);
        }
        Ok(Json(Value::Array(out)))
    })
    .await
}
