//! `/v1/drills`: start a drill of a role, list drills, show one with its report.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use breakglass_core::{Drill, Grant};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::extract::RawBody;
use crate::api::{ApiError, AppState, audited};
use crate::governance::drills;
use crate::signin::Caller;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartBody {
    pub(crate) role: String,
    /// Through the role's emergency path instead of its approval.
    #[serde(default)]
    pub(crate) emergency: bool,
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    role: Option<String>,
}

/// A drill as the API shows it: the stored drill plus `passed` (null while open) and the steps
/// that failed.
fn view(d: &Drill) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or_else(|_| json!({}));
    if let Some(obj) = v.as_object_mut() {
        // One word for where it is: `passed` and `failed` rather than `completed`.
        obj.insert("stage".into(), json!(d.stage.name()));
        obj.insert("passed".into(), json!(d.passed()));
        obj.insert(
            "failed".into(),
            json!(
                d.failed_steps()
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
            ),
        );
    }
    v
}

/// What a new drill waits for, in words.
fn waiting_for(d: &Drill, g: &Grant) -> String {
    match g.state.name() {
        "requested" => format!("approval by the approvers of role `{}`", d.role),
        "failed" | "denied" | "cancelled" | "timed_out" => {
            "its report: the drill grant did not become active".into()
        }
        _ => "the broker to exercise the credential, revoke it and check the alerts".into(),
    }
}

pub(crate) async fn start(
    State(app): State<AppState>,
    caller: Caller,
    body: RawBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    audited(&app, &caller, None, async {
        let req: StartBody = body.json(r#"{"role": "prod-db-admin", "emergency": false}"#)?;
        let (d, g) = drills::start(&app, &caller, &req.role, req.emergency).await?;
        let mut v = view(&d);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("grant_state".into(), json!(g.state.name()));
            obj.insert("waiting_for".into(), json!(waiting_for(&d, &g)));
        }
        Ok((StatusCode::CREATED, Json(v)))
    })
    .await
}

pub(crate) async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        let list = drills::list(&app, &caller, q.role.as_deref()).await?;
        Ok(Json(Value::Array(list.iter().map(view).collect())))
    })
    .await
}

pub(crate) async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        let d = drills::show(&app, &caller, &id).await?;
        Ok(Json(view(&d)))
    })
    .await
}
