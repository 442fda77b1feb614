//! The HTTP API: JSON under `/v1`, the token key set, introspection, health and metrics. See
//! `docs/api.md`.
//!
//! Every route is one row of [`routes`]: its method, its path and the [`Action`] it performs (none
//! for the few that need no token). The router is built from that table and attaches each route's
//! action to its requests; the [`Caller`] extractor authenticates the token and checks the
//! action's scope before a handler runs, and the services check the rest (policy, step-up) from the
//! same action. Handlers only parse, call one service and shape the answer.

mod admin;
mod attestations;
mod audit;
mod drills;
mod error;
mod extract;
pub(crate) mod fuzz;
mod grants;
mod health;
mod jwt;
mod limits;
mod lockdown;
mod reviews;
mod roles;
mod signin;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{MethodRouter, get, post};
use axum::{Extension, Router};
use breakglass_core::Action;
use breakglass_core::text::redact_tokens;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

pub use error::ApiError;
pub use extract::BODY_LIMIT;
pub(crate) use jwt::active_claims;

use crate::app::App;
use crate::signin::Caller;
use crate::startup::config::Limits;

pub type AppState = Arc<App>;

/// One route: what it is, and what it does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    /// The action the route performs; `None` for the routes that need no token.
    pub action: Option<Action>,
}

/// The action a route performs, attached to each of its requests.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RouteAction(pub(crate) Action);

type Handler = MethodRouter<AppState>;

/// Every route with its handler.
fn table() -> Vec<(Route, Handler)> {
    use Action as A;
    let r = |method: Method, path: &'static str, action: Option<Action>, h: Handler| {
        (
            Route {
                method,
                path,
                action,
            },
            h,
        )
    };
    let (g, p) = (Method::GET, Method::POST);
    vec![
        r(g.clone(), "/healthz", None, get(health::healthz)),
        r(g.clone(), "/readyz", None, get(health::readyz)),
        r(g.clone(), "/metrics", None, get(health::metrics)),
        r(g.clone(), "/.well-known/jwks.json", None, get(jwt::jwks)),
        r(p.clone(), "/v1/login", None, post(signin::login)),
        r(
            p.clone(),
            "/v1/introspect",
            Some(A::Introspect),
            post(jwt::introspect),
        ),
        r(g.clone(), "/v1/whoami", Some(A::WhoAmI), get(admin::whoami)),
        r(
            p.clone(),
            "/v1/logout",
            Some(A::Logout),
            post(signin::logout),
        ),
        r(
            p.clone(),
            "/v1/step-up",
            Some(A::StepUp),
            post(signin::step_up),
        ),
        r(
            p.clone(),
            "/v1/totp/enroll",
            Some(A::TotpEnroll),
            post(signin::totp_enroll),
        ),
        r(
            p.clone(),
            "/v1/totp/confirm",
            Some(A::TotpConfirm),
            post(signin::totp_confirm),
        ),
        r(
            p.clone(),
            "/v1/password",
            Some(A::PasswordChange),
            post(signin::change_password),
        ),
        r(
            p.clone(),
            "/v1/users/{name}/password-reset",
            Some(A::UserPasswordReset),
            post(signin::reset_password),
        ),
        r(
            p.clone(),
            "/v1/users/{name}/totp-reset",
            Some(A::UserTotpReset),
            post(signin::reset_totp),
        ),
        r(
            p.clone(),
            "/v1/users/{name}/disable",
            Some(A::UserDisable),
            post(signin::disable),
        ),
        r(
            p.clone(),
            "/v1/users/{name}/enable",
            Some(A::UserEnable),
            post(signin::enable),
        ),
        r(
            g.clone(),
            "/v1/policy/explain",
            Some(A::PolicyExplain),
            get(signin::explain),
        ),
        r(
            g.clone(),
            "/v1/users",
            Some(A::UserList),
            get(admin::list_users),
        ),
        r(
            p.clone(),
            "/v1/users",
            Some(A::UserAdd),
            post(admin::add_user),
        ),
        r(
            g.clone(),
            "/v1/tokens",
            Some(A::TokenList),
            get(admin::list_tokens),
        ),
        r(
            p.clone(),
            "/v1/tokens",
            Some(A::TokenCreate),
            post(admin::create_token),
        ),
        r(
            p.clone(),
            "/v1/tokens/{id}/revoke",
            Some(A::TokenRevoke),
            post(admin::revoke_token),
        ),
        r(g.clone(), "/v1/roles", Some(A::RoleList), get(roles::list)),
        r(
            g.clone(),
            "/v1/roles/{id}",
            Some(A::RoleShow),
            get(roles::show),
        ),
        r(
            p.clone(),
            "/v1/roles/{id}/attest",
            Some(A::RoleAttest),
            post(attestations::attest),
        ),
        r(
            g.clone(),
            "/v1/grants",
            Some(A::GrantList),
            get(grants::list),
        ),
        r(
            p.clone(),
            "/v1/grants",
            Some(A::GrantRequest),
            post(grants::request),
        ),
        r(
            g.clone(),
            "/v1/grants/{id}",
            Some(A::GrantShow),
            get(grants::show),
        ),
        r(
            p.clone(),
            "/v1/grants/{id}/approve",
            Some(A::GrantApprove),
            post(grants::approve),
        ),
        r(
            p.clone(),
            "/v1/grants/{id}/deny",
            Some(A::GrantDeny),
            post(grants::deny),
        ),
        r(
            p.clone(),
            "/v1/grants/{id}/cancel",
            Some(A::GrantCancel),
            post(grants::cancel),
        ),
        r(
            p.clone(),
            "/v1/grants/{id}/revoke",
            Some(A::GrantRevoke),
            post(grants::revoke),
        ),
        r(
            p.clone(),
            "/v1/grants/{id}/extend",
            Some(A::GrantExtend),
            post(grants::extend),
        ),
        r(
            p.clone(),
            "/v1/grants/{id}/credential",
            Some(A::CredentialReveal),
            post(grants::credential),
        ),
        // Drills (issue 13, item 3).
        r(
            p.clone(),
            "/v1/drills",
            Some(A::DrillStart),
            post(drills::start),
        ),
        r(
            g.clone(),
            "/v1/drills",
            Some(A::DrillList),
            get(drills::list),
        ),
        r(
            g.clone(),
            "/v1/drills/{id}",
            Some(A::DrillShow),
            get(drills::show),
        ),
        r(
            g.clone(),
            "/v1/audit/tail",
            Some(A::AuditTail),
            get(audit::tail),
        ),
        r(
            g.clone(),
            "/v1/audit/key",
            Some(A::AuditKey),
            get(audit::key),
        ),
        r(
            g.clone(),
            "/v1/audit/checkpoint",
            Some(A::AuditCheckpoint),
            get(audit::checkpoint),
        ),
        r(
            g.clone(),
            "/v1/audit/prove/{seq}",
            Some(A::AuditProve),
            get(audit::prove),
        ),
        r(
            g.clone(),
            "/v1/audit/consistency",
            Some(A::AuditConsistency),
            get(audit::consistency),
        ),
        r(
            g.clone(),
            "/v1/audit/export",
            Some(A::AuditExport),
            get(audit::export),
        ),
        // Lockdown.
        r(
            p.clone(),
            "/v1/lockdown",
            Some(A::LockdownEngage),
            post(lockdown::engage),
        ),
        r(
            p.clone(),
            "/v1/lockdown/lift",
            Some(A::LockdownLift),
            post(lockdown::lift),
        ),
        r(
            g.clone(),
            "/v1/lockdown",
            Some(A::LockdownStatus),
            get(lockdown::status),
        ),
        // Post-use reviews.
        r(
            g.clone(),
            "/v1/reviews",
            Some(A::ReviewList),
            get(reviews::list),
        ),
        r(
            g,
            "/v1/grants/{id}/review",
            Some(A::ReviewShow),
            get(reviews::show),
        ),
        r(
            p,
            "/v1/grants/{id}/review",
            Some(A::ReviewRecord),
            post(reviews::record),
        ),
    ]
}

