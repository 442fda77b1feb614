//! `/v1/whoami`, `/v1/users`, `/v1/tokens`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use breakglass_core::{Duration, Principal, PrincipalKind, Timestamp};
use breakglass_store::ApiToken;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::extract::RawBody;
use crate::api::{ApiError, AppState, audited};
use crate::signin::Caller;

/// Tokens live this long unless `ttl` says otherwise.
const DEFAULT_TOKEN_TTL: &str = "30d";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AddUser {
    pub(super) name: String,
    #[serde(default)]
    pub(super) groups: Vec<String>,
    /// `human` (the default) or `service`.
    #[serde(default)]
    pub(super) kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateToken {
    pub(super) user: String,
    #[serde(default)]
    pub(super) ttl: Option<String>,
    #[serde(default)]
    pub(super) scopes: Option<Vec<String>>,
}

/// A new principal's `kind`: `human` unless it says `service`.
pub(super) fn principal_kind(kind: Option<&str>) -> Result<PrincipalKind, ApiError> {
    match kind {
        None | Some("human") => Ok(PrincipalKind::Human),
        Some("service") => Ok(PrincipalKind::Service),
        Some(other) => Err(ApiError::bad_request(
            format!(
                "unknown principal kind `{}`",
                breakglass_core::text::shown(other, 40)
            ),
            "use `human` (a person, who signs in) or `service` (automation, with scoped tokens)",
        )),
    }
}

/// A new token's lifetime: `ttl`, or [`DEFAULT_TOKEN_TTL`].
pub(super) fn token_ttl(ttl: Option<&str>) -> Result<Duration, ApiError> {
    Ok(ttl.unwrap_or(DEFAULT_TOKEN_TTL).parse()?)
}

pub(super) fn user_view(p: &Principal) -> Value {
    json!({ "name": p.name, "kind": p.kind, "groups": p.groups, "disabled": p.disabled, "created_at": p.created_at })
}

fn token_view(t: &ApiToken, now: Timestamp) -> Value {
    let status = if t.revoked_at.is_some() {
        "revoked"
    } else if now >= t.expires_at {
        "expired"
    } else {
        "active"
    };
    json!({
        "id": t.id, "user": t.principal, "created_at": t.created_at,
        "expires_at": t.expires_at, "revoked_at": t.revoked_at, "status": status,
        "kind": t.kind.as_str(), "scopes": t.scopes,
    })
}

pub(crate) async fn whoami(caller: Caller) -> Json<Value> {
    let mut v = user_view(&caller.principal);
    if let Some(o) = v.as_object_mut() {
        o.insert("token_id".into(), json!(caller.token_id));
        o.insert("token_kind".into(), json!(caller.token_kind.as_str()));
        o.insert("scopes".into(), json!(caller.scopes));
        o.insert("stepped_up_at".into(), json!(caller.stepped_up_at));
    }
    Json(v)
}

pub(crate) async fn list_users(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        let users = app.signin.users(&caller).await?;
        Ok(Json(Value::Array(users.iter().map(user_view).collect())))
    })
    .await
}

pub(crate) async fn add_user(
    State(app): State<AppState>,
    caller: Caller,
    body: RawBody,
) -> Result<
    (
        StatusCode,
        [(axum::http::HeaderName, &'static str); 1],
        Json<Value>,
    ),
    ApiError,
> {
    // The one-time password is in this response and nowhere else.
    audited(&app, &caller, None, async {
        let req: AddUser = body.json(r#"{"name": "alice", "groups": ["sre"], "kind": "human"}"#)?;
        let kind = principal_kind(req.kind.as_deref())?;
        let (p, initial) = app
            .signin
            .add_user(&caller, &req.name, kind, &req.groups)
            .await?;
        let mut v = user_view(&p);
        if let (Some(o), Some(pw)) = (v.as_object_mut(), initial) {
            o.insert("initial_password".into(), json!(pw.expose()));
        }
        Ok((
            StatusCode::CREATED,
            [(axum::http::header::CACHE_CONTROL, "no-store")],
            Json(v),
        ))
    })
    .await
}

pub(crate) async fn list_tokens(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        let now = app.clock.now();
        let tokens = app.signin.tokens(&caller).await?;
        Ok(Json(Value::Array(
            tokens.iter().map(|t| token_view(t, now)).collect(),
        )))
    })
    .await
}

/// The new token's secret is in this response and nowhere else, ever.
pub(crate) async fn create_token(
    State(app): State<AppState>,
    caller: Caller,
    body: RawBody,
) -> Result<
    (
        StatusCode,
        [(axum::http::HeaderName, &'static str); 1],
        Json<Value>,
    ),
    ApiError,
> {
    audited(&app, &caller, None, async {
        let req: CreateToken =
            body.json(r#"{"user": "rotator", "ttl": "1h", "scopes": ["request", "credential"]}"#)?;
        let ttl = token_ttl(req.ttl.as_deref())?;
        let t = app
            .signin
            .create_token(&caller, &req.user, ttl, req.scopes)
            .await?;
        let mut v = token_view(&t.record, app.clock.now());
        if let Some(o) = v.as_object_mut() {
            o.insert("token".into(), json!(t.secret.expose()));
        }
        Ok((
            StatusCode::CREATED,
            [(axum::http::header::CACHE_CONTROL, "no-store")],
            Json(v),
        ))
    })
    .await
}

pub(crate) async fn revoke_token(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        let t = app.signin.revoke_token(&caller, &id).await?;
        Ok(Json(token_view(&t, app.clock.now())))
    })
    .await
}
