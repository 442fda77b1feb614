//! Alerts: the config file's `[alerts]` and `[channels.NAME]`, which audit events go to which
//! channels, what an alert says, and the dispatcher that delivers them.
//!
//! The audit log is the outbox's source: every state change's events are committed with it, so
//! nothing that must alert can be lost. The dispatcher routes events from the store's alert
//! cursor into one delivery row per (event, channel), in one transaction that also moves the
//! cursor, then delivers each at least once with [`Alert::id`] as the idempotency key,
//! retrying with exponential backoff and jitter. After `max_attempts` the delivery is dead and
//! `alert.failed` is appended, which is itself routed to every other channel. Channels run in the
//! dispatcher's own task: a dead or hanging sink never slows a request.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use breakglass_core::{
    Actor, Duration, EventDraft, EventKind, Grant, GrantId, Name, RoleSet, Timestamp,
};
use breakglass_notify::{Alert, Channel, ChannelConfig, Severity};
use breakglass_store::{Delivery, StoreError};
use serde::Deserialize;
use serde_json::Value;

use crate::StartupError;
use crate::broker::{Broker, BrokerError};

/// The config file (`serve --config PATH`). Everything in it is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub alerts: AlertsSection,
    #[serde(default)]
    pub channels: BTreeMap<Name, ChannelConfig>,
}

/// `[alerts]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsSection {
    /// Channels told of every high-severity event (activations, failures, orphans, failed
    /// alerts) and every role change, whatever the role says.
    #[serde(default)]
    pub always: Vec<Name>,
    /// Warn the holder this long before a grant ends (`grant.expiring_soon`); off if unset.
    #[serde(default)]
    pub expiring_soon: Option<Duration>,
    /// Attempts per delivery before it is given up (default 8).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// The broker's public URL, for links to grants in alerts.
    #[serde(default)]
    pub link: Option<String>,
    /// Channels every signed audit checkpoint is published to (webhook or syslog, typically a
    /// place the database's owner cannot rewrite), besides the checkpoint log file.
    #[serde(default)]
    pub checkpoints: Vec<Name>,
}

const DEFAULT_MAX_ATTEMPTS: u32 = 8;
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

impl FileConfig {
    /// Reads and validates the config file. Errors name the file and the key. Also returns the
    /// SHA-256 of its bytes (hex), which `config.changed` events record.
    pub fn load(path: &Path) -> Result<(Self, String), StartupError> {
        let bad = |message: String| StartupError::Config {
            path: path.to_owned(),
            message,
        };
        let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(bad(format!("it is larger than {MAX_CONFIG_BYTES} bytes")));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let hash = {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(text.as_bytes()))
        };
        let cfg: Self = toml::from_str(&text).map_err(|e| {
            bad(e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "))
        })?;
        for (key, names) in [
            ("alerts.always", &cfg.alerts.always),
            ("alerts.checkpoints", &cfg.alerts.checkpoints),
        ] {
            for name in names {
                if !cfg.channels.contains_key(name) {
                    return Err(bad(format!(
                        "key `{key}` names channel `{name}`, which has no `[channels.{name}]`"
                    )));
                }
            }
        }
        for (name, c) in &cfg.channels {
            let timeout = match c {
                ChannelConfig::Webhook(w) => w.timeout,
                ChannelConfig::Smtp(m) => Some(m.timeout),
                ChannelConfig::Syslog(s) => Some(s.timeout),
            };
            // A delivery's lease must outlast its attempt, or another pass would send it again
            // while it is still in flight.
            if timeout.is_some_and(|t| t.as_millis() > MAX_CHANNEL_TIMEOUT_MS) {
                return Err(bad(format!(
                    "key `channels.{name}.timeout` must be at most {}s",
                    MAX_CHANNEL_TIMEOUT_MS / 1000
                )));
            }
        }
        if let Some(n) = cfg.alerts.max_attempts
            && !(1..=100).contains(&n)
        {
            return Err(bad(format!(
                "key `alerts.max_attempts` must be between 1 and 100, not {n}"
            )));
        }
        Ok((cfg, hash))
    }
}

