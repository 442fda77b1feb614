//! Request extractors: the authenticated [`Caller`] (its token checked, and its scope against the
//! route's action), and a body that is read only after the caller is known, so that even a
//! malformed body from an authenticated caller is an audited refusal.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use breakglass_core::Action;
use serde::de::DeserializeOwned;

use crate::api::limits::BodyDeadline;
use crate::api::{ApiError, AppState, RouteAction};
use crate::error::AuthError;
use crate::signin::Caller;
use crate::signin::certificate::CertIdentity;

/// The largest request body accepted anywhere.
pub const BODY_LIMIT: usize = 1024 * 1024;

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // INVARIANT: every route that takes a `Caller` names its action in the route table.
        let Some(RouteAction(action)) = parts.extensions.get::<RouteAction>().copied() else {
            return Err(ApiError::internal(&format!(
                "route `{}` names no action",
                crate::api::shown_path(parts.uri.path())
            )));
        };
        let Some(value) = parts.headers.get(AUTHORIZATION) else {
            // No token: a client certificate mapped in `[client_certs]` may stand for a service.
            let Some(id) = parts.extensions.get::<CertIdentity>() else {
                return Err(ApiError::Unauthenticated(AuthError::Missing));
            };
            if action == Action::Logout {
                return Err(ApiError::bad_request(
                    "a client certificate has no session to end",
                    "stop presenting the certificate; to end its access for good, remove its `[client_certs]` entry or disable the principal",
                ));
            }
            let caller = state.signin.authenticate_certificate(id, action).await?;
            return check_scope(parts, state, caller).await;
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
        let caller = state.signin.authenticate(token, action).await?;
        check_scope(parts, state, caller).await
    }
}

/// The scope is the first thing checked, before any body is read or anything is loaded.
async fn check_scope(parts: &Parts, state: &AppState, caller: Caller) -> Result<Caller, ApiError> {
    if let Err(e) = state.access.scope(&caller, caller.action) {
        let err = ApiError::Access(e);
        state
            .record_denial(
                &caller,
                grant_in(parts.uri.path()),
                err.code(),
                &err.message(),
            )
            .await;
        return Err(err);
    }
    Ok(caller)
}

/// The raw body, or why it could not be read. Never rejects by itself.
pub(super) struct RawBody(Result<Bytes, ApiError>);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let deadline = req.extensions().get::<BodyDeadline>().copied();
        Ok(Self(Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit: BODY_LIMIT }
            } else if let Some(BodyDeadline(d)) = deadline.filter(|_| timed_out(&rej)) {
                ApiError::BodyTimeout { secs: d.as_secs() }
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
    /// A body that arrived whole: what the fuzzer feeds.
    pub(super) fn from_bytes(bytes: &[u8]) -> Self {
        Self(Ok(Bytes::copy_from_slice(bytes)))
    }

    /// Parses the body as a JSON object of `T`; an empty body is `{}`. Anything but an object
    /// (an array, a string, a number) is refused, however `T` would read it.
    pub(super) fn json<T: DeserializeOwned>(self, example: &str) -> Result<T, ApiError> {
        let bytes = self.0?;
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        let bytes: &[u8] = match first {
            None => b"{}",
            Some(b'{') => &bytes,
            Some(_) => {
                return Err(ApiError::bad_request(
                    "malformed JSON body: it must be a JSON object",
                    format!("send a JSON object like {example}"),
                ));
            }
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

/// Whether reading the body failed because its deadline passed.
fn timed_out(rej: &dyn std::error::Error) -> bool {
    let mut cur = rej.source();
    while let Some(e) = cur {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The grant a path is about (`/v1/grants/{id}/…`), if its id is a valid grant id.
fn grant_in(path: &str) -> Option<breakglass_core::GrantId> {
    path.strip_prefix("/v1/grants/")?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// Where a request came from, for throttling and the audit trail: the peer's address, or, when
/// the peer is one of the trusted proxies (`serve --trusted-proxy`), the client its
/// `X-Forwarded-For` names: the rightmost address in it that is not itself a trusted proxy. From
/// any other peer the header is ignored, so nobody can pick the address their failures count
/// against. `unknown` when the connection's address is not known (in-process tests).
pub(crate) struct Source(pub String);

impl FromRequestParts<AppState> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(peer) = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
        else {
            return Ok(Self("unknown".to_owned()));
        };
        Ok(Self(
            client(peer, &parts.headers, &state.trusted_proxies).to_string(),
        ))
    }
}

/// The client behind `peer` (see [`Source`]).
pub(super) fn client(
    peer: IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[ipnet::IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // Every X-Forwarded-For header, in order, as one list; the nearest hop is last.
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse::<IpAddr>().ok())
        .collect();
    hops.iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or_else(|| hops.first())
        .copied()
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // From an untrusted peer the header is ignored.
        assert_eq!(
            client(ip("198.51.100.9"), &headers(&["203.0.113.7"]), &trusted),
            ip("198.51.100.9")
        );
        // From a trusted proxy: the rightmost hop that is not a trusted proxy.
        assert_eq!(
            client(
                ip("10.0.0.5"),
                &headers(&["6.6.6.6, 203.0.113.7, 10.0.0.9"]),
                &trusted
            ),
            ip("203.0.113.7")
        );
        assert_eq!(
            client(
                ip("10.0.0.5"),
                &headers(&["6.6.6.6", "203.0.113.7"]),
                &trusted
            ),
            ip("203.0.113.7")
        );
        // Garbage hops are skipped; no header means the proxy itself.
        assert_eq!(
            client(
                ip("10.0.0.5"),
                &headers(&["nonsense, 203.0.113.7"]),
                &trusted
            ),
            ip("203.0.113.7")
        );
        assert_eq!(
            client(ip("10.0.0.5"), &headers(&[]), &trusted),
            ip("10.0.0.5")
        );
        assert_eq!(
            client(ip("10.0.0.5"), &headers(&["10.1.1.1"]), &trusted),
            ip("10.1.1.1"),
            "only proxies in the chain: the farthest"
        );
    }
}
