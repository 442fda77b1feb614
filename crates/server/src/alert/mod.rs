//! Alerts: which channels hear of what ([`route`]), what they are told ([`render`]), the config
//! file's alert sections ([`config`]), and publishing signed checkpoints to channels. The
//! dispatcher that delivers them is a worker (`workers/alerts.rs`).
//!
//! The audit log is the outbox's source: every state change's events are committed with it, so
//! nothing that must alert can be lost. The dispatcher routes events from the store's alert cursor
//! into one delivery row per (event, channel), in one transaction that also moves the cursor, then
//! delivers each at least once with the alert's id as the idempotency key, retrying with
//! exponential backoff and jitter. After `max_attempts` the delivery is dead and `alert.failed` is
//! appended, which is itself routed to every other channel. A dead or hanging sink never slows a
//! request.

pub mod config;
mod render;
mod route;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use breakglass_core::{Duration, EventKind, GrantId, Timestamp};
use breakglass_notify::{Alert, Channel, Severity};
use serde_json::Value;

use crate::StartupError;
use config::DEFAULT_MAX_ATTEMPTS;
pub use config::{FileConfig, check_role_alerts, record_config};
use route::Audience;

/// The channels in force and the rules for using them, and the dispatcher's bookkeeping. The
/// rules come from the config file and are replaced whole when it is reloaded (SIGHUP); the
/// bookkeeping (deliveries in flight, checkpoints published) stays.
pub struct Alerting {
    rules: std::sync::RwLock<Arc<Rules>>,
    /// Per checkpoint channel, the largest checkpoint this process has published there.
    published: tokio::sync::Mutex<HashMap<String, u64>>,
    /// Deliveries in flight in this process, per channel.
    pub(crate) in_flight: std::sync::Mutex<HashMap<String, u32>>,
    /// Signalled whenever a delivery finishes: a slot is free, so the dispatcher may start more
    /// at once instead of waiting for its next tick.
    pub(crate) slot_freed: tokio::sync::Notify,
}

/// What the config file says about alerts, with its channels built.
struct Rules {
    channels: BTreeMap<String, Arc<dyn Channel>>,
    always: Vec<String>,
    checkpoints: Vec<String>,
    expiring_soon: Option<Duration>,
    max_attempts: u32,
    link: Option<String>,
}

impl std::fmt::Debug for Alerting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rules = self.rules();
        f.debug_struct("Alerting")
            .field("channels", &rules.channels.keys().collect::<Vec<_>>())
            .field("always", &rules.always)
            .finish_non_exhaustive()
    }
}

/// An audit event as the dispatcher reads it: the typed kind, and the JSON for its fields.
pub(crate) struct Parsed {
    pub(crate) seq: u64,
    pub(crate) kind: EventKind,
    pub(crate) type_name: String,
    pub(crate) grant: Option<GrantId>,
    pub(crate) emergency: bool,
    /// About a drill: every alert says so.
    pub(crate) drill: bool,
    pub(crate) time: Timestamp,
    pub(crate) body: Value,
}

/// Reads an event back from its canonical bytes; `None` if they are not an event this version
/// knows (only tampering, or a newer broker's event, can cause that).
pub(crate) fn parse(seq: u64, bytes: &[u8]) -> Option<Parsed> {
    let body: Value = serde_json::from_slice(bytes).ok()?;
    let kind: EventKind = serde_json::from_value(body.clone()).ok()?;
    Some(Parsed {
        seq,
        type_name: body.get("type")?.as_str()?.to_owned(),
        kind,
        grant: body
            .get("grant")
            .and_then(Value::as_str)
            .and_then(|g| g.parse().ok()),
        emergency: body.get("emergency") == Some(&Value::Bool(true)),
        drill: body.get("drill") == Some(&Value::Bool(true)),
        time: body
            .get("time")
            .and_then(Value::as_str)
            .and_then(Timestamp::parse_rfc3339)
            .unwrap_or(Timestamp::from_unix_millis(0)),
        body,
    })
}

/// A field of an event as text.
pub(crate) fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

impl Alerting {
    /// No channels: nothing is routed, the cursor still moves.
    pub fn disabled() -> Self {
        Self::with(Rules {
            channels: BTreeMap::new(),
            always: Vec::new(),
            checkpoints: Vec::new(),
            expiring_soon: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            link: None,
        })
    }

    /// Builds every channel, reading its secrets now: a missing secret stops the start.
    pub fn build(cfg: &FileConfig, path: &Path) -> Result<Self, StartupError> {
        Ok(Self::with(Rules::build(cfg, path)?))
    }

    fn with(rules: Rules) -> Self {
        Self {
            rules: std::sync::RwLock::new(Arc::new(rules)),
            published: tokio::sync::Mutex::new(HashMap::new()),
            in_flight: std::sync::Mutex::new(HashMap::new()),
            slot_freed: tokio::sync::Notify::new(),
        }
    }

    /// Puts the rules of a reloaded config file in force; deliveries under way finish on the
    /// channels they started on.
    pub fn replace(&self, from: Alerting) {
        let rules = from.rules();
        match self.rules.write() {
            Ok(mut r) => *r = rules,
            Err(poisoned) => *poisoned.into_inner() = rules,
        }
    }

