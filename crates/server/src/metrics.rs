//! Metrics for `GET /metrics` (OpenMetrics text) and the alert rule behind `/readyz`'s
//! `degraded`. See `docs/api.md`.
//!
//! Two kinds of values, kept apart:
//!
//! - counters this process increments as things happen (requests, approvals, activations,
//!   revocations, expiries, revocation retries, failed alert deliveries), registered once in the
//!   [`Metrics`] registry that the broker holds. They count what *this* process did: with several
//!   replicas, sum them.
//! - gauges read from the store at scrape time (grants by state, the alert outbox, the audit log
//!   and its latest checkpoint), built into a fresh registry per scrape so a value is never stale
//!   and nothing has to be kept in step. They are the installation's, the same on every replica.
//!
//! Nothing here holds a secret: names, counts, ages and channel names only.

use std::collections::{BTreeMap, BTreeSet};

use breakglass_core::{GrantState, StateKind, Timestamp};
use breakglass_store::ChannelBacklog;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use breakglass_core::Clock;
use breakglass_store::Store;

use crate::error::ServiceError;

/// The `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric name starts with `breakglass_`.
const PREFIX: &str = "breakglass";

type ChannelLabel = [(&'static str, String); 1];
type StateLabel = [(&'static str, &'static str); 1];
type Count = Gauge<u64, std::sync::atomic::AtomicU64>;
type Seconds = Gauge<f64, std::sync::atomic::AtomicU64>;

/// This process's counters, in an explicit registry (no global recorder, so brokers in one test
/// process never share a count).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Counter,
    approvals: Counter,
    activations: Counter,
    revocations: Counter,
    expiries: Counter,
    revoke_retries: Counter,
    alert_failures: Family<ChannelLabel, Counter>,
}

impl Metrics {
    /// Registers the counters, with `alert_delivery_failures_total` at 0 for each configured
    /// channel (a series that exists from the start is simpler to alert on than one that appears).
    pub fn new<'a>(channels: impl IntoIterator<Item = &'a String>) -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let mut counter = |name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let requests = counter("requests", "Grant requests made through this process");
        let approvals = counter(
            "approvals",
            "Approvals (of requests and of extensions) recorded by this process",
        );
        let activations = counter("activations", "Grants this process activated");
        let revocations = counter("revocations", "Grants this process ended as revoked");
        let expiries = counter("expiries", "Grants this process ended as expired");
        let revoke_retries = counter(
            "revoke_retries",
            "Revocations a target refused that this process scheduled for another attempt",
        );
        let alert_failures = Family::<ChannelLabel, Counter>::default();
        for channel in channels {
            let _ = alert_failures.get_or_create(&[("channel", channel.clone())]);
        }
        registry.register(
            "alert_delivery_failures",
            "Failed alert delivery attempts made by this process, by channel",
            alert_failures.clone(),
        );
        Self {
            registry,
            requests,
            approvals,
            activations,
            revocations,
            expiries,
            revoke_retries,
            alert_failures,
        }
    }

    pub(crate) fn requested(&self) {
        self.requests.inc();
    }

    pub(crate) fn approved(&self) {
        self.approvals.inc();
    }

    pub(crate) fn activated(&self) {
        self.activations.inc();
    }

    /// A grant's revocation completed: counted as a revocation or an expiry by how it ended.
    pub(crate) fn ended(&self, state: &GrantState) {
        let counter = match state {
            GrantState::Revoked { .. } => &self.revocations,
            GrantState::Expired { .. } => &self.expiries,
            _ => return,
        };
        counter.inc();
    }

    pub(crate) fn revoke_retry_scheduled(&self) {
        self.revoke_retries.inc();
    }

    /// One delivery attempt to `channel` failed.
    pub fn alert_failed(&self, channel: &str) {
        self.alert_failures
            .get_or_create(&[("channel", channel.to_owned())])
            .inc();
    }
}

/// The whole `/metrics` body: this process's counters, then the store's gauges in `snapshot`.
/// Writing to a `String` cannot fail; an error would mean a metric could not be formatted.
pub(crate) fn encode(metrics: &Metrics, snapshot: &Snapshot) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    encode_registry(&mut out, &metrics.registry)?;
    encode_registry(&mut out, &snapshot.registry())?;
    encode_eof(&mut out)?;
    Ok(out)
}

/// What one scrape reads from the store.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    /// Every state in [`GrantState::NAMES`], 0 included.
    pub(crate) grants: BTreeMap<&'static str, u64>,
    /// Every configured channel and every channel that has had a delivery.
    pub(crate) backlog: Vec<ChannelBacklog>,
    pub(crate) audit_events: u64,
    /// The latest checkpoint's size and seconds since it was signed; `None` before the first.
    pub(crate) checkpoint: Option<(u64, f64)>,
    pub(crate) now: Timestamp,
}

/// The store's side of a scrape, read now, with a zero row for every configured `channel` that
/// has had no delivery yet. A store failure is returned (the scrape answers 503), never a partial
/// page.
pub(crate) async fn snapshot(
    store: &dyn Store,
    clock: &dyn Clock,
    channels: &BTreeSet<String>,
) -> Result<Snapshot, ServiceError> {
    let (counts, mut backlog, audit_events, checkpoint) = tokio::try_join!(
        store.grant_counts(),
        store.alert_backlog(),
        store.audit_size(),
        store.latest_checkpoint(),
    )?;
    let now = clock.now();
    let mut grants: BTreeMap<&'static str, u64> =
        StateKind::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    for (state, n) in &counts {
        grants.insert(state.as_str(), *n);
    }
    let seen: BTreeSet<String> = backlog.iter().map(|b| b.channel.clone()).collect();
    for channel in channels.difference(&seen) {
        backlog.push(ChannelBacklog {
            channel: channel.clone(),
            pending: 0,
            oldest_pending: None,
            dead: 0,
            delivered: 0,
            failing: 0,
        });
    }
    backlog.sort_by(|a, b| a.channel.cmp(&b.channel));
    Ok(Snapshot {
        grants,
        backlog,
        audit_events,
        checkpoint: checkpoint.map(|c| (c.size, age_secs(c.signed_at, now))),
        now,
    })
}

