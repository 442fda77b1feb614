//! Request extractors: the authenticated [`Caller`] and a body that is read only after the caller
//! is known, so that even a malformed body from an authenticated caller is an audited refusal.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::api::{ApiError, AppState};
use crate::broker::{AuthError, Caller};

/// The largest request body accepted anywhere.
pub const BODY_LIMIT: usize = 1024 * 1024;

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(AUTHORIZATION) else {
            return Err(ApiError::Unauthenticated(AuthError::Missing));
        };
        let token = value
            .to_str()
            .ok()
            // RFC 7235: the scheme name is case-insensitive.
            .and_then(|v| {
                v.get(..7)
                    .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "))
                    .and_then(|_| v.get(7..))
            })
            .map(str::trim)
            .ok_or(ApiError::Unauthenticated(AuthError::Malformed))?;
        let caller = state.authenticate(token).await?;
        Ok(caller)
    }
}

/// The raw body, or why it could not be read. Never rejects by itself.
pub(super) struct RawBody(Result<Bytes, ApiError>);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit: BODY_LIMIT }
            } else {
                ApiError::bad_request(
                    format!(
                        "could not read the request body: {}",
                        rej.body_text().to_lowercase()
                    ),
                    "send the request again",
                )
            }
        })))
    }
}

impl RawBody {
    /// Parses the body as a JSON object of `T`; an empty body is `{}`.
    pub(super) fn json<T: DeserializeOwned>(self, example: &str) -> Result<T, ApiError> {
        let bytes = self.0?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(bytes).map_err(|e| {
            ApiError::bad_request(
                format!("malformed JSON body: {}", e.to_string().to_lowercase()),
                format!("send a JSON object like {example}"),
            )
        })
    }

    /// Parses the body as `application/x-www-form-urlencoded`.
    pub(super) fn form<T: DeserializeOwned>(self, example: &str) -> Result<T, ApiError> {
        let bytes = self.0?;
        serde_urlencoded::from_bytes(&bytes).map_err(|e| {
            ApiError::bad_request(
                format!("malformed form body: {}", e.to_string().to_lowercase()),
                format!("send a form like `{example}`"),
            )
        })
    }
}
