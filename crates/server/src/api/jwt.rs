//! The token provider's public face: the key set and RFC 7662 introspection.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use breakglass_core::{GrantId, GrantState};
use serde::Deserialize;
use serde_json::{Value, json};

use breakglass_providers::token::Claims;

use crate::api::extract::RawBody;
use crate::api::{ApiError, AppState, audited};
use crate::app::App;
use crate::signin::Caller;

#[derive(Deserialize)]
pub(super) struct IntrospectForm {
    pub(super) token: String,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "RFC 7662 allows the hint; we accept and ignore it"
    )]
    token_type_hint: Option<String>,
}

pub(crate) async fn jwks(
    State(app): State<AppState>,
) -> ([(header::HeaderName, &'static str); 1], Json<Value>) {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(app.tokens.jwks()),
    )
}

/// RFC 7662: `active` is true only if the token is ours, unexpired, and its grant is active now.
pub(crate) async fn introspect(
    State(app): State<AppState>,
    caller: Caller,
    body: RawBody,
) -> Result<Json<Value>, ApiError> {
    audited(&app, &caller, None, async {
        let form: IntrospectForm = body.form("token=eyJ...")?;
        let Some(claims) = active_claims(&app, &form.token).await? else {
            return Ok(Json(json!({ "active": false })));
        };
        Ok(Json(json!({
            "active": true,
            "iss": claims.iss, "sub": claims.sub, "aud": claims.aud, "scope": claims.scope,
            "iat": claims.iat, "nbf": claims.nbf, "exp": claims.exp, "jti": claims.jti,
            "username": claims.sub, "token_type": "Bearer",
        })))
    })
    .await
}

/// Introspection's rule: the claims of `token` if it is ours, unexpired, and its grant is active
/// now and held by its subject; `None` otherwise. Drills ask it too.
pub(crate) async fn active_claims(
    app: &App,
    token: &str,
) -> Result<Option<Claims>, crate::error::ServiceError> {
    let now = app.clock.now();
    let Ok(claims) = app.tokens.verify(token, now) else {
        return Ok(None);
    };
    let Ok(id) = claims.jti.parse::<GrantId>() else {
        return Ok(None);
    };
    let Some(sg) = app.store.grant(id).await? else {
        return Ok(None);
    };
    let active = matches!(sg.grant.state, GrantState::Active { .. })
        && sg.grant.requester.as_str() == claims.sub;
    Ok(active.then_some(claims))
}
