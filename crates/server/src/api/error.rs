//! The one error type of the HTTP API. Every variant maps to one status in one `match`; internal
//! failures are logged under a random id and the client sees only that id.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use breakglass_core::DomainError;
use breakglass_core::error::ErrorCategory;
use breakglass_store::StoreError;
use serde_json::json;

use crate::error::{AuthError, AuthFailure, ServiceError};
use crate::policy::AccessError;

#[derive(Debug)]
pub enum ApiError {
    Domain(DomainError),
    Access(AccessError),
    Unauthenticated(AuthError),
    /// The request could not be read (malformed JSON, wrong fields, bad form).
    BadRequest {
        message: String,
        help: String,
    },
    PayloadTooLarge {
        limit: usize,
    },
    NotFound {
        message: String,
    },
    MethodNotAllowed {
        message: String,
    },
    /// The grant kept changing under concurrent requests.
    Busy,
    /// The source sent more requests than its rate allows; `retry_after` is in seconds.
    RateLimited {
        retry_after: u64,
    },
    /// The body did not arrive within the deadline after the headers.
    BodyTimeout {
        secs: u64,
    },
    /// The broker did not answer within the request deadline.
    Timeout {
        secs: u64,
    },
    /// The database cannot be reached; nothing was changed.
    Unavailable {
        id: String,
    },
    Internal {
        id: String,
    },
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>, help: impl Into<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
            help: help.into(),
        }
    }

    /// Logs `err` under a fresh id and returns the error the client sees.
    pub fn internal(err: &dyn std::fmt::Display) -> Self {
        let id = error_id();
        tracing::error!(error_id = %id, error = %err, "internal error");
        Self::Internal { id }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Domain(d) => match d.category() {
                ErrorCategory::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCategory::Forbidden => StatusCode::FORBIDDEN,
                ErrorCategory::NotFound => StatusCode::NOT_FOUND,
                ErrorCategory::Conflict => StatusCode::CONFLICT,
            },
            Self::Access(a) => StatusCode::from_u16(a.status()).unwrap_or(StatusCode::FORBIDDEN),
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Busy => StatusCode::CONFLICT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Timeout { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Domain(d) => d.code(),
            Self::Access(a) => a.code(),
            Self::Unauthenticated(_) => "unauthenticated",
            Self::BadRequest { .. } => "bad_request",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::NotFound { .. } => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Busy => "busy",
            Self::RateLimited { .. } => "rate_limited",
            Self::BodyTimeout { .. } => "request_timeout",
            Self::Timeout { .. } => "timeout",
            Self::Unavailable { .. } => "unavailable",
            Self::Internal { .. } => "internal",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::Domain(d) => d.to_string(),
            Self::Access(a) => a.to_string(),
            Self::Unauthenticated(a) => a.to_string(),
            Self::BadRequest { message, .. }
            | Self::NotFound { message }
            | Self::MethodNotAllowed { message } => message.clone(),
            Self::PayloadTooLarge { limit } => format!("request body is larger than {limit} bytes"),
            Self::Busy => "the grant kept changing while this request was applied".into(),
            Self::RateLimited { retry_after } => {
                format!("too many requests from this address; try again in {retry_after}s")
            }
            Self::BodyTimeout { secs } => {
                format!("the request body did not arrive within {secs}s")
            }
            Self::Timeout { secs } => {
                format!("the broker did not finish this request within {secs}s")
            }
            Self::Unavailable { id } => format!("the database is unavailable (error id `{id}`)"),
            Self::Internal { id } => format!("internal error (error id `{id}`)"),
        }
    }

    pub fn help(&self) -> String {
        match self {
            Self::Domain(d) => d.help(),
            Self::Access(a) => a.help(),
            Self::Unauthenticated(a) => a.help().into(),
            Self::BadRequest { help, .. } => help.clone(),
            Self::PayloadTooLarge { .. } => {
                "send a smaller request; no breakglass request needs more than a few KiB".into()
            }
            Self::NotFound { .. } | Self::MethodNotAllowed { .. } => {
                "see the API reference in docs/api.md".into()
            }
            Self::Busy => "send the request again".into(),
            Self::RateLimited { .. } => {
                "slow down and retry after the seconds in `Retry-After`; the broker's operator sets the rate per source address (`serve --rate-limit`, `--rate-burst`)".into()
            }
            Self::BodyTimeout { .. } => {
                "send the whole body at once; nothing was changed".into()
            }
            Self::Timeout { .. } => {
                "it may or may not have taken effect: look (for example `breakglass grants show ID`) before sending it again, and tell the broker's operator if it keeps happening".into()
            }
            Self::Unavailable { .. } => {
                "nothing was changed; retry shortly, and tell the broker's operator the error id"
                    .into()
            }
            Self::Internal { .. } => {
                "tell the broker's operator the error id; the details are in its log".into()
            }
        }
    }

    /// Whether this refusal is about what the caller asked (audited as `auth.denied`), as opposed
    /// to the broker failing.
    pub fn is_refusal(&self) -> bool {
        self.status().is_client_error()
            && !matches!(
                self,
                Self::Unauthenticated(_)
                    | Self::Busy
                    | Self::RateLimited { .. }
                    | Self::BodyTimeout { .. }
            )
    }
}

fn error_id() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        Self::Access(e)
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        Self::Domain(e)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Domain(d) => Self::Domain(d),
            ServiceError::Access(a) => Self::Access(a),
            ServiceError::Busy | ServiceError::Store(StoreError::Conflict) => Self::Busy,
            ServiceError::Store(ref s) if s.is_unavailable() => {
                let id = error_id();
                tracing::error!(error_id = %id, error = %e, "database unavailable");
                Self::Unavailable { id }
            }
            other => Self::internal(&other),
        }
    }
}

impl From<AuthFailure> for ApiError {
    fn from(e: AuthFailure) -> Self {
        match e {
            AuthFailure::Auth(a) => Self::Unauthenticated(a),
            AuthFailure::Service(b) => b.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code(), "message": self.message(), "help": self.help() } });
        let mut resp = (self.status(), Json(body)).into_response();
        match self {
            Self::Unauthenticated(_) => {
                resp.headers_mut().insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer"),
                );
            }
            Self::RateLimited { retry_after } => {
                resp.headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, retry_after.into());
            }
            _ => {}
        }
        resp
    }
}
