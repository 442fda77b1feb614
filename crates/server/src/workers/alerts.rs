//! The alert dispatcher: routes new audit events to their channels, warns holders of grants about
//! to end, and delivers what is due, in its own task so no request ever waits on a channel, and
//! each delivery in a task of its own so no channel waits on another.
//!
//! It sleeps until its next due item (see [`super::wake`]): a new event to route (the store tells
//! it of this process's appends), the next `expiring_soon` warning, or the next delivery due (a
//! retry, or a lease that ends). A delivery that finishes wakes it to start the next.

use std::collections::HashMap;
use std::sync::Arc;

use breakglass_core::{
    Actor, EventDraft, EventKind, Grant, GrantId, GrantState, RoleSet, StateKind, Timestamp,
};
use breakglass_store::{Delivery, StoreError};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use super::wake::{Pace, earliest};

use crate::alert::{
    Alerting, CLAIM_BATCH, DELIVERY_SLOTS, LEASE_MS, PER_CHANNEL_SLOTS, Parsed, ROUTE_BATCH, parse,
    text,
};
use crate::app::App;
use crate::error::ServiceError;

pub async fn run(app: Arc<App>, pace: Pace, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(DELIVERY_SLOTS));
    let alarm = &app.alarms.alerts;
    let mut appended = app.store.watch_appends();
    loop {
        let (last, began) = (Instant::now(), app.clock.now());
        alarm.clear();
        // Events appended from here on are this pass's or the next's to route.
        appended.borrow_and_update();
        let mut next_warning = None;
        // A full batch means more is waiting: keep going until the backlog is drained
        // (or every slot is busy), rather than one batch per pass.
        loop {
            match run_pass(&app, &slots).await {
                Ok(p) if p.started > 0 => {
                    if *shutdown.borrow() {
                        return;
                    }
                }
                Ok(p) => {
                    next_warning = p.next_warning;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "alert dispatch pass failed; retrying shortly");
                    alarm.ring();
                    break;
                }
            }
        }
        plan(&app, began, next_warning).await;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(alarm.wake_at(app.clock.as_ref(), pace, last, Instant::now())) => break,
                // Earlier work: sleep less.
                () = alarm.moved() => {}
                // New events to route.
                Ok(()) = appended.changed() => alarm.ring(),
                // A delivery finished: its slot (and its channel's) can take the next one now.
                () = app.alerts.slot_freed.notified() => {
                    if let Err(e) = deliver_alerts(&app, &slots).await {
                        tracing::warn!(error = %e, "alert delivery pass failed; retrying shortly");
                        alarm.ring();
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// What one pass did, and what it found due next.
struct Pass {
    /// Deliveries started: a full batch means more is waiting.
    started: usize,
    /// The next `expiring_soon` warning.
    next_warning: Option<Timestamp>,
}

/// One dispatcher pass: route new events, warn holders of grants about to end, and start
/// delivering what is due, each delivery in its own task holding one of `slots`, so a slow or
/// hanging channel holds only its own slot. Returns how many deliveries were started: when
/// that is a full batch the caller runs another pass at once.
pub async fn pass(app: &Arc<App>, slots: &Arc<Semaphore>) -> Result<usize, ServiceError> {
    Ok(run_pass(app, slots).await?.started)
}

async fn run_pass(app: &Arc<App>, slots: &Arc<Semaphore>) -> Result<Pass, ServiceError> {
    route_alerts(app).await?;
    let next_warning = warn_expiring(app).await?;
    let started = deliver_alerts(app, slots).await?;
    Ok(Pass {
        started,
        next_warning,
    })
}

/// When the dispatcher next has work: the next warning (found by the pass that began at `began`)
/// or the next delivery due.
pub async fn next_due(
    app: &App,
    began: Timestamp,
    next_warning: Option<Timestamp>,
) -> Result<Option<Timestamp>, ServiceError> {
    let delivery = app.store.next_delivery_due().await?;
    // One due before the pass began and still waiting is held back by its channel's limit (or
    // every slot is busy): a delivery finishing wakes the dispatcher for it, not the clock.
    let delivery = delivery.filter(|at| *at > began);
    Ok(earliest(next_warning, delivery))
}

/// Sets the dispatcher's alarm to its next due item.
async fn plan(app: &App, began: Timestamp, next_warning: Option<Timestamp>) {
    match next_due(app, began, next_warning).await {
        Ok(at) => app.alarms.alerts.found(at),
        Err(e) => {
            tracing::warn!(error = %e, "could not find the dispatcher's next due item; retrying shortly");
            app.alarms.alerts.ring();
        }
    }
}

async fn route_alerts(app: &App) -> Result<(), ServiceError> {
    let alerting = &app.alerts;
    let roles = app.catalog.roles();
    loop {
        let cursor = app.store.alert_cursor().await?;
        let events = app.store.audit_events(cursor, ROUTE_BATCH).await?;
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
                        v.insert(app.store.grant(id).await?.map(|sg| sg.grant));
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
        let read = app
            .store
            .route_alerts(
                ROUTE_BATCH,
                &|e: &breakglass_core::AuditEvent| routes.get(&e.seq).cloned(),
                app.clock.now(),
            )
            .await?;
        if read == 0 || last.is_none() {
            return Ok(());
        }
    }
}

/// Warns the holders of active grants that end within `[alerts] expiring_soon`, once per end.
/// Returns when the next warning is due.
async fn warn_expiring(app: &App) -> Result<Option<Timestamp>, ServiceError> {
    let Some(window) = app.alerts.expiring_soon() else {
        return Ok(None);
    };
    let now = app.clock.now();
    let mut next = None;
    for sg in app.grants.in_states(&[StateKind::Active]).await? {
        if let Some(tr) = sg.grant.warn_expiring(window, now) {
            match app.grants.write(&sg, tr, None, now).await {
                Ok(_) => {}
                // Another replica (or a revoke, or an extension) got there first: look again.
                Err(StoreError::Conflict) => next = earliest(next, Some(now)),
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        if let GrantState::Active {
            expires_at,
            expiry_warned,
            ..
        } = sg.grant.state
            && expiry_warned != Some(expires_at)
            && now < expires_at
        {
            // Not in the window yet: due when it is.
            let at = expires_at.unix_millis().saturating_sub(window.as_millis());
            next = earliest(next, Some(Timestamp::from_unix_millis(at)));
        }
    }
    Ok(next)
}

async fn deliver_alerts(app: &Arc<App>, slots: &Arc<Semaphore>) -> Result<usize, ServiceError> {
    let mut started = 0;
    // Claim only what can start now (a claimed delivery is leased, and a lease should be
    // spent sending, not waiting), a few per channel at a time: a channel with
    // `PER_CHANNEL_SLOTS` deliveries in flight is skipped, so a hanging receiver can hold at
    // most that many slots and every other channel keeps flowing.
    loop {
        // Channels at their limit are skipped; the claim is no bigger than the room the
        // busiest remaining channel has, so no claim can take any channel past its limit.
        let (skip, busiest) = app
            .alerts
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
        let now = app.clock.now();
        let due = app
            .store
            .claim_deliveries(now, LEASE_MS, free, &skip)
            .await?;
        let n = u32::try_from(due.len()).unwrap_or(u32::MAX);
        for d in due {
            let Ok(slot) = Arc::clone(slots).acquire_owned().await else {
                return Ok(0);
            };
            app.alerts.flight(&d.channel, 1);
            let app = Arc::clone(app);
            tokio::spawn(async move {
                let (channel, seq) = (d.channel.clone(), d.seq);
                if let Err(e) = deliver(&app, d).await {
                    // The row stays leased; another pass retries it when the lease ends.
                    tracing::warn!(%channel, seq, error = %e, "could not record an alert delivery; it will be retried");
                }
                app.alerts.flight(&channel, -1);
                drop(slot);
                app.alerts.slot_freed.notify_one();
            });
        }
        started += n;
        if n < free {
            // Nothing more is due (for channels with room): done for this pass.
            return Ok(0);
        }
    }
}

async fn deliver(app: &App, d: Delivery) -> Result<(), ServiceError> {
    let alerting = &app.alerts;
    let origin = app.checkpoints.origin();
    let Some(p) = parse(d.seq, &d.bytes) else {
        return failed(app, &d, "the audit event could not be read", None).await;
    };
    let Some(channel) = alerting.channel(&d.channel) else {
        return failed(app, &d, "the channel is no longer configured", Some(&p)).await;
    };
    let grant = match p.grant {
        Some(id) => app.store.grant(id).await?.map(|sg| sg.grant),
        None => None,
    };
    let alert = alerting.alert(&p, &d.channel, grant.as_ref(), origin);
    match channel.send(&alert).await {
        Ok(()) => {
            app.store.delivery_succeeded(d.id, app.clock.now()).await?;
            tracing::info!(channel = %d.channel, seq = d.seq, event = %p.type_name, "alert delivered");
            Ok(())
        }
        Err(e) => failed(app, &d, &e.to_string(), Some(&p)).await,
    }
}

/// Records a failed attempt: retry later, or give up (the dead letter) with `alert.failed`.
async fn failed(
    app: &App,
    d: &Delivery,
    error: &str,
    p: Option<&Parsed>,
) -> Result<(), ServiceError> {
    app.metrics.alert_failed(&d.channel);
    let now = app.clock.now();
    let attempts = d.attempts + 1;
    if attempts < app.alerts.max_attempts()
        && p.is_some()
        && app.alerts.channel(&d.channel).is_some()
    {
        let retry_at =
            Timestamp::from_unix_millis(now.unix_millis() + Alerting::backoff_ms(attempts));
        tracing::warn!(channel = %d.channel, seq = d.seq, attempts, error, next_attempt_at = %retry_at, "alert delivery failed; will retry");
        app.store
            .delivery_failed(d.id, error, Some(retry_at), &[], now)
            .await?;
        // This attempt ran in its own task, after the pass that started it planned its wake-up:
        // move the alarm, or the retry would wait for the next re-check.
        app.alarms.alerts.due_at(retry_at);
        return Ok(());
    }
    tracing::error!(channel = %d.channel, seq = d.seq, attempts, error, "alert delivery given up");
    let event = EventDraft::new(
        Actor::System("alerts"),
        p.and_then(|p| p.grant),
        EventKind::AlertFailed {
            channel: d.channel.clone(),
            about_seq: d.seq,
            about: p.map(|p| p.type_name.clone()).unwrap_or_default(),
            attempts,
            error: error.to_owned(),
        },
    );
    app.store
        .delivery_failed(d.id, error, None, &[event], now)
        .await?;
    Ok(())
}

/// The alert channels of role `id` as loaded now (none if it is gone).
fn role_alerts(roles: &RoleSet, id: Option<&str>) -> Vec<String> {
    id.and_then(|id| roles.get(id))
        .map(|r| r.alerts.iter().map(ToString::to_string).collect())
        .unwrap_or_default()
}
