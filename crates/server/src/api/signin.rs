//! `/v1/login`, `/v1/logout`, `/v1/step-up`, `/v1/totp/*`, `/v1/password`, the administrator's
//! account commands under `/v1/users/{name}/…`, and `/v1/policy/explain`.
//!
//! Secrets (passwords, codes, session tokens, TOTP secrets, recovery codes) travel only in request
//! and response bodies, which are never logged; responses that carry one say `no-store`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderName, StatusCode, header};
use breakglass_providers::Secret;
use serde::Deserialize;
use serde_json::{Value, json};

use breakglass_core::{Actor, PolicyAction};

use crate::api::extract::{RawBody, Source};
use crate::api::{ApiError, AppState, audited};
use crate::policy::Query as PolicyQuery;
use crate::signin::{Caller, SignInRequest};

type NoStore = [(HeaderName, &'static str); 1];
const NO_STORE: NoStore = [(header::CACHE_CONTROL, "no-store")];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginBody {
    pub(super) user: String,
    pub(super) password: String,
    #[serde(default)]
    pub(super) code: Option<String>,
    #[serde(default)]
    pub(super) new_password: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CodeBody {
    pub(super) code: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordBody {
    pub(super) current: String,
    pub(super) new: String,
}

#[derive(Deserialize)]
pub(crate) struct ExplainQuery {
    principal: String,
    action: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    own: bool,
}

/// Longest password accepted at all (Argon2 hashes anything; this bounds the work).
const MAX_PASSWORD_BYTES: usize = 1024;

pub(super) fn bounded(field: &'static str, s: String) -> Result<Secret, ApiError> {
    if s.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::bad_request(
            format!("`{field}` is longer than {MAX_PASSWORD_BYTES} bytes"),
            "use a shorter one",
        ));
    }
    Ok(Secret::new(s))
}

pub(crate) async fn login(
    State(app): State<AppState>,
    Source(source): Source,
    body: RawBody,
) -> Result<(StatusCode, NoStore, Json<Value>), ApiError> {
    let req: LoginBody = body.json(r#"{"user": "alice", "password": "...", "code": "123456"}"#)?;
    let session = app
        .signin
        .sign_in(SignInRequest {
            user: req.user.chars().take(200).collect(),
            password: bounded("password", req.password)?,
            code: req.code.map(|c| bounded("code", c)).transpose()?,
            new_password: req
                .new_password
                .map(|c| bounded("new_password", c))
                .transpose()?,
            source,
        })
        .await?;
    let r = &session.token.record;
    Ok((
        StatusCode::CREATED,
        NO_STORE,
        Json(json!({
            "token": session.token.secret.expose(),
            "token_id": r.id,
            "user": r.principal,
            "expires_at": r.expires_at,
            "method": session.method,
            "stepped_up_at": r.stepped_up_at,
            "totp_enrolled": session.totp_enrolled,
        })),
    ))
}

pub(crate) async fn logout(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        app.signin.sign_out(&caller).await?;
        Ok(Json(
            json!({ "token_id": caller.token_id, "status": "revoked" }),
        ))
    })
    .await
}

pub(crate) async fn step_up(
    State(app): State<AppState>,
    caller: Caller,
    Source(source): Source,
    body: RawBody,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        let req: CodeBody = body.json(r#"{"code": "123456"}"#)?;
        let at = app
            .signin
            .step_up(&caller, &bounded("code", req.code)?, &source)
            .await?;
        Ok(Json(json!({
            "token_id": caller.token_id,
            "stepped_up_at": at,
            "valid_for": app.access.step_up_window().to_string(),
        })))
    })
    .await
}

