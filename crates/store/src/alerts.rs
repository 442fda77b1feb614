//! The alert outbox: deliveries routed from the audit log, claimed with a lease, retried, and
//! finished as delivered or dead. How a routing pass walks the log, how deliveries and backlogs
//! are read back, and finishing a delivery are here; each backend supplies the SQL ([`AlertSql`])
//! and routes and claims its own way ([`Outbox`]), since that is where replicas take turns.

use std::future::Future;

use breakglass_core::{AuditEvent, EventDraft, Timestamp};

use crate::audit::{self, record_if};
use crate::sql::{Conn, Row, Stmt};
use crate::{ChannelBacklog, Delivery, MAX_DELIVERY_ERROR, Result, StoreError};

/// The SQL of the outbox. Parameters, in order, after each field's name.
pub(crate) struct AlertSql {
    /// The cursor's `next_seq`.
    pub(crate) cursor: &'static str,
    /// `now, id`: the delivery marked delivered, if still pending.
    pub(crate) succeeded: &'static str,
    /// `error, retry_at or NULL, now, id`: one more attempt counted on a pending delivery, the
    /// error kept and the lease released; due again at `retry_at`, or dead at `now`.
    pub(crate) failed: &'static str,
    /// Per channel: `channel`, `pending`, `oldest_pending`, `dead`, `delivered` and `failing`.
    /// It reads every delivery ever made (nothing prunes delivered ones yet).
    pub(crate) backlog: &'static str,
    /// No parameters: `at`, when the earliest pending delivery can next be claimed (the later
    /// of its `next_attempt_at` and its lease's end), NULL if none is pending.
    pub(crate) next_due: &'static str,
}

/// What each backend does its own way: how routing passes and claims of several processes take
/// turns.
pub(crate) trait Outbox {
    /// See [`crate::Store::route_alerts`].
    fn route_alerts_in(
        &self,
        limit: u32,
        route: &(dyn Fn(&AuditEvent) -> Option<Vec<String>> + Send + Sync),
        now: Timestamp,
    ) -> impl Future<Output = Result<usize>> + Send;
    /// See [`crate::Store::claim_deliveries`].
    fn claim_deliveries_in(
        &self,
        now: Timestamp,
        lease_ms: i64,
        limit: u32,
        skip: &[String],
    ) -> impl Future<Output = Result<Vec<Delivery>>> + Send;
}

/// See [`crate::Store::alert_cursor`].
pub(crate) async fn cursor<C: Conn>(c: &mut C) -> Result<u64> {
    c.one(Stmt::new(C::ALERTS.cursor))
        .await?
        .count("next_seq", "alert cursor")
}

/// See [`crate::Store::delivery_succeeded`].
pub(crate) async fn succeeded<C: Conn>(tx: &mut C, id: i64, now: Timestamp) -> Result<()> {
    tx.execute(Stmt::new(C::ALERTS.succeeded).time(now).int(id))
        .await?;
    Ok(())
}

/// See [`crate::Store::delivery_failed`].
pub(crate) async fn failed<C: Conn>(
    tx: &mut C,
    id: i64,
    error: &str,
    retry_at: Option<Timestamp>,
    events: &[EventDraft],
    now: Timestamp,
) -> Result<bool> {
    let failed = Stmt::new(C::ALERTS.failed)
        .text(delivery_error(error))
        .opt_time(retry_at)
        .time(now)
        .int(id);
    let done = tx.execute(failed).await?;
    record_if(tx, done > 0, events, now).await
}

/// See [`crate::Store::next_delivery_due`].
pub(crate) async fn next_due<C: Conn>(c: &mut C) -> Result<Option<Timestamp>> {
    c.one(Stmt::new(C::ALERTS.next_due)).await?.opt_time("at")
}

/// See [`crate::Store::alert_backlog`].
pub(crate) async fn backlog<C: Conn>(c: &mut C) -> Result<Vec<ChannelBacklog>> {
    let rows = c.all(Stmt::new(C::ALERTS.backlog)).await?;
    rows.iter()
        .map(|r| {
            Ok(ChannelBacklog {
                channel: r.text("channel")?,
                pending: r.count("pending", "count")?,
                oldest_pending: r.opt_time("oldest_pending")?,
                dead: r.count("dead", "count")?,
                delivered: r.count("delivered", "count")?,
                failing: r.count("failing", "count")?,
            })
        })
        .collect()
}

/// What one routing pass found: where the cursor goes from and to, and the deliveries to add.
pub(crate) struct Routed {
    pub(crate) from: i64,
    pub(crate) next: i64,
    /// `(seq, channel)`, in `seq` order.
    pub(crate) deliveries: Vec<(i64, String)>,
}

/// Routes `rows` (`seq`, `bytes`, read from the cursor `from` on, in order) until `route` cannot
/// route one yet.
pub(crate) fn route(
    from: i64,
    rows: &[impl Row],
    route: &(dyn Fn(&AuditEvent) -> Option<Vec<String>> + Send + Sync),
) -> Result<Routed> {
    let mut next = from;
    let mut deliveries = Vec::new();
    for r in rows {
        let seq = r.int("seq")?;
        if seq != next {
            return Err(StoreError::Corrupt(format!(
                "the audit log has a gap at seq {next}"
            )));
        }
        let Some(channels) = route(&audit::event(r)?) else {
            break;
        };
        deliveries.extend(channels.into_iter().map(|c| (seq, c)));
        next = seq + 1;
    }
    Ok(Routed {
        from,
        next,
        deliveries,
    })
}

impl Routed {
    /// How many events the pass routed.
    pub(crate) fn events(&self) -> Result<usize> {
        usize::try_from(self.next - self.from)
            .map_err(|_| StoreError::Corrupt("alert cursor overflow".into()))
    }
}

/// A claimed delivery: its row of `alert_deliveries` (`attempts` as a `bigint`) with the event's
/// `bytes`.
pub(crate) fn delivery(r: &impl Row) -> Result<Delivery> {
    Ok(Delivery {
        id: r.int("id")?,
        seq: r.count("seq", "audit seq")?,
        channel: r.text("channel")?,
        attempts: u32::try_from(r.int("attempts")?)
            .map_err(|_| StoreError::Corrupt("delivery attempts out of range".into()))?,
        created_at: r.time("created_at")?,
        bytes: r.bytes("bytes")?,
    })
}

/// `error` cut to at most [`MAX_DELIVERY_ERROR`] bytes, at a character boundary.
fn delivery_error(error: &str) -> &str {
    error
        .get(..error.floor_char_boundary(MAX_DELIVERY_ERROR))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_delivery_error_is_cut_at_a_character_boundary() {
        assert_eq!(delivery_error("refused"), "refused");
        // 1 + 2k bytes: the limit falls inside a character, which is dropped whole.
        let long = format!("x{}", "é".repeat(MAX_DELIVERY_ERROR));
        let cut = delivery_error(&long);
        assert_eq!(cut.len(), MAX_DELIVERY_ERROR - 1);
        assert!(long.starts_with(cut));
    }
}
