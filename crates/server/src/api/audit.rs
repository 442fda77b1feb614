//! `/v1/audit/…`: the tail, the verifier key, signed checkpoints, inclusion and consistency
//! proofs, and a JSON-lines export. Admins and auditors only.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use breakglass_audit::{
    Checkpoint, Hash, NodeId, consistency_proof, inclusion_proof, needed_for_consistency,
    needed_for_inclusion,
};
use breakglass_core::DomainError;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{ApiError, AppState, audited};
use crate::app::App;
use crate::error::ServiceError;
use crate::signin::Caller;

const MAX_TAIL: u32 = 10_000;
/// Events per export page.
const EXPORT_PAGE: u32 = 1000;

#[derive(Deserialize)]
pub(crate) struct TailQuery {
    n: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ConsistencyQuery {
    from: Option<String>,
    to: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ExportQuery {
    from: Option<String>,
    limit: Option<String>,
}

/// Policy decides what the caller's action needs (`read_audit`: by default admins and
/// auditors); a refusal keeps the core's wording.
fn may_read(app: &App, caller: &Caller) -> Result<(), ApiError> {
    if app
        .access
        .policy(caller, caller.action, None, false)
        .is_ok()
    {
        Ok(())
    } else {
        Err(DomainError::AdminOnly {
            principal: caller.principal.name.to_string(),
            action: "read the audit log",
        }
        .into())
    }
}

/// The largest position or count the log can hold (the store keeps them as signed 64-bit).
const MAX_NUMBER: u64 = i64::MAX as u64;

/// A count or position from the query: a whole number the log could hold, or a 400 that says so.
fn number(name: &str, v: Option<&str>, default: u64) -> Result<u64, ApiError> {
    let Some(s) = v else {
        return Ok(default);
    };
    let shown = breakglass_core::text::shown(s, 20);
    match s.parse::<u64>() {
        Ok(n) if n <= MAX_NUMBER => Ok(n),
        Ok(_) => Err(ApiError::bad_request(
            format!("invalid `{name}`: `{shown}` is larger than the log can ever be"),
            format!("pass a whole number no larger than {MAX_NUMBER}"),
        )),
        Err(_) => Err(ApiError::bad_request(
            format!("invalid `{name}`: `{shown}` is not a count"),
            "pass a whole number",
        )),
    }
}

fn b64(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(Hash::to_base64).collect()
}

/// Fetches exactly the stored hashes a proof reads, then builds it.
async fn fetch(
    app: &App,
    ids: std::collections::BTreeSet<NodeId>,
) -> Result<std::collections::BTreeMap<NodeId, Hash>, ApiError> {
    Ok(app
        .store
        .audit_hashes(&ids)
        .await
        .map_err(ServiceError::from)?)
}

fn parse_checkpoint(note: &str) -> Result<Checkpoint, ApiError> {
    let text = breakglass_audit::SignedNote::parse(note)
        .map_err(|e| ApiError::internal(&e))?
        .text;
    Checkpoint::parse(&text).map_err(|e| ApiError::internal(&e))
}

pub(crate) async fn tail(
    State(app): State<AppState>,
    caller: Caller,
    Query(q): Query<TailQuery>,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        may_read(&app, &caller)?;
        let n = u32::try_from(number("n", q.n.as_deref(), 20)?.min(u64::from(MAX_TAIL)))
            .unwrap_or(MAX_TAIL);
        let events = app.store.audit_tail(n).await.map_err(ServiceError::from)?;
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

pub(crate) async fn key(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        may_read(&app, &caller)?;
        Ok(Json(
            json!({ "origin": app.checkpoints.origin(), "key": app.checkpoints.verifier_key() }),
        ))
    })
    .await
}

pub(crate) async fn checkpoint(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        may_read(&app, &caller)?;
        let cp = app.checkpoint().await?;
        let parsed = parse_checkpoint(&cp.note)?;
        Ok(Json(json!({
            "origin": parsed.origin, "size": cp.size, "root_hash": parsed.root.to_base64(),
            "signed_at": cp.signed_at, "checkpoint": cp.note,
        })))
    })
    .await
}

/// Inclusion proof of one event against the latest checkpoint.
pub(crate) async fn prove(
    State(app): State<AppState>,
    caller: Caller,
    Path(seq): Path<String>,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        may_read(&app, &caller)?;
        let index = number("seq", Some(&seq), 0)?;
        let cp = app.checkpoint().await?;
        let parsed = parse_checkpoint(&cp.note)?;
        if index >= cp.size {
            return Err(ApiError::bad_request(
                format!(
                    "seq `{index}` is not in the log: the latest checkpoint covers {} events",
                    cp.size
                ),
                "pick a seq below the checkpoint's size (`breakglass audit checkpoint`)",
            ));
        }
        let ids = needed_for_inclusion(index, cp.size).map_err(|e| ApiError::internal(&e))?;
        let leaf_id = NodeId { level: 0, index };
        let mut all = ids.clone();
        all.insert(leaf_id);
        let hashes = fetch(&app, all).await?;
        let proof = inclusion_proof(index, cp.size, &mut |id| hashes.get(&id).copied())
            .map_err(|e| ApiError::internal(&e))?;
        let leaf = hashes
            .get(&leaf_id)
            .ok_or_else(|| ApiError::internal(&"leaf hash missing"))?;
        Ok(Json(json!({
            "index": index, "tree_size": cp.size, "leaf_hash": leaf.to_base64(),
            "root_hash": parsed.root.to_base64(), "proof": b64(&proof), "checkpoint": cp.note,
        })))
    })
    .await
}

pub(crate) async fn consistency(
    State(app): State<AppState>,
    caller: Caller,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        may_read(&app, &caller)?;
        let cp = app.checkpoint().await?;
        let from = number("from", q.from.as_deref(), 0)?;
        let to = number("to", q.to.as_deref(), cp.size)?;
        if to > cp.size || from > to {
            return Err(ApiError::bad_request(
                format!("cannot prove size `{from}` consistent with size `{to}`: sizes must satisfy from <= to <= {}", cp.size),
                "pass sizes no larger than the latest checkpoint's",
            ));
        }
        let ids = needed_for_consistency(from, to).map_err(|e| ApiError::internal(&e))?;
        let hashes = fetch(&app, ids).await?;
        let proof = consistency_proof(from, to, &mut |id| hashes.get(&id).copied()).map_err(|e| ApiError::internal(&e))?;
        Ok(Json(json!({ "from": from, "to": to, "proof": b64(&proof) })))
    })
    .await
}

/// JSON lines: `seq`, `leaf` (base64 of the exact stored bytes) and the decoded event fields.
pub(crate) async fn export(
    State(app): State<AppState>,
    caller: Caller,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    audited(&app, &caller, None, async {
        may_read(&app, &caller)?;
        let from = number("from", q.from.as_deref(), 0)?;
        let limit = u32::try_from(
            number("limit", q.limit.as_deref(), u64::from(EXPORT_PAGE))?
                .min(u64::from(EXPORT_PAGE)),
        )
        .unwrap_or(EXPORT_PAGE);
        let events = app
            .store
            .audit_events(from, limit)
            .await
            .map_err(ServiceError::from)?;
        let mut body = String::new();
        for e in &events {
            let mut v = e.to_json().unwrap_or_else(|| json!({}));
            if let Some(o) = v.as_object_mut() {
                o.insert("seq".into(), json!(e.seq));
                o.insert("leaf".into(), json!(B64.encode(&e.bytes)));
            }
            body.push_str(&v.to_string());
            body.push('\n');
        }
        Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
    })
    .await
}