impl Snapshot {
    /// The scrape-time gauges in a registry of their own.
    fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix(PREFIX);
        let grants = Family::<StateLabel, Count>::default();
        for (state, n) in &self.grants {
            grants.get_or_create(&[("state", *state)]).set(*n);
        }
        r.register("grants", "Grants in each state, now", grants);

        let pending = Family::<ChannelLabel, Count>::default();
        let oldest = Family::<ChannelLabel, Seconds>::default();
        let dead = Family::<ChannelLabel, Count>::default();
        let failing = Family::<ChannelLabel, Count>::default();
        for b in &self.backlog {
            let label = [("channel", b.channel.clone())];
            pending.get_or_create(&label).set(b.pending);
            let age = b.oldest_pending.map_or(0.0, |t| age_secs(t, self.now));
            oldest.get_or_create(&label).set(age);
            dead.get_or_create(&label).set(b.dead);
            failing.get_or_create(&label).set(b.failing);
        }
        r.register(
            "alert_outbox_pending",
            "Alert deliveries neither delivered nor given up, by channel",
            pending,
        );
        r.register_with_unit(
            "alert_outbox_oldest_age",
            "Age of the oldest pending alert delivery, by channel (0 when none is pending)",
            Unit::Seconds,
            oldest,
        );
        r.register(
            "alert_outbox_dead",
            "Alert deliveries given up after every attempt failed, by channel",
            dead,
        );
        r.register(
            "alert_outbox_failing",
            "Pending alert deliveries whose last attempt failed, by channel",
            failing,
        );

        let audit = Count::default();
        audit.set(self.audit_events);
        r.register("audit_events", "Events in the audit log", audit);
        // Before the first checkpoint there is nothing to give: the series are absent rather
        // than made-up numbers (alert on `absent(...)` if that matters).
        if let Some((size, age)) = self.checkpoint {
            let g = Seconds::default();
            g.set(age);
            r.register_with_unit(
                "audit_last_checkpoint_age",
                "Time since the latest signed audit checkpoint",
                Unit::Seconds,
                g,
            );
            let g = Count::default();
            g.set(size);
            r.register(
                "audit_last_checkpoint_size",
                "Events covered by the latest signed audit checkpoint",
                g,
            );
        }
        r
    }
}

/// The rule behind `/readyz`'s `degraded`: a channel is failing while it has a pending delivery
/// whose last attempt failed (`failing > 0`). It clears as soon as that delivery gets through or
/// is given up (dead letters are counted in `/metrics`, not here: they do not heal by themselves,
/// and a readiness answer that never clears helps nobody).
pub(crate) fn failing_channels(backlog: &[ChannelBacklog]) -> Vec<String> {
    backlog
        .iter()
        .filter(|b| b.failing > 0)
        .map(|b| b.channel.clone())
        .collect()
}

/// Seconds from `then` to `now`, never negative (replicas' clocks may disagree a little). Ages
/// in milliseconds stay far below 2^52, where the cast to `f64` is exact.
fn age_secs(then: Timestamp, now: Timestamp) -> f64 {
    (now.unix_millis().saturating_sub(then.unix_millis())).max(0) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backlog(channel: &str, failing: u64) -> ChannelBacklog {
        ChannelBacklog {
            channel: channel.into(),
            pending: failing + 1,
            oldest_pending: Some(Timestamp::from_unix_millis(1_000)),
            dead: 2,
            delivered: 5,
            failing,
        }
    }

    #[test]
    fn a_channel_with_a_failed_pending_delivery_is_failing() {
        let b = [backlog("mail", 0), backlog("oncall", 1)];
        assert_eq!(failing_channels(&b), vec!["oncall".to_owned()]);
        assert!(failing_channels(&[backlog("mail", 0)]).is_empty());
    }

    #[test]
    fn counters_and_gauges_encode_as_openmetrics() {
        let channels = ["oncall".to_owned()];
        let m = Metrics::new(&channels);
        m.requested();
        m.alert_failed("oncall");
        m.alert_failed("oncall");
        let snapshot = Snapshot {
            grants: StateKind::ALL.iter().map(|s| (s.as_str(), 0)).collect(),
            backlog: vec![backlog("oncall", 1)],
            audit_events: 7,
            checkpoint: None,
            now: Timestamp::from_unix_millis(61_500),
        };
        let out = encode(&m, &snapshot).unwrap();
        for line in [
            "breakglass_requests_total 1",
            "breakglass_approvals_total 0",
            "breakglass_alert_delivery_failures_total{channel=\"oncall\"} 2",
            "breakglass_grants{state=\"timed_out\"} 0",
            "breakglass_alert_outbox_pending{channel=\"oncall\"} 2",
            "breakglass_alert_outbox_oldest_age_seconds{channel=\"oncall\"} 60.5",
            "breakglass_alert_outbox_failing{channel=\"oncall\"} 1",
            "breakglass_alert_outbox_dead{channel=\"oncall\"} 2",
            "breakglass_audit_events 7",
        ] {
            assert!(out.lines().any(|l| l == line), "no `{line}` in:\n{out}");
        }
        assert!(!out.contains("audit_last_checkpoint_age"));
        assert!(out.ends_with("# EOF\n"));
    }
}