/// Every route the router serves, with its action: what the route table test walks.
pub fn routes() -> Vec<Route> {
    table().into_iter().map(|(r, _)| r).collect()
}

/// The routes alone, as the in-process tests drive them: no limits, no HSTS.
pub fn router(state: AppState) -> Router {
    build(state, None)
}

/// The routes as `serve` answers them: rate limited per source, with body and request
/// deadlines, and HSTS on every answer when `https`.
pub fn serving_router(state: AppState, limits: &Limits, https: bool) -> Router {
    build(state, Some((limits, https)))
}

fn build(state: AppState, serving: Option<(&Limits, bool)>) -> Router {
    let mut router = Router::new();
    for (route, handler) in table() {
        let handler = match route.action {
            Some(action) => handler.layer(Extension(RouteAction(action))),
            None => handler,
        };
        router = router.route(route.path, handler);
    }
    let mut router = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::custom(on_panic));
    // The first layer added runs last: a request meets the rate limit, then the request
    // deadline, then the body deadline; every answer, refusals included, is logged.
    if let Some((limits, _)) = serving {
        router = router
            .layer(middleware::from_fn_with_state(
                limits.body_timeout,
                limits::body_deadline,
            ))
            .layer(middleware::from_fn_with_state(
                limits.request_timeout,
                limits::request_timeout,
            ));
        if let Some(rate) = limits.rate {
            router = router.layer(middleware::from_fn_with_state(
                Arc::new(limits::SourceLimiter::new(
                    rate,
                    state.trusted_proxies.clone(),
                )),
                limits::rate_limit,
            ));
        }
    }
    let mut router =
        router
            .layer(middleware::from_fn(log_request))
            .layer(SetSensitiveRequestHeadersLayer::new([
                axum::http::header::AUTHORIZATION,
            ]));
    if let Some((_, true)) = serving {
        router = router.layer(middleware::from_fn(limits::hsts));
    }
    router.with_state(state)
}

/// A path as it may be shown or logged: cut, with any whole API token cut down to its id.
pub(crate) fn shown_path(path: &str) -> String {
    redact_tokens(&path.chars().take(200).collect::<String>()).into_owned()
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound {
        message: format!("no such endpoint `{}`", shown_path(uri.path())),
    }
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        message: format!("`{method}` is not allowed on `{}`", shown_path(uri.path())),
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
    let path = shown_path(req.uri().path());
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

/// Runs a handler body for an authenticated caller; if it refuses them, records `auth.denied`
/// under the caller's action (naming the grant, when `grant` is a valid grant id).
pub(crate) async fn audited<T>(
    app: &App,
    caller: &Caller,
    grant: Option<&str>,
    fut: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let res = fut.await;
    if let Err(e) = &res
        && e.is_refusal()
    {
        let grant = grant.and_then(|g| g.parse::<breakglass_core::GrantId>().ok());
        app.record_denial(caller, grant, e.code(), &e.message())
            .await;
    }
    res
}
