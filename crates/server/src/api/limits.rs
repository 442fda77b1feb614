//! What one client may ask of the broker, per request: a rate limit per source address (`429`
//! with `Retry-After`), a deadline for the body once the headers are in (`408`), a deadline for
//! the answer (`503`), and HSTS on every answer when the broker serves HTTPS. The connection-level
//! limits (header timeout, TLS handshake, connection cap) are in `startup/listen.rs`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::header::STRICT_TRANSPORT_SECURITY;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::api::ApiError;
use crate::startup::config::RateLimit;

/// `max-age` of one year: browsers keep to HTTPS for the broker's host once they have seen it.
pub(crate) const HSTS: &str = "max-age=31536000";

/// How many checks pass between sweeps of sources whose bucket is full again.
const SWEEP_EVERY: u64 = 4096;

/// A token bucket per source: an IPv4 address, or an IPv6 /64 (one host usually holds a whole
/// /64, so a finer key would let it rotate addresses past the limit).
pub(crate) struct SourceLimiter {
    buckets: DefaultKeyedRateLimiter<IpAddr>,
    /// Proxies whose `X-Forwarded-For` names the client (`serve --trusted-proxy`): behind one,
    /// each client has its own bucket, as each has its own sign-in counters.
    trusted_proxies: Vec<ipnet::IpNet>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl SourceLimiter {
    pub(crate) fn new(rate: RateLimit, trusted_proxies: Vec<ipnet::IpNet>) -> Self {
        let quota = Quota::per_second(rate.per_second).allow_burst(rate.burst);
        let clock = DefaultClock::default();
        Self {
            buckets: governor::RateLimiter::dashmap_with_clock(quota, clock.clone()),
            trusted_proxies,
            clock,
            checks: AtomicU64::new(0),
        }
    }

    /// `None` if `source` may send a request now; otherwise how long until it may.
    fn check(&self, source: IpAddr) -> Option<Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            // Memory stays bounded by the sources active lately, however many have come and gone.
            self.buckets.retain_recent();
            self.buckets.shrink_to_fit();
        }
        self.buckets
            .check_key(&key(source))
            .err()
            .map(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// Refuses a source over its rate with `429` and `Retry-After` (whole seconds, at least 1).
pub(crate) async fn rate_limit(
    State(limiter): State<Arc<SourceLimiter>>,
    req: Request,
    next: Next,
) -> Response {
    // Every request `serve` answers carries its peer; one without (never in practice) shares
    // the unspecified address's bucket rather than going unlimited.
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let source = super::extract::client(peer, req.headers(), &limiter.trusted_proxies);
    match limiter.check(source) {
        None => next.run(req).await,
        Some(wait) => {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            ApiError::RateLimited {
                retry_after: secs.max(1),
            }
            .into_response()
        }
    }
}

/// Answers `503` if the broker has not answered within `timeout` (reading the body included). The
/// work is dropped where it stands; every change is committed whole or not at all, and an
/// activation or revocation cut short is finished by the reconciler.
pub(crate) async fn request_timeout(
    State(timeout): State<Duration>,
    req: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::warn!(secs = timeout.as_secs(), "request timed out");
            ApiError::Timeout {
                secs: timeout.as_secs(),
            }
            .into_response()
        }
    }
}

/// How long a request's body may take, as the body extractor reads it to say so.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyDeadline(pub(crate) Duration);

/// The body must arrive whole within `timeout` of the headers (a client trickling it in byte by
/// byte is cut off as surely as one that stops).
pub(crate) async fn body_deadline(
    State(timeout): State<Duration>,
    mut req: Request,
    next: Next,
) -> Response {
    req.extensions_mut().insert(BodyDeadline(timeout));
    let req = req.map(|body| Body::new(tower_http::timeout::DeadlineBody::new(timeout, body)));
    next.run(req).await
}

/// `Strict-Transport-Security` on every answer.
pub(crate) async fn hsts(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    resp.headers_mut()
        .insert(STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_host_is_one_source_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(key(a), key(b));
        assert_ne!(key(a), key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_source_over_its_burst_waits_and_others_do_not() {
        let limiter = SourceLimiter::new(
            RateLimit {
                per_second: std::num::NonZeroU32::MIN,
                burst: std::num::NonZeroU32::MIN.saturating_add(2),
            },
            Vec::new(),
        );
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let two: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limiter.check(one), None);
        }
        let wait = limiter
            .check(one)
            .expect("the fourth at once is over the burst");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert_eq!(limiter.check(two), None);
    }
}