pub(crate) async fn totp_enroll(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<(NoStore, Json<Value>), ApiError> {
    audited(&app, &caller, None, async {
        let e = app.signin.totp_enroll(&caller).await?;
        Ok((
            NO_STORE,
            Json(json!({
                "user": caller.principal.name,
                "secret": e.secret_base32.expose(),
                "uri": e.uri.expose(),
            })),
        ))
    })
    .await
}

pub(crate) async fn totp_confirm(
    State(app): State<AppState>,
    caller: Caller,
    body: RawBody,
) -> Result<(NoStore, Json<Value>), ApiError> {
    audited(&app, &caller, None, async {
        let req: CodeBody = body.json(r#"{"code": "123456"}"#)?;
        let codes = app
            .signin
            .totp_confirm(&caller, &bounded("code", req.code)?)
            .await?;
        Ok((
            NO_STORE,
            Json(json!({
                "user": caller.principal.name,
                "recovery_codes": codes.iter().map(Secret::expose).collect::<Vec<_>>(),
            })),
        ))
    })
    .await
}

pub(crate) async fn change_password(
    State(app): State<AppState>,
    caller: Caller,
    Source(source): Source,
    body: RawBody,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        let req: PasswordBody = body.json(r#"{"current": "...", "new": "..."}"#)?;
        app.signin
            .change_password(
                &caller,
                &bounded("current", req.current)?,
                &bounded("new", req.new)?,
                &source,
            )
            .await?;
        Ok(Json(
            json!({ "user": caller.principal.name, "status": "changed" }),
        ))
    })
    .await
}

pub(crate) async fn reset_password(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<(NoStore, Json<Value>), ApiError> {
    audited(&app, &caller, None, async {
        let pw = app.signin.reset_password(&caller, &name).await?;
        Ok((
            NO_STORE,
            Json(json!({ "user": name, "initial_password": pw.expose(), "must_change": true })),
        ))
    })
    .await
}

pub(crate) async fn reset_totp(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        app.signin.reset_totp(&caller, &name).await?;
        Ok(Json(json!({ "user": name, "totp": "removed" })))
    })
    .await
}

pub(crate) async fn disable(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        let p = app.signin.set_disabled(&caller, &name, true).await?;
        // INVARIANT(1): the person's grants end with their account, at the targets too.
        let ended = app
            .grants
            .end_for_disabled(&Actor::User(caller.principal.name.clone()), p.name.as_str())
            .await;
        Ok(Json(
            json!({ "name": p.name, "disabled": p.disabled, "grants_ended": ended }),
        ))
    })
    .await
}

pub(crate) async fn enable(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        let p = app.signin.set_disabled(&caller, &name, false).await?;
        Ok(Json(json!({ "name": p.name, "disabled": p.disabled })))
    })
    .await
}

/// Shows a decision and the policies that caused it. Needs `read_audit` (who may do what is
/// itself sensitive).
pub(crate) async fn explain(
    State(app): State<AppState>,
    caller: Caller,
    Query(q): Query<ExplainQuery>,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        app.access.policy(&caller, caller.action, None, false)?;
        let action = PolicyAction::parse(&q.action).ok_or_else(|| {
            ApiError::bad_request(
                format!(
                    "unknown action `{}`",
                    breakglass_core::text::shown(&q.action, 40)
                ),
                format!(
                    "use one of: {}",
                    PolicyAction::ALL.map(PolicyAction::as_str).join(", ")
                ),
            )
        })?;
        let p = app.signin.principal(&q.principal).await?;
        let e = app.catalog.policies().explain(&PolicyQuery {
            principal: &p,
            action,
            role: q.role.as_deref(),
            own: q.own,
        });
        Ok(Json(json!({
            "principal": p.name,
            "groups": p.groups,
            "action": action.as_str(),
            "role": q.role,
            "own": q.own,
            "decision": if e.allowed { "allow" } else { "deny" },
            "reasons": e.reasons.iter().map(|r| json!({
                "id": r.id, "effect": r.effect, "source": r.source, "text": r.text,
            })).collect::<Vec<_>>(),
            "errors": e.errors,
        })))
    })
    .await
}