/// The channels in force and the rules for using them.
pub struct Alerting {
    channels: BTreeMap<String, Arc<dyn Channel>>,
    always: Vec<String>,
    checkpoints: Vec<String>,
    /// Per checkpoint channel, the largest checkpoint this process has published there.
    published: tokio::sync::Mutex<HashMap<String, u64>>,
    /// Deliveries in flight in this process, per channel.
    in_flight: std::sync::Mutex<HashMap<String, u32>>,
    /// Signalled whenever a delivery finishes: a slot is free, so the dispatcher may start more
    /// at once instead of waiting for its next tick.
    pub(crate) slot_freed: tokio::sync::Notify,
    pub(crate) expiring_soon: Option<Duration>,
    max_attempts: u32,
    link: Option<String>,
}

impl std::fmt::Debug for Alerting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerting")
            .field("channels", &self.channels.keys().collect::<Vec<_>>())
            .field("always", &self.always)
            .finish_non_exhaustive()
    }
}

/// An audit event as the dispatcher reads it.
struct Parsed {
    seq: u64,
    kind: String,
    grant: Option<GrantId>,
    time: Timestamp,
    body: Value,
}

fn parse(seq: u64, bytes: &[u8]) -> Option<Parsed> {
    let body: Value = serde_json::from_slice(bytes).ok()?;
    Some(Parsed {
        seq,
        kind: body.get("type")?.as_str()?.to_owned(),
        grant: body
            .get("grant")
            .and_then(Value::as_str)
            .and_then(|g| g.parse().ok()),
        time: body
            .get("time")
            .and_then(Value::as_str)
            .and_then(Timestamp::parse_rfc3339)
            .unwrap_or(Timestamp::from_unix_millis(0)),
        body,
    })
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

impl Alerting {
    /// No channels: nothing is routed, the cursor still moves.
    pub fn disabled() -> Self {
        Self {
            channels: BTreeMap::new(),
            always: Vec::new(),
            checkpoints: Vec::new(),
            published: tokio::sync::Mutex::new(HashMap::new()),
            in_flight: std::sync::Mutex::new(HashMap::new()),
            slot_freed: tokio::sync::Notify::new(),
            expiring_soon: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            link: None,
        }
    }

    /// Builds every channel, reading its secrets now: a missing secret stops the start.
    pub fn build(cfg: &FileConfig, path: &Path) -> Result<Self, StartupError> {
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
            published: tokio::sync::Mutex::new(HashMap::new()),
            in_flight: std::sync::Mutex::new(HashMap::new()),
            slot_freed: tokio::sync::Notify::new(),
            expiring_soon: cfg.alerts.expiring_soon,
            max_attempts: cfg.alerts.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
            link: cfg
                .alerts
                .link
                .as_ref()
                .map(|l| l.trim_end_matches('/').to_owned()),
        })
    }

    /// Counts a delivery to `channel` starting (+1) or ending (-1).
    fn flight(&self, channel: &str, delta: i32) {
        if let Ok(mut m) = self.in_flight.lock() {
            let n = m.entry(channel.to_owned()).or_insert(0);
            *n = n.saturating_add_signed(delta);
        }
    }

    pub fn channel_names(&self) -> BTreeSet<String> {
        self.channels.keys().cloned().collect()
    }

    pub fn is_enabled(&self) -> bool {
        !self.channels.is_empty()
    }

    fn severity(kind: &str) -> Severity {
        match kind {
            "grant.activated"
            | "grant.emergency_activated"
            | "grant.failed"
            | "alert.failed"
            | "target.orphan_removed"
            | "auth.locked" => Severity::High,
            "grant.expiring_soon"
            | "grant.revoked"
            | "grant.denied"
            | "role.changed"
            | "config.changed"
            | "policy.changed"
            | "user.totp_reset"
            | "user.disabled" => Severity::Warning,
            _ => Severity::Info,
        }
    }

    /// The channels an event goes to. `role_alerts` are the alerts of the grant's (or the
    /// changed) role as loaded now.
    fn route(&self, e: &Parsed, role_alerts: &[String]) -> Vec<String> {
        let mut out: BTreeSet<String> = BTreeSet::new();
        match e.kind.as_str() {
            "grant.requested"
            | "grant.approved"
            | "grant.denied"
            | "grant.cancelled"
            | "grant.timed_out"
            | "grant.extension_requested"
            | "grant.extended"
            | "grant.expiring_soon"
            | "grant.expired"
            | "grant.revoked" => {
                out.extend(role_alerts.iter().cloned());
            }
            "grant.activated" | "grant.emergency_activated" | "grant.failed" | "role.changed" => {
                out.extend(role_alerts.iter().cloned());
                out.extend(self.always.iter().cloned());
            }
            "target.orphan_removed"
            | "config.changed"
            | "policy.changed"
            | "auth.locked"
            | "user.totp_reset"
            | "user.disabled" => {
                out.extend(self.always.iter().cloned());
            }
            "alert.failed" => {
                // Everyone else hears that one channel has gone quiet.
                let failed = text(&e.body, "channel").unwrap_or_default();
                out.extend(self.channels.keys().filter(|c| **c != failed).cloned());
            }
            _ => {}
        }
        out.retain(|c| self.channels.contains_key(c));
        out.into_iter().collect()
    }

    /// What a channel receives for event `e` about `grant` (if any). Holds no secret: events never
    /// carry one, and only the grant's public facts are added.
    fn alert(&self, e: &Parsed, channel: &str, grant: Option<&Grant>, origin: &str) -> Alert {
        let b = &e.body;
        let mut fields = BTreeMap::new();
        let who = grant.map(|g| g.requester.to_string()).unwrap_or_default();
        let role = grant
            .map(|g| g.role.to_string())
            .or_else(|| text(b, "role"))
            .unwrap_or_default();
        if let Some(g) = grant {
            fields.insert("grant".into(), g.id.to_string());
            fields.insert("role".into(), g.role.to_string());
            fields.insert("requester".into(), g.requester.to_string());
            fields.insert("reason".into(), g.reason.clone());
            if let Some(i) = &g.incident {
                fields.insert("incident".into(), i.clone());
            }
            fields.insert("state".into(), g.state.name().to_owned());
            if let Some(end) = g.expires_at() {
                fields.insert("expires_at".into(), end.to_string());
            }
            if let Some(link) = &self.link {
                fields.insert("link".into(), format!("{link}/v1/grants/{}", g.id));
            }
        }
        if let Some(a) = text(b, "actor") {
            fields.insert("actor".into(), a);
        }
        // The event's own facts (who decided, why), except the envelope already shown.
        if let Some(obj) = b.as_object() {
            for k in obj.keys() {
                if matches!(
                    k.as_str(),
                    "v" | "seq" | "time" | "type" | "grant" | "actor"
                ) {
                    continue;
                }
                if let Some(t) = text(b, k) {
                    fields.entry(format!("event.{k}")).or_insert(t);
                }
            }
        }
        let inc = grant
            .and_then(|g| g.incident.as_deref())
            .map(|i| format!(" [{i}]"))
            .unwrap_or_default();
        let f = |k: &str| text(b, k).unwrap_or_default();
        let summary = match e.kind.as_str() {
            "grant.requested" if b.get("emergency") == Some(&Value::Bool(true)) => format!(
                "EMERGENCY: {who} self-activates {role} for {}: {}{inc} (no approver)",
                f("duration"),
                f("reason")
            ),
            "grant.requested" => format!(
                "{who} requests {role} for {}: {}{inc} (waiting for approval)",
                f("duration"),
                f("reason")
            ),
            "grant.emergency_activated" => format!(
                "EMERGENCY self-activation of {role} by {who}{inc}, with no approver; a review by someone else is owed by {}",
                f("review_due")
            ),
            "auth.locked" => format!(
                "sign-in locked for {} until {} after {} failures",
                f("subject"),
                f("until"),
                f("failures")
            ),
            "policy.changed" => format!("the authorization policy changed ({})", f("new_hash")),
            "user.totp_reset" => format!("the authenticator of {} was reset", f("principal")),
            "user.disabled" => format!("{} disabled: {}", f("principal"), f("disabled")),
            "grant.approved" => {
                format!("{} approved {who}'s request for {role}{inc}", f("approver"))
            }
            "grant.denied" => format!(
                "{} denied {who}'s request for {role}: {}",
                f("by"),
                f("reason")
            ),
            "grant.cancelled" => format!("{who}'s request for {role} was cancelled"),
            "grant.timed_out" => format!("{who}'s request for {role} timed out unapproved"),
            "grant.activated" => format!("{who} now holds {role} until {}{inc}", f("expires_at")),
            "grant.extension_requested" => format!(
                "{who} asks to extend {role} by {}: {}",
                f("duration"),
                f("reason")
            ),
            "grant.extended" => format!("{who}'s {role} extended until {}", f("expires_at")),
            "grant.expiring_soon" => format!("{who}'s {role} ends at {}", f("expires_at")),
            "grant.expired" => format!("{who}'s {role} expired"),
            "grant.revoked" => format!("{} revoked {who}'s {role}: {}", f("by"), f("reason")),
            "grant.failed" => format!("{who}'s {role} failed: {}", f("reason")),
            "role.changed" => match (text(b, "old_hash"), text(b, "new_hash")) {
                (None, _) => format!("role {role} was added"),
                (_, None) => format!("role {role} was removed"),
                _ => format!("role {role} was changed"),
            },
            "config.changed" => format!("the config file {} changed", f("file")),
            "alert.failed" => format!(
                "alerts to channel {} are failing: {} tries, last error: {}",
                f("channel"),
                f("attempts"),
                f("error")
            ),
            "target.orphan_removed" => format!(
                "removed an orphaned {} privilege at a target: {}",
                f("target"),
                f("handle")
            ),
            other => other.to_owned(),
        };
        Alert {
            id: format!("{origin}:{}:{channel}", e.seq),
            event: e.kind.clone(),
            seq: e.seq,
            // Everything about an emergency use is loud.
            severity: if b.get("emergency") == Some(&Value::Bool(true)) {
                Severity::High
            } else {
                Self::severity(&e.kind)
            },
            summary: format!("breakglass: {summary}"),
            fields,
            time: e.time,
        }
    }

    /// Wait before attempt `attempts + 1`: 2 s doubling to 5 min, minus up to 25% jitter.
    fn backoff_ms(attempts: u32) -> i64 {
        crate::backoff::delay_ms(attempts, 2000, 300_000)
    }
}

