//! `/v1/reviews` and `/v1/grants/{id}/review`: list the reviews owed and recorded, see a grant's
//! evidence, record a review.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use breakglass_core::GrantId;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::extract::RawBody;
use crate::api::{ApiError, AppState, audited};
use crate::governance::evidence;
use crate::governance::reviews::{self, Filter};
use crate::signin::Caller;

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    owed: Option<String>,
    overdue: Option<String>,
    mine: Option<String>,
}

/// A filter flag from the query: `true` or `false` (absent: `false`), or a 400 that says so.
fn flag(name: &str, v: Option<&str>) -> Result<bool, ApiError> {
    match v {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(
            format!(
                "invalid `{name}`: `{}` is not `true` or `false`",
                breakglass_core::text::shown(other, 20)
            ),
            format!("pass `{name}=true` or leave it out"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordBody {
    pub(crate) outcome: String,
    pub(crate) notes: String,
}

fn parse_id(id: &str) -> Result<GrantId, ApiError> {
    Ok(id.parse::<GrantId>()?)
}

pub(crate) async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        let f = Filter {
            owed: flag("owed", q.owed.as_deref())?,
            overdue: flag("overdue", q.overdue.as_deref())?,
            mine: flag("mine", q.mine.as_deref())?,
        };
        Ok(Json(Value::Array(reviews::list(&app, &caller, f).await?)))
    })
    .await
}

pub(crate) async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, Some(&id), async {
        let (g, mut v) = evidence::evidence(&app, &caller, parse_id(&id)?).await?;
        if let Some(o) = v.as_object_mut() {
            let role = app.catalog.roles();
            o.insert(
                "grant".into(),
                super::grants::view(&g, role.get(g.role.as_str())),
            );
        }
        Ok(Json(v))
    })
    .await
}

pub(crate) async fn record(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: RawBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    audited(&app, &caller, Some(&id), async {
        let req: RecordBody = body.json(r#"{"outcome": "legitimate", "notes": "..."}"#)?;
        let (review, g) =
            reviews::record(&app, &caller, parse_id(&id)?, &req.outcome, &req.notes).await?;
        Ok((
            StatusCode::CREATED,
            Json(json!({
                "grant": g.id, "role": g.role, "requester": g.requester,
                "reviewer": review.reviewer, "outcome": review.outcome,
                "final": review.outcome.is_final(), "notes": review.notes, "at": review.at,
            })),
        ))
    })
    .await
}
