//! Post-use reviews: the reviews recorded, the reminders sent about overdue ones, and the reads
//! a review's evidence rests on (a grant's events, the events in a window, the alerts sent about
//! a grant). Which grants owe a review is the core's rule; this module stores what it decided.
//! Each backend supplies the SQL ([`ReviewSql`]).

use breakglass_core::review::{Outcome, Reminder, Review};
use breakglass_core::{AuditEvent, EventDraft, Grant, GrantId, Timestamp};

use crate::audit::{event, record_if};
use crate::sql::{Conn, Row, Stmt};
use crate::{DeliveryRecord, Result, StoreError, StoredGrant, grants};

/// The SQL of reviews. Parameters, in order, after each field's name.
pub(crate) struct ReviewSql {
    /// `grant id, reviewer, outcome, final, notes, recorded_at`.
    pub(crate) insert: &'static str,
    /// `grant id`: its reviews (`grant_id, reviewer, outcome, notes, recorded_at`), oldest first.
    pub(crate) of_grant: &'static str,
    /// `limit`: the latest reviews, newest first.
    pub(crate) latest: &'static str,
    /// Grants ended (`expired`, `revoked`, `failed`) after a `grant.activated` event, with no final
    /// review: `body`, `version` and `activated_at` (that event's time), oldest first.
    pub(crate) unreviewed: &'static str,
    /// Every reminder sent: `grant_id`, `stage`.
    pub(crate) reminders: &'static str,
    /// `grant id, stage, sent_at`: the reminder, unless it was sent already.
    pub(crate) remind: &'static str,
    /// `grant id`: its events' `seq` and `bytes`, in order.
    pub(crate) grant_events: &'static str,
    /// `from, to, limit`: events written in `[from, to]`, in order.
    pub(crate) between: &'static str,
    /// `grant id`: the deliveries of the grant's events (`seq, channel, attempts, delivered_at,
    /// dead_at, last_error`), by seq and channel.
    pub(crate) deliveries: &'static str,
}

/// See [`crate::Store::record_review`].
pub(crate) async fn record<C: Conn>(
    tx: &mut C,
    g: &Grant,
    expected: i64,
    review: &Review,
    events: &[EventDraft],
    now: Timestamp,
) -> Result<StoredGrant> {
    // The grant is written over the version the decision was made from, even when only an
    // emergency grant's `reviewed_at` changes: two reviews racing on one grant take turns, and
    // the second is decided again against the first.
    let stored = grants::update(tx, g, expected, None, events, now).await?;
    let id = review.grant.to_string();
    let insert = Stmt::new(C::REVIEWS.insert)
        .text(&id)
        .text(review.reviewer.as_str())
        .text(review.outcome.as_str())
        .flag(review.outcome.is_final())
        .text(&review.notes)
        .time(review.at);
    tx.execute(insert).await?;
    Ok(stored)
}

/// See [`crate::Store::reviews_of`].
pub(crate) async fn of_grant<C: Conn>(c: &mut C, id: GrantId) -> Result<Vec<Review>> {
    let id = id.to_string();
    let rows = c.all(Stmt::new(C::REVIEWS.of_grant).text(&id)).await?;
    rows.iter().map(review).collect()
}

/// See [`crate::Store::reviews`].
pub(crate) async fn latest<C: Conn>(c: &mut C, limit: u32) -> Result<Vec<Review>> {
    let rows = c
        .all(Stmt::new(C::REVIEWS.latest).int(i64::from(limit)))
        .await?;
    rows.iter().map(review).collect()
}

/// See [`crate::Store::unreviewed`].
pub(crate) async fn unreviewed<C: Conn>(c: &mut C) -> Result<Vec<(StoredGrant, Timestamp)>> {
    let rows = c.all(Stmt::new(C::REVIEWS.unreviewed)).await?;
    rows.iter()
        .map(|r| {
            let grant = serde_json::from_str(&r.text("body")?)
                .map_err(|e| StoreError::Corrupt(format!("grant body: {e}")))?;
            Ok((
                StoredGrant {
                    grant,
                    version: r.int("version")?,
                },
                r.time("activated_at")?,
            ))
        })
        .collect()
}

/// See [`crate::Store::review_reminders`].
pub(crate) async fn reminders<C: Conn>(c: &mut C) -> Result<Vec<(GrantId, Reminder)>> {
    let rows = c.all(Stmt::new(C::REVIEWS.reminders)).await?;
    rows.iter()
        .map(|r| {
            let id = r.text("grant_id")?;
            let stage = r.text("stage")?;
            let grant = id
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("reminder for grant `{id}`")))?;
            let stage = Reminder::parse(&stage)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown reminder `{stage}`")))?;
            Ok((grant, stage))
        })
        .collect()
}

/// See [`crate::Store::send_review_reminder`].
pub(crate) async fn remind<C: Conn>(
    tx: &mut C,
    id: GrantId,
    stage: Reminder,
    events: &[EventDraft],
    now: Timestamp,
) -> Result<bool> {
    let id = id.to_string();
    let remind = Stmt::new(C::REVIEWS.remind)
        .text(&id)
        .text(stage.as_str())
        .time(now);
    let changed = tx.execute(remind).await? == 1;
    record_if(tx, changed, events, now).await
}

/// See [`crate::Store::grant_events`].
pub(crate) async fn grant_events<C: Conn>(c: &mut C, id: GrantId) -> Result<Vec<AuditEvent>> {
    let id = id.to_string();
    let rows = c.all(Stmt::new(C::REVIEWS.grant_events).text(&id)).await?;
    rows.iter().map(event).collect()
}

/// See [`crate::Store::events_between`].
pub(crate) async fn between<C: Conn>(
    c: &mut C,
    from: Timestamp,
    to: Timestamp,
    limit: u32,
) -> Result<Vec<AuditEvent>> {
    let between = Stmt::new(C::REVIEWS.between)
        .time(from)
        .time(to)
        .int(i64::from(limit));
    c.all(between).await?.iter().map(event).collect()
}

/// See [`crate::Store::deliveries_of_grant`].
pub(crate) async fn deliveries<C: Conn>(c: &mut C, id: GrantId) -> Result<Vec<DeliveryRecord>> {
    let id = id.to_string();
    let rows = c.all(Stmt::new(C::REVIEWS.deliveries).text(&id)).await?;
    rows.iter()
        .map(|r| {
            Ok(DeliveryRecord {
                seq: r.count("seq", "audit seq")?,
                channel: r.text("channel")?,
                attempts: u32::try_from(r.int("attempts")?).unwrap_or(u32::MAX),
                delivered_at: r.opt_time("delivered_at")?,
                dead_at: r.opt_time("dead_at")?,
                last_error: r.opt_text("last_error")?,
            })
        })
        .collect()
}

fn review(r: &impl Row) -> Result<Review> {
    let id = r.text("grant_id")?;
    let outcome = r.text("outcome")?;
    let reviewer = r.text("reviewer")?;
    Ok(Review {
        grant: id
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("review of grant `{id}`")))?,
        reviewer: reviewer
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("reviewer `{reviewer}`")))?,
        outcome: Outcome::parse(&outcome)
            .map_err(|_| StoreError::Corrupt(format!("unknown review outcome `{outcome}`")))?,
        notes: r.text("notes")?,
        at: r.time("recorded_at")?,
    })
}