    fn rules(&self) -> Arc<Rules> {
        match self.rules.read() {
            Ok(r) => Arc::clone(&r),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Warn holders this long before a grant ends, if at all.
    pub(crate) fn expiring_soon(&self) -> Option<Duration> {
        self.rules().expiring_soon
    }

    /// The broker's public URL, for links in alerts.
    pub(crate) fn link(&self) -> Option<String> {
        self.rules().link.clone()
    }

    /// Counts a delivery to `channel` starting (+1) or ending (-1).
    pub(crate) fn flight(&self, channel: &str, delta: i32) {
        if let Ok(mut m) = self.in_flight.lock() {
            let n = m.entry(channel.to_owned()).or_insert(0);
            *n = n.saturating_add_signed(delta);
        }
    }

    pub fn channel_names(&self) -> BTreeSet<String> {
        self.rules().channels.keys().cloned().collect()
    }

    pub fn is_enabled(&self) -> bool {
        !self.rules().channels.is_empty()
    }

    /// The channels an event goes to. `role_alerts` are the alerts of the grant's (or the
    /// changed) role as loaded now.
    pub(crate) fn route(&self, e: &Parsed, role_alerts: &[String]) -> Vec<String> {
        let rules = self.rules();
        let mut out: BTreeSet<String> = BTreeSet::new();
        match route::audience(&e.kind) {
            Audience::Nobody => {}
            Audience::Role => out.extend(role_alerts.iter().cloned()),
            Audience::RoleAndAlways => {
                out.extend(role_alerts.iter().cloned());
                out.extend(rules.always.iter().cloned());
            }
            Audience::Always => out.extend(rules.always.iter().cloned()),
            Audience::AllButItsChannel => {
                // Everyone else hears that one channel has gone quiet.
                let failed = match &e.kind {
                    EventKind::AlertFailed { channel, .. } => channel.as_str(),
                    _ => "",
                };
                out.extend(rules.channels.keys().filter(|c| *c != failed).cloned());
            }
            Audience::Every => out.extend(rules.channels.keys().cloned()),
        }
        out.retain(|c| rules.channels.contains_key(c));
        out.into_iter().collect()
    }

    /// Wait before attempt `attempts + 1`: 2 s doubling to 5 min, minus up to 25% jitter.
    pub(crate) fn backoff_ms(attempts: u32) -> i64 {
        crate::backoff::delay_ms(attempts, 2000, 300_000)
    }

    pub(crate) fn channel(&self, name: &str) -> Option<Arc<dyn Channel>> {
        self.rules().channels.get(name).cloned()
    }

    pub(crate) fn max_attempts(&self) -> u32 {
        self.rules().max_attempts
    }

    /// Sends the latest signed checkpoint to every `[alerts] checkpoints` channel that has not had
    /// it from this process. A failure is logged and retried at the next checkpoint tick; after a
    /// restart the latest is sent again (receivers keep the largest per origin).
    pub async fn publish_checkpoint(&self, cp: &breakglass_store::StoredCheckpoint, origin: &str) {
        let rules = self.rules();
        if rules.checkpoints.is_empty() {
            return;
        }
        let mut published = self.published.lock().await;
        // The note: origin, size, base64 root, blank line, signatures (C2SP tlog-checkpoint).
        let root = cp.note.lines().nth(2).unwrap_or_default().to_owned();
        for name in &rules.checkpoints {
            if published.get(name).is_some_and(|s| *s >= cp.size) {
                continue;
            }
            let Some(channel) = rules.channels.get(name) else {
                continue;
            };
            let alert = Alert {
                id: format!("{origin}:checkpoint:{}:{name}", cp.size),
                event: "audit.checkpoint".into(),
                seq: cp.size,
                severity: Severity::Info,
                summary: format!(
                    "breakglass: audit checkpoint of {} events, root {root}",
                    cp.size
                ),
                fields: BTreeMap::from([
                    ("origin".into(), origin.to_owned()),
                    ("size".into(), cp.size.to_string()),
                    ("root_hash".into(), root.clone()),
                    ("signed_at".into(), cp.signed_at.to_string()),
                    ("note".into(), cp.note.clone()),
                ]),
                time: cp.signed_at,
            };
            match channel.send(&alert).await {
                Ok(()) => {
                    published.insert(name.clone(), cp.size);
                    tracing::info!(channel = %name, size = cp.size, "audit checkpoint published to channel");
                }
                Err(e) => {
                    tracing::warn!(channel = %name, size = cp.size, error = %e, "could not publish the audit checkpoint to the channel; retrying next tick");
                }
            }
        }
    }
}

impl Rules {
    fn build(cfg: &FileConfig, path: &Path) -> Result<Self, StartupError> {
        let mut channels = BTreeMap::new();
        for (name, c) in &cfg.channels {
            let ch = c.build(name.as_str()).map_err(|e| StartupError::Config {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
            channels.insert(name.to_string(), ch);
        }
        Ok(Self {
            channels,
            always: cfg.alerts.always.iter().map(ToString::to_string).collect(),
            checkpoints: cfg
                .alerts
                .checkpoints
                .iter()
                .map(ToString::to_string)
                .collect(),
            expiring_soon: cfg.alerts.expiring_soon,
            max_attempts: cfg.alerts.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
            link: cfg
                .alerts
                .link
                .as_ref()
                .map(|l| l.trim_end_matches('/').to_owned()),
        })
    }
}

/// How many events one routing pass reads, and deliveries one pass claims.
pub(crate) const ROUTE_BATCH: u32 = 256;
pub(crate) const CLAIM_BATCH: u32 = 32;
/// How many deliveries run at once in one process, and to one channel.
pub(crate) const DELIVERY_SLOTS: usize = 16;
pub(crate) const PER_CHANNEL_SLOTS: u32 = 4;
/// A claimed delivery is someone else's to retry if this replica has not finished it by then.
pub(crate) const LEASE_MS: i64 = 120_000;
/// The longest a channel's `timeout` may be: well inside the lease.
pub(crate) const MAX_CHANNEL_TIMEOUT_MS: i64 = 60_000;
