//! `/v1/lockdown`: engage a lockdown, lift it, see what is in force.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use breakglass_core::Lockdown;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::extract::RawBody;
use crate::api::{ApiError, AppState, audited};
use crate::signin::Caller;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EngageBody {
    #[serde(default)]
    pub(crate) role: Option<String>,
    #[serde(default)]
    pub(crate) all: bool,
    pub(crate) reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LiftBody {
    #[serde(default)]
    pub(crate) role: Option<String>,
    #[serde(default)]
    pub(crate) all: bool,
    #[serde(default)]
    pub(crate) reason: Option<String>,
}

fn view(l: &Lockdown) -> Value {
    json!({
        "id": l.id, "scope": l.scope, "reason": l.reason,
        "engaged_by": l.engaged_by, "engaged_at": l.engaged_at,
    })
}

/// Exactly one of `role` and `all` for engaging; at most one for lifting.
pub(crate) fn one_scope(
    role: Option<String>,
    all: bool,
    required: bool,
) -> Result<Option<String>, ApiError> {
    match (role, all) {
        (Some(_), true) => Err(ApiError::bad_request(
            "`role` and `all` were both given",
            "name one role with `role`, or every role with `all: true`",
        )),
        (None, false) if required => Err(ApiError::bad_request(
            "no scope was given",
            "name one role with `role` (`--role ROLE`), or every role with `all: true` (`--all`)",
        )),
        (role, _) => Ok(role),
    }
}

pub(crate) async fn engage(
    State(app): State<AppState>,
    caller: Caller,
    body: RawBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    audited(&app, &caller, None, async {
        let req: EngageBody = body.json(r#"{"role": "prod-db-admin", "reason": "..."}"#)?;
        let role = one_scope(req.role, req.all, true)?;
        let (l, ended) = app
            .engage_lockdown(&caller, role.as_deref(), &req.reason)
            .await?;
        Ok((
            StatusCode::CREATED,
            Json(json!({
                "lockdown": view(&l),
                "revoked": ended.revoked,
                "cancelled": ended.cancelled,
                "retrying": ended.retrying,
                "interrupted": ended.interrupted,
            })),
        ))
    })
    .await
}

pub(crate) async fn lift(
    State(app): State<AppState>,
    caller: Caller,
    body: RawBody,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        let req: LiftBody = body.json(r#"{"role": "prod-db-admin", "reason": "..."}"#)?;
        let role = one_scope(req.role, req.all, false)?;
        let lifted = app
            .lift_lockdown(&caller, role.as_deref(), req.reason.as_deref())
            .await?;
        Ok(Json(
            json!({ "lifted": lifted.iter().map(view).collect::<Vec<_>>() }),
        ))
    })
    .await
}

pub(crate) async fn status(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        let in_force = app.lockdowns(&caller).await?;
        Ok(Json(json!({
            "locked_down": !in_force.is_empty(),
            "lockdowns": in_force.iter().map(view).collect::<Vec<_>>(),
        })))
    })
    .await
}