/// How many events one routing pass reads, and deliveries one pass claims.
const ROUTE_BATCH: u32 = 256;
pub(crate) const CLAIM_BATCH: u32 = 32;
/// How many deliveries run at once in one process, and to one channel.
pub(crate) const DELIVERY_SLOTS: usize = 16;
const PER_CHANNEL_SLOTS: u32 = 4;
/// A claimed delivery is someone else's to retry if this replica has not finished it by then.
const LEASE_MS: i64 = 120_000;
/// The longest a channel's `timeout` may be: well inside the lease.
const MAX_CHANNEL_TIMEOUT_MS: i64 = 60_000;

impl Broker {
    /// One dispatcher pass: route new events, warn holders of grants about to end, and start
    /// delivering what is due, each delivery in its own task holding one of `slots`, so a slow or
    /// hanging channel holds only its own slot. Returns how many deliveries were started: when
    /// that is a full batch the caller runs another pass at once.
    pub async fn dispatch_alerts(
        self: &Arc<Self>,
        slots: &Arc<tokio::sync::Semaphore>,
    ) -> Result<usize, BrokerError> {
        self.route_alerts().await?;
        self.warn_expiring().await?;
        self.deliver_alerts(slots).await
    }

    /// Only the delivery part of a pass: what runs when a slot has just been freed.
    pub async fn deliver_due_alerts(
        self: &Arc<Self>,
        slots: &Arc<tokio::sync::Semaphore>,
    ) -> Result<usize, BrokerError> {
        self.deliver_alerts(slots).await
    }

