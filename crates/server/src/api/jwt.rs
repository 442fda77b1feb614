//! The token provider's public face: the key set and RFC 7662 introspection.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use breakglass_core::{GrantId, GrantState};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::extract::RawBody;
use crate::api::{ApiError, AppState, audited};
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
        let inactive = Json(json!({ "active": false }));
        let now = app.clock.now();
        let Ok(claims) = app.tokens.verify(&form.token, now) else {
            return Ok(inactive);
        };
        let Ok(id) = claims.jti.parse::<GrantId>() else {
            return Ok(inactive);
        };
        let Some(sg) = app
            .store
            .grant(id)
            .await
            .map_err(crate::error::ServiceError::from)?
        else {
            return Ok(inactive);
        };
        let active = matches!(sg.grant.state, GrantState::Active { .. })
            && sg.grant.requester.as_str() == claims.sub;
        if !active {
            return Ok(inactive);
        }
        Ok(Json(json!({
            "active": true,
            "iss": claims.iss, "sub": claims.sub, "aud": claims.aud, "scope": claims.scope,
            "iat": claims.iat, "nbf": claims.nbf, "exp": claims.exp, "jti": claims.jti,
            "username": claims.sub, "token_type": "Bearer",
        })))
    })
    .await
}
