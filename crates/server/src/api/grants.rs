//! `/v1/grants`: request, approve, deny, cancel, revoke, extend, collect the credential, read.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use breakglass_core::grant::RequestInput;
use breakglass_core::{Duration, Grant, GrantId, Role};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::extract::RawBody;
use crate::api::{ApiError, AppState, audited};
use crate::app::App;
use crate::signin::Caller;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RequestBody {
    pub(super) role: String,
    pub(super) reason: String,
    #[serde(default)]
    pub(super) incident: Option<String>,
    #[serde(default)]
    pub(super) duration: Option<String>,
    /// Emergency self-activation (the role must allow it).
    #[serde(default)]
    pub(super) emergency: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApproveBody {
    #[serde(default)]
    pub(super) comment: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReasonBody {
    pub(super) reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExtendBody {
    pub(super) duration: String,
    pub(super) reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EmptyBody {}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    state: Option<String>,
}

/// A grant as the API shows it: the stored grant plus `expires_at` (null until activated) and
/// the role's `quorum`.
pub(crate) fn view(g: &Grant, role: Option<&Role>) -> Value {
    let mut v = serde_json::to_value(g).unwrap_or_else(|_| json!({}));
    if let Some(obj) = v.as_object_mut() {
        obj.insert("expires_at".into(), json!(g.expires_at()));
        obj.insert("quorum".into(), json!(role.map(|r| r.quorum)));
        obj.insert("total_duration".into(), json!(g.total_duration()));
    }
    v
}

fn view_in(app: &App, g: &Grant) -> Value {
    view(g, app.catalog.roles().get(g.role.as_str()))
}

fn parse_id(id: &str) -> Result<GrantId, ApiError> {
    Ok(id.parse::<GrantId>()?)
}

pub(super) fn parse_duration(s: Option<&str>) -> Result<Option<Duration>, ApiError> {
    Ok(s.map(str::parse).transpose()?)
}

pub(crate) async fn request(
    State(app): State<AppState>,
    caller: Caller,
    body: RawBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    audited(&app, &caller, None, async {
        let req: RequestBody = body.json(
            r#"{"role": "prod-db-admin", "reason": "...", "incident": "INC-1", "duration": "30m"}"#,
        )?;
        let input = RequestInput {
            reason: req.reason,
            incident: req.incident,
            duration: parse_duration(req.duration.as_deref())?,
        };
        let g = if req.emergency {
            app.grants
                .request_emergency(&caller, &req.role, input)
                .await?
        } else {
            app.grants.request(&caller, &req.role, input).await?
        };
        Ok((StatusCode::CREATED, Json(view_in(&app, &g))))
    })
    .await
}

pub(crate) async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        let grants = app.grants.list(&caller, q.state.as_deref()).await?;
        Ok(Json(Value::Array(
            grants.iter().map(|g| view_in(&app, g)).collect(),
        )))
    })
    .await
}

pub(crate) async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, Some(&id), async {
        let g = app.grants.show(&caller, parse_id(&id)?).await?;
        Ok(Json(view_in(&app, &g)))
    })
    .await
}

pub(crate) async fn approve(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: RawBody,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, Some(&id), async {
        let id = parse_id(&id)?;
        let req: ApproveBody = body.json(r#"{"comment": "..."}"#)?;
        let g = app.grants.approve(&caller, id, req.comment).await?;
        Ok(Json(view_in(&app, &g)))
    })
    .await
}

pub(crate) async fn deny(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: RawBody,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, Some(&id), async {
        let id = parse_id(&id)?;
        let req: ReasonBody = body.json(r#"{"reason": "..."}"#)?;
        let g = app.grants.deny(&caller, id, &req.reason).await?;
        Ok(Json(view_in(&app, &g)))
    })
    .await
}

pub(crate) async fn cancel(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: RawBody,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, Some(&id), async {
        let id = parse_id(&id)?;
        let _: EmptyBody = body.json("{}")?;
        let g = app.grants.cancel(&caller, id).await?;
        Ok(Json(view_in(&app, &g)))
    })
    .await
}

pub(crate) async fn revoke(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: RawBody,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, Some(&id), async {
        let id = parse_id(&id)?;
        let req: ReasonBody = body.json(r#"{"reason": "..."}"#)?;
        let g = app.grants.revoke(&caller, id, &req.reason).await?;
        Ok(Json(view_in(&app, &g)))
    })
    .await
}

pub(crate) async fn extend(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: RawBody,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, Some(&id), async {
        let id = parse_id(&id)?;
        let req: ExtendBody = body.json(r#"{"duration": "15m", "reason": "..."}"#)?;
        let d: Duration = req.duration.parse()?;
        let g = app.grants.extend(&caller, id, d, &req.reason).await?;
        Ok(Json(view_in(&app, &g)))
    })
    .await
}

/// The credential, once. `Cache-Control: no-store` so no proxy keeps a copy.
pub(crate) async fn credential(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<([(axum::http::HeaderName, &'static str); 1], Json<Value>), ApiError> {
    audited(&app, &caller, Some(&id), async {
        let id = parse_id(&id)?;
        // Nothing is read after delivery: once the credential is handed over nothing may fail,
        // and the end shown is the one read in the delivery's own transaction.
        let d = app.grants.reveal(&caller, id).await?;
        Ok((
            [(axum::http::header::CACHE_CONTROL, "no-store")],
            Json(json!({
                "grant": id.to_string(),
                "kind": d.kind,
                "expires_at": d.expires_at,
                "credential": d.credential.expose(),
            })),
        ))
    })
    .await
}