    async fn route_alerts(&self) -> Result<(), BrokerError> {
        let alerting = &self.alerting;
        let roles = self.roles();
        loop {
            let cursor = self.store.alert_cursor().await?;
            let events = self.store.audit_events(cursor, ROUTE_BATCH).await?;
            if events.is_empty() {
                return Ok(());
            }
            // Routing needs each grant's role; look them up before the routing transaction.
            let mut grants: HashMap<GrantId, Option<Grant>> = HashMap::new();
            let mut routes: HashMap<u64, Vec<String>> = HashMap::new();
            for ev in &events {
                let Some(p) = parse(ev.seq, &ev.bytes) else {
                    routes.insert(ev.seq, Vec::new());
                    continue;
                };
                if !alerting.is_enabled() {
                    routes.insert(ev.seq, Vec::new());
                    continue;
                }
                let role_id = match p.grant {
                    Some(id) => {
                        if let std::collections::hash_map::Entry::Vacant(v) = grants.entry(id) {
                            v.insert(self.store.grant(id).await?.map(|sg| sg.grant));
                        }
                        grants
                            .get(&id)
                            .and_then(|g| g.as_ref().map(|g| g.role.to_string()))
                    }
                    None => text(&p.body, "role"),
                };
                let role_alerts = role_alerts(&roles, role_id.as_deref());
                routes.insert(ev.seq, alerting.route(&p, &role_alerts));
            }
            let last = events.last().map(|e| e.seq);
            let read = self
                .store
                .route_alerts(
                    ROUTE_BATCH,
                    &|e: &breakglass_core::AuditEvent| routes.get(&e.seq).cloned(),
                    self.clock.now(),
                )
                .await?;
            if read == 0 || last.is_none() {
                return Ok(());
            }
        }
    }

