//! The alert outbox on PostgreSQL: deliveries routed from the audit log, claimed with a lease,
//! retried, and finished as delivered or dead, by any number of replicas at once.
//!
//! - Routing locks the one `alert_cursor` row first, so passes take turns and each event is
//!   routed once. Its lock is never held by anything that waits for another lock this module or
//!   an append takes, so it cannot deadlock with them.
//! - Claims pick due rows `FOR UPDATE SKIP LOCKED` and lease them in the same statement: two
//!   replicas claiming at once get disjoint rows, and a row leased a moment ago is seen as leased
//!   once its lock is released (READ COMMITTED re-checks the condition on the newest version).
//! - Finishing a delivery updates only a row still pending, so of two replicas that both believe
//!   they hold a delivery (a lease ran out) the first to finish decides it.

use breakglass_core::{AuditEvent, EventDraft, Timestamp};
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use super::{PostgresStore, append_in, to_u64};
use crate::{ChannelBacklog, Delivery, Result, StoreError, delivery_error};

impl PostgresStore {
    /// See [`crate::Store::route_alerts`].
    pub(super) async fn route_alerts_in(
        &self,
        limit: u32,
        route: &(dyn Fn(&AuditEvent) -> Option<Vec<String>> + Send + Sync),
        now: Timestamp,
    ) -> Result<usize> {
        self.write(|mut tx| async move {
            let from: i64 =
                sqlx::query_scalar("SELECT next_seq FROM alert_cursor WHERE id = 1 FOR UPDATE")
                    .fetch_one(&mut *tx)
                    .await?;
            // A fresh snapshot, taken after the cursor lock was granted. It holds every event
            // below the last one it holds: appends take the audit head's lock and keep it until
            // they commit, so seq n + 1 cannot commit before seq n is visible. The cursor
            // therefore never moves past an event that commits later.
            let rows =
                sqlx::query("SELECT seq, bytes FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2")
                    .bind(from)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *tx)
                    .await?;
            if rows.is_empty() {
                return Ok((tx, 0));
            }
            let mut next = from;
            let mut seqs: Vec<i64> = Vec::new();
            let mut channels: Vec<String> = Vec::new();
            for r in &rows {
                let seq: i64 = r.try_get("seq")?;
                if seq != next {
                    return Err(StoreError::Corrupt(format!(
                        "the audit log has a gap at seq {next}"
                    )));
                }
                let event = AuditEvent {
                    seq: to_u64(seq, "audit seq")?,
                    bytes: r.try_get("bytes")?,
                };
                let Some(routed) = route(&event) else {
                    break;
                };
                for channel in routed {
                    seqs.push(seq);
                    channels.push(channel);
                }
                next = seq + 1;
            }
            if next == from {
                return Ok((tx, 0));
            }
            sqlx::query(
                "INSERT INTO alert_deliveries (seq, channel, created_at, next_attempt_at)
                 SELECT seq, channel, $3, $3 FROM UNNEST($1::bigint[], $2::text[]) AS r(seq, channel)
                 ON CONFLICT (seq, channel) DO NOTHING",
            )
            .bind(seqs)
            .bind(channels)
            .bind(now.unix_millis())
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE alert_cursor SET next_seq = $1 WHERE id = 1")
                .bind(next)
                .execute(&mut *tx)
                .await?;
            let routed = usize::try_from(next - from)
                .map_err(|_| StoreError::Corrupt("alert cursor overflow".into()))?;
            Ok((tx, routed))
        })
        .await
    }

    /// See [`crate::Store::claim_deliveries`].
    pub(super) async fn claim_deliveries_in(
        &self,
        now: Timestamp,
        lease_ms: i64,
        limit: u32,
        skip: &[String],
    ) -> Result<Vec<Delivery>> {
        let until = now.unix_millis().saturating_add(lease_ms);
        let rows = sqlx::query(
            "WITH due AS (
                 SELECT id FROM alert_deliveries
                 WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= $1
                   AND (claimed_until IS NULL OR claimed_until <= $1)
                   AND NOT (channel = ANY($4))
                 ORDER BY next_attempt_at, id LIMIT $3
                 FOR UPDATE SKIP LOCKED
             ), claimed AS (
                 UPDATE alert_deliveries d SET claimed_until = $2 FROM due WHERE d.id = due.id
                 RETURNING d.id, d.seq, d.channel, d.attempts, d.created_at, d.next_attempt_at
             )
             SELECT c.id, c.seq, c.channel, c.attempts, c.created_at, l.bytes
             FROM claimed c JOIN audit_log l ON l.seq = c.seq
             ORDER BY c.next_attempt_at, c.id",
        )
        .bind(now.unix_millis())
        .bind(until)
        .bind(i64::from(limit))
        .bind(skip)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    /// See [`crate::Store::delivery_succeeded`].
    pub(super) async fn delivery_succeeded_in(&self, id: i64, now: Timestamp) -> Result<()> {
        sqlx::query(
            "UPDATE alert_deliveries SET delivered_at = $1, claimed_until = NULL
             WHERE id = $2 AND delivered_at IS NULL AND dead_at IS NULL",
        )
        .bind(now.unix_millis())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// See [`crate::Store::delivery_failed`].
    pub(super) async fn delivery_failed_in(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<Timestamp>,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool> {
        let error = delivery_error(error);
        let retry_at = retry_at.map(Timestamp::unix_millis);
        self.write(|mut tx| async move {
            // The row lock this takes comes before the audit head's, as in every write here.
            let done = sqlx::query(
                "UPDATE alert_deliveries
                 SET attempts = attempts + 1, last_error = $1, claimed_until = NULL,
                     next_attempt_at = COALESCE($2, next_attempt_at),
                     dead_at = CASE WHEN $2::bigint IS NULL THEN $3 END
                 WHERE id = $4 AND delivered_at IS NULL AND dead_at IS NULL",
            )
            .bind(error)
            .bind(retry_at)
            .bind(now.unix_millis())
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok((tx, false));
            }
            append_in(&mut tx, events, now).await?;
            Ok((tx, true))
        })
        .await
    }

    /// See [`crate::Store::alert_backlog`]. It reads every delivery ever made (nothing prunes
    /// delivered ones yet).
    pub(super) async fn alert_backlog_in(&self) -> Result<Vec<ChannelBacklog>> {
        let rows = sqlx::query(
            "SELECT channel,
                 COUNT(*) FILTER (WHERE delivered_at IS NULL AND dead_at IS NULL) AS pending,
                 MIN(created_at) FILTER (WHERE delivered_at IS NULL AND dead_at IS NULL)
                     AS oldest_pending,
                 COUNT(*) FILTER (WHERE dead_at IS NOT NULL) AS dead,
                 COUNT(*) FILTER (WHERE delivered_at IS NOT NULL) AS delivered,
                 COUNT(*) FILTER (WHERE delivered_at IS NULL AND dead_at IS NULL AND attempts > 0)
                     AS failing
             FROM alert_deliveries GROUP BY channel ORDER BY channel",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ChannelBacklog {
                    channel: r.try_get("channel")?,
                    pending: to_u64(r.try_get("pending")?, "count")?,
                    oldest_pending: r
                        .try_get::<Option<i64>, _>("oldest_pending")?
                        .map(Timestamp::from_unix_millis),
                    dead: to_u64(r.try_get("dead")?, "count")?,
                    delivered: to_u64(r.try_get("delivered")?, "count")?,
                    failing: to_u64(r.try_get("failing")?, "count")?,
                })
            })
            .collect()
    }
}

fn delivery_from_row(r: &PgRow) -> Result<Delivery> {
    let attempts: i32 = r.try_get("attempts")?;
    Ok(Delivery {
        id: r.try_get("id")?,
        seq: to_u64(r.try_get("seq")?, "audit seq")?,
        channel: r.try_get("channel")?,
        attempts: u32::try_from(attempts)
            .map_err(|_| StoreError::Corrupt("negative delivery attempts".into()))?,
        created_at: Timestamp::from_unix_millis(r.try_get("created_at")?),
        bytes: r.try_get("bytes")?,
    })
}
