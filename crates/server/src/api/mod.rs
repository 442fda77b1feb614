//! The HTTP API: JSON under `/v1`, the token key set, introspection, health and metrics. See
//! `docs/api.md`.

mod admin;
mod audit;
mod error;
mod extract;
mod grants;
mod health;
mod jwt;
mod roles;
mod signin;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

pub use error::ApiError;
pub use extract::BODY_LIMIT;

use crate::broker::{Broker, Caller};

pub type AppState = Arc<Broker>;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/.well-known/jwks.json", get(jwt::jwks))
        .route("/v1/introspect", post(jwt::introspect))
        .route("/v1/whoami", get(admin::whoami))
        .route("/v1/login", post(signin::login))
        .route("/v1/logout", post(signin::logout))
        .route("/v1/step-up", post(signin::step_up))
        .route("/v1/totp/enroll", post(signin::totp_enroll))
        .route("/v1/totp/confirm", post(signin::totp_confirm))
        .route("/v1/password", post(signin::change_password))
        .route(
            "/v1/users/{name}/password-reset",
            post(signin::reset_password),
        )
        .route("/v1/users/{name}/totp-reset", post(signin::reset_totp))
        .route("/v1/users/{name}/disable", post(signin::disable))
        .route("/v1/users/{name}/enable", post(signin::enable))
        .route("/v1/policy/explain", get(signin::explain))
        .route("/v1/users", get(admin::list_users).post(admin::add_user))
        .route(
            "/v1/tokens",
            get(admin::list_tokens).post(admin::create_token),
        )
        .route("/v1/tokens/{id}/revoke", post(admin::revoke_token))
        .route("/v1/roles", get(roles::list))
        .route("/v1/roles/{id}", get(roles::show))
        .route("/v1/grants", get(grants::list).post(grants::request))
        .route("/v1/grants/{id}", get(grants::show))
        .route("/v1/grants/{id}/approve", post(grants::approve))
        .route("/v1/grants/{id}/deny", post(grants::deny))
        .route("/v1/grants/{id}/cancel", post(grants::cancel))
        .route("/v1/grants/{id}/revoke", post(grants::revoke))
        .route("/v1/grants/{id}/extend", post(grants::extend))
        .route("/v1/grants/{id}/credential", post(grants::credential))
        .route("/v1/audit/tail", get(audit::tail))
        .route("/v1/audit/key", get(audit::key))
        .route("/v1/audit/checkpoint", get(audit::checkpoint))
        .route("/v1/audit/prove/{seq}", get(audit::prove))
        .route("/v1/audit/consistency", get(audit::consistency))
        .route("/v1/audit/export", get(audit::export))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::custom(on_panic))
        .layer(middleware::from_fn(log_request))
        .layer(SetSensitiveRequestHeadersLayer::new([
            axum::http::header::AUTHORIZATION,
        ]))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound {
        message: format!(
            "no such endpoint `{}`",
            crate::apitoken::redact_path(&uri.path().chars().take(200).collect::<String>())
        ),
    }
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        message: format!(
            "`{method}` is not allowed on `{}`",
            uri.path().chars().take(200).collect::<String>()
        ),
    }
}

/// A bug must not take the broker down or leak a backtrace: the request gets an error id, the
/// log gets the details, and every other request carries on.
fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    axum::response::IntoResponse::into_response(ApiError::internal(&"a request handler panicked"))
}

/// One structured log line per request: method, path, status, duration. Never headers, bodies
/// or query strings, which may carry secrets.
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    // A token pasted into a path (revoking a leaked token) must not reach the log.
    let path =
        crate::apitoken::redact_path(&req.uri().path().chars().take(200).collect::<String>());
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(%method, %path, status, ms, "request");
    } else {
        tracing::info!(%method, %path, status, ms, "request");
    }
    resp
}

/// Refuses a scoped token an action outside its scopes.
fn check_scope(caller: &Caller, action: &str) -> Result<(), crate::access::AccessError> {
    let (Some(scopes), Some(needed)) = (&caller.scopes, crate::access::scope_of(action)) else {
        return Ok(());
    };
    if scopes.iter().any(|s| s == needed) {
        return Ok(());
    }
    Err(crate::access::AccessError::ScopeMissing {
        token: caller.token_id.clone(),
        scope: needed,
        scopes: scopes.join(", "),
    })
}

/// Runs a handler body; if it refuses the authenticated caller, records `auth.denied`.
pub(crate) async fn audited<T>(
    broker: &Broker,
    caller: &Caller,
    action: &str,
    fut: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    audited_on(broker, caller, action, None, fut).await
}

/// [`audited`] for a request about one grant: the `auth.denied` event names it (when the id in
/// the path is a valid grant id).
pub(crate) async fn audited_on<T>(
    broker: &Broker,
    caller: &Caller,
    action: &str,
    grant: Option<&str>,
    fut: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let res = match check_scope(caller, action) {
        Ok(()) => fut.await,
        Err(e) => Err(e.into()),
    };
    if let Err(e) = &res
        && e.is_refusal()
    {
        let grant = grant.and_then(|g| g.parse::<breakglass_core::GrantId>().ok());
        broker
            .record_denial(caller, action, grant, e.code(), &e.message())
            .await;
    }
    res
}