    /// Warns the holders of active grants that end within `[alerts] expiring_soon`, once per end.
    async fn warn_expiring(&self) -> Result<(), BrokerError> {
        let Some(window) = self.alerting.expiring_soon else {
            return Ok(());
        };
        let now = self.clock.now();
        for sg in self.store.grants_in_states(&["active"]).await? {
            let Some(tr) = sg.grant.warn_expiring(window, now) else {
                continue;
            };
            match self
                .store
                .update_grant(&tr.grant, sg.version, None, &tr.events, now)
                .await
            {
                // Another replica (or a revoke) got there first.
                Ok(()) | Err(StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn deliver_alerts(
        self: &Arc<Self>,
        slots: &Arc<tokio::sync::Semaphore>,
    ) -> Result<usize, BrokerError> {
        let mut started = 0;
        // Claim only what can start now (a claimed delivery is leased, and a lease should be
        // spent sending, not waiting), a few per channel at a time: a channel with
        // `PER_CHANNEL_SLOTS` deliveries in flight is skipped, so a hanging receiver can hold at
        // most that many slots and every other channel keeps flowing.
        loop {
            // Channels at their limit are skipped; the claim is no bigger than the room the
            // busiest remaining channel has, so no claim can take any channel past its limit.
            let (skip, busiest) = self
                .alerting
                .in_flight
                .lock()
                .map(|m| {
                    let skip: Vec<String> = m
                        .iter()
                        .filter(|(_, n)| **n >= PER_CHANNEL_SLOTS)
                        .map(|(c, _)| c.clone())
                        .collect();
                    let busiest = m
                        .values()
                        .filter(|n| **n < PER_CHANNEL_SLOTS)
                        .max()
                        .copied()
                        .unwrap_or(0);
                    (skip, busiest)
                })
                .unwrap_or_default();
            let free = u32::try_from(slots.available_permits())
                .unwrap_or(0)
                .min(PER_CHANNEL_SLOTS - busiest);
            if free == 0 || started >= CLAIM_BATCH {
                return Ok(usize::try_from(started).unwrap_or(0));
            }
            let now = self.clock.now();
            let due = self
                .store
                .claim_deliveries(now, LEASE_MS, free, &skip)
                .await?;
            let n = u32::try_from(due.len()).unwrap_or(u32::MAX);
            for d in due {
                let Ok(slot) = Arc::clone(slots).acquire_owned().await else {
                    return Ok(0);
                };
                self.alerting.flight(&d.channel, 1);
                let broker = Arc::clone(self);
                tokio::spawn(async move {
                    let (channel, seq) = (d.channel.clone(), d.seq);
                    if let Err(e) = broker.deliver(d).await {
                        // The row stays leased; another pass retries it when the lease ends.
                        tracing::warn!(%channel, seq, error = %e, "could not record an alert delivery; it will be retried");
                    }
                    broker.alerting.flight(&channel, -1);
                    drop(slot);
                    broker.alerting.slot_freed.notify_one();
                });
            }
            started += n;
            if n < free {
                // Nothing more is due (for channels with room): done for this pass.
                return Ok(0);
            }
        }
    }

    async fn deliver(&self, d: Delivery) -> Result<(), BrokerError> {
        let alerting = &self.alerting;
        let origin = self.checkpoints.origin();
        let Some(p) = parse(d.seq, &d.bytes) else {
            return self
                .failed(&d, "the audit event could not be read", None)
                .await;
        };
        let Some(channel) = alerting.channels.get(&d.channel) else {
            return self
                .failed(&d, "the channel is no longer configured", Some(&p))
                .await;
        };
        let grant = match p.grant {
            Some(id) => self.store.grant(id).await?.map(|sg| sg.grant),
            None => None,
        };
        let alert = alerting.alert(&p, &d.channel, grant.as_ref(), origin);
        match channel.send(&alert).await {
            Ok(()) => {
                self.store
                    .delivery_succeeded(d.id, self.clock.now())
                    .await?;
                tracing::info!(channel = %d.channel, seq = d.seq, event = %p.kind, "alert delivered");
                Ok(())
            }
            Err(e) => self.failed(&d, &e.to_string(), Some(&p)).await,
        }
    }

    /// Records a failed attempt: retry later, or give up (the dead letter) with `alert.failed`.
    async fn failed(
        &self,
        d: &Delivery,
        error: &str,
        p: Option<&Parsed>,
    ) -> Result<(), BrokerError> {
        self.metrics.alert_failed(&d.channel);
        let now = self.clock.now();
        let attempts = d.attempts + 1;
        if attempts < self.alerting.max_attempts
            && p.is_some()
            && self.alerting.channels.contains_key(&d.channel)
        {
            let retry_at =
                Timestamp::from_unix_millis(now.unix_millis() + Alerting::backoff_ms(attempts));
            tracing::warn!(channel = %d.channel, seq = d.seq, attempts, error, next_attempt_at = %retry_at, "alert delivery failed; will retry");
            self.store
                .delivery_failed(d.id, error, Some(retry_at), &[], now)
                .await?;
            return Ok(());
        }
        tracing::error!(channel = %d.channel, seq = d.seq, attempts, error, "alert delivery given up");
        let event = EventDraft::new(
            Actor::System("alerts"),
            p.and_then(|p| p.grant),
            EventKind::AlertFailed {
                channel: d.channel.clone(),
                about_seq: d.seq,
                about: p.map(|p| p.kind.clone()).unwrap_or_default(),
                attempts,
                error: error.to_owned(),
            },
        );
        self.store
            .delivery_failed(d.id, error, None, &[event], now)
            .await?;
        Ok(())
    }
}

impl Broker {
    /// Sends the latest signed checkpoint to every `[alerts] checkpoints` channel that has not had
    /// it from this process. A failure is logged and retried at the next checkpoint tick; after a
    /// restart the latest is sent again (receivers keep the largest per origin).
    pub async fn publish_checkpoint(&self, cp: &breakglass_store::StoredCheckpoint) {
        let alerting = &self.alerting;
        if alerting.checkpoints.is_empty() {
            return;
        }
        let origin = self.checkpoints.origin();
        let mut published = alerting.published.lock().await;
        // The note: origin, size, base64 root, blank line, signatures (C2SP tlog-checkpoint).
        let root = cp.note.lines().nth(2).unwrap_or_default().to_owned();
        for name in &alerting.checkpoints {
            if published.get(name).is_some_and(|s| *s >= cp.size) {
                continue;
            }
            let Some(channel) = alerting.channels.get(name) else {
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

/// Records the config file in force: a `config.changed` event when its hash differs from the one
/// recorded last (once, however many replicas start with it).
pub async fn record_config(
    store: &dyn breakglass_store::Store,
    path: &Path,
    hash: &str,
    now: Timestamp,
) -> Result<bool, StartupError> {
    let old = store
        .setting(CONFIG_HASH)
        .await?
        .and_then(|v| String::from_utf8(v).ok());
    if old.as_deref() == Some(hash) {
        return Ok(false);
    }
    let event = EventDraft::new(
        Actor::System("config"),
        None,
        EventKind::ConfigChanged {
            file: path.display().to_string(),
            old_hash: old,
            new_hash: hash.to_owned(),
        },
    );
    Ok(store
        .record_setting(CONFIG_HASH, hash.as_bytes(), &[event], now)
        .await?)
}

const CONFIG_HASH: &str = "config-hash";

/// The alert channels of role `id` as loaded now (none if it is gone).
fn role_alerts(roles: &RoleSet, id: Option<&str>) -> Vec<String> {
    id.and_then(|id| roles.get(id))
        .map(|r| r.alerts.iter().map(ToString::to_string).collect())
        .unwrap_or_default()
}

/// Checks that every role names only configured channels.
pub fn check_role_alerts(roles: &RoleSet, channels: &BTreeSet<String>) -> Result<(), StartupError> {
    for r in roles.iter() {
        if let Some(missing) = r.alerts.iter().find(|a| !channels.contains(a.as_str())) {
            return Err(breakglass_core::DomainError::InvalidRoleFile {
                file: r.file.clone(),
                message: format!(
                    "key `alerts` names channel `{missing}`, which is not configured; add `[channels.{missing}]` to the config file (`serve --config`) or remove it"
                ),
            }
            .into());
        }
    }
    Ok(())
}
