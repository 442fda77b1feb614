//! The alert outbox on SQLite: deliveries routed from the audit log, claimed with a lease,
//! retried, and finished as delivered or dead. Every write goes through the group-commit writer.

use breakglass_core::{AuditEvent, EventDraft, Timestamp};
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, append_in};
use crate::{ChannelBacklog, Delivery, Result, StoreError, delivery_error};

/// How many times one routing pass starts again after finding that another process's pass moved
/// the cursor first. Each time, that other pass made progress; so many in a row means something
/// is wrong, and the caller gets [`StoreError::Conflict`].
const MAX_ROUTE_ATTEMPTS: u32 = 64;

/// Deliveries inserted per statement (each statement has a fixed cost).
const PER_STATEMENT: usize = 100;

impl SqliteStore {
    /// See [`crate::Store::route_alerts`].
    ///
    /// The writer runs only work that owns everything it uses, and `route` is borrowed, so the
    /// events are read and routed first, outside the write; the write then moves the cursor only
    /// if it is still where the events were read from (a compare-and-set, standing in for the
    /// cursor's row lock on PostgreSQL), else the pass starts again. That is as good as one
    /// transaction: logged events never change, and the cursor decides which are routed. The
    /// passes of this process take turns, so only another process's pass can move the cursor
    /// meanwhile.
    pub(super) async fn route_alerts_in(
        &self,
        limit: u32,
        route: &(dyn Fn(&AuditEvent) -> Option<Vec<String>> + Send + Sync),
        now: Timestamp,
    ) -> Result<usize> {
        let _turn = self.routing.lock().await;
        for _ in 0..MAX_ROUTE_ATTEMPTS {
            let from: i64 = sqlx::query_scalar("SELECT next_seq FROM alert_cursor WHERE id = 1")
                .fetch_one(&self.reader)
                .await?;
            let rows =
                sqlx::query("SELECT seq, bytes FROM audit_log WHERE seq >= ? ORDER BY seq LIMIT ?")
                    .bind(from)
                    .bind(i64::from(limit))
                    .fetch_all(&self.reader)
                    .await?;
            if rows.is_empty() {
                return Ok(0);
            }
            let mut next = from;
            let mut routed: Vec<(i64, String)> = Vec::new();
            for r in &rows {
                let seq: i64 = r.try_get("seq")?;
                if seq != next {
                    return Err(StoreError::Corrupt(format!(
                        "the audit log has a gap at seq {next}"
                    )));
                }
                let event = AuditEvent {
                    seq: u64::try_from(seq)
                        .map_err(|_| StoreError::Corrupt("negative audit seq".into()))?,
                    bytes: r.try_get("bytes")?,
                };
                let Some(channels) = route(&event) else {
                    break;
                };
                routed.extend(channels.into_iter().map(|c| (seq, c)));
                next = seq + 1;
            }
            if next == from {
                return Ok(0);
            }
            let moved = self
                .write(move |tx| {
                    Box::pin(async move {
                        // INVARIANT: only the pass that moves the cursor from `from` inserts its
                        // deliveries, so each event is routed once.
                        let moved = sqlx::query(
                            "UPDATE alert_cursor SET next_seq = ? WHERE id = 1 AND next_seq = ?",
                        )
                        .bind(next)
                        .bind(from)
                        .execute(&mut *tx)
                        .await?;
                        if moved.rows_affected() == 0 {
                            return Ok(false);
                        }
                        for chunk in routed.chunks(PER_STATEMENT) {
                            let values = vec!["(?, ?, ?, ?)"; chunk.len()].join(", ");
                            let sql = format!(
                                "INSERT INTO alert_deliveries (seq, channel, created_at, next_attempt_at)
                                 VALUES {values} ON CONFLICT (seq, channel) DO NOTHING"
                            );
                            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                            for (seq, channel) in chunk {
                                q = q
                                    .bind(*seq)
                                    .bind(channel.as_str())
                                    .bind(now.unix_millis())
                                    .bind(now.unix_millis());
                            }
                            q.execute(&mut *tx).await?;
                        }
                        Ok(true)
                    })
                })
                .await?;
            if moved {
                return usize::try_from(next - from)
                    .map_err(|_| StoreError::Corrupt("alert cursor overflow".into()));
            }
        }
        Err(StoreError::Conflict)
    }

    /// See [`crate::Store::claim_deliveries`]. The writer serialises claims, so a delivery read
    /// as free here is still free when it is leased.
    pub(super) async fn claim_deliveries_in(
        &self,
        now: Timestamp,
        lease_ms: i64,
        limit: u32,
        skip: &[String],
    ) -> Result<Vec<Delivery>> {
        let until = now.unix_millis().saturating_add(lease_ms);
        let skip = serde_json::to_string(skip).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.write(move |tx| {
            Box::pin(async move {
                let rows = sqlx::query(
                    "SELECT d.id, d.seq, d.channel, d.attempts, d.created_at, l.bytes
                     FROM alert_deliveries d JOIN audit_log l ON l.seq = d.seq
                     WHERE d.delivered_at IS NULL AND d.dead_at IS NULL
                       AND d.next_attempt_at <= ?1
                       AND (d.claimed_until IS NULL OR d.claimed_until <= ?1)
                       AND d.channel NOT IN (SELECT value FROM json_each(?3))
                     ORDER BY d.next_attempt_at, d.id LIMIT ?2",
                )
                .bind(now.unix_millis())
                .bind(i64::from(limit))
                .bind(skip)
                .fetch_all(&mut *tx)
                .await?;
                let claimed = rows
                    .iter()
                    .map(delivery_from_row)
                    .collect::<Result<Vec<_>>>()?;
                if claimed.is_empty() {
                    return Ok(claimed);
                }
                let ids = serde_json::to_string(&claimed.iter().map(|d| d.id).collect::<Vec<_>>())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                sqlx::query(
                    "UPDATE alert_deliveries SET claimed_until = ?
                     WHERE id IN (SELECT value FROM json_each(?))",
                )
                .bind(until)
                .bind(ids)
                .execute(&mut *tx)
                .await?;
                Ok(claimed)
            })
        })
        .await
    }

    /// See [`crate::Store::delivery_succeeded`].
    pub(super) async fn delivery_succeeded_in(&self, id: i64, now: Timestamp) -> Result<()> {
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE alert_deliveries SET delivered_at = ?, claimed_until = NULL
                     WHERE id = ? AND delivered_at IS NULL AND dead_at IS NULL",
                )
                .bind(now.unix_millis())
                .bind(id)
                .execute(&mut *tx)
                .await?;
                Ok(())
            })
        })
        .await
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
        let error = delivery_error(error).to_owned();
        let events = events.to_vec();
        self.write(move |tx| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE alert_deliveries
                     SET attempts = attempts + 1, last_error = ?1, claimed_until = NULL,
                         next_attempt_at = COALESCE(?2, next_attempt_at),
                         dead_at = CASE WHEN ?2 IS NULL THEN ?3 END
                     WHERE id = ?4 AND delivered_at IS NULL AND dead_at IS NULL",
                )
                .bind(error)
                .bind(retry_at.map(Timestamp::unix_millis))
                .bind(now.unix_millis())
                .bind(id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                append_in(tx, &events, now).await?;
                Ok(true)
            })
        })
        .await
    }

    /// See [`crate::Store::alert_backlog`].
    pub(super) async fn alert_backlog_in(&self) -> Result<Vec<ChannelBacklog>> {
        let rows = sqlx::query(BACKLOG).fetch_all(&self.reader).await?;
        rows.iter()
            .map(|r| {
                let count = |column: &str| -> Result<u64> {
                    let n: i64 = r.try_get(column)?;
                    u64::try_from(n).map_err(|_| StoreError::Corrupt("negative count".into()))
                };
                Ok(ChannelBacklog {
                    channel: r.try_get("channel")?,
                    pending: count("pending")?,
                    oldest_pending: r
                        .try_get::<Option<i64>, _>("oldest_pending")?
                        .map(Timestamp::from_unix_millis),
                    dead: count("dead")?,
                    delivered: count("delivered")?,
                    failing: count("failing")?,
                })
            })
            .collect()
    }
}

/// The backlog per channel. It reads every delivery ever made (nothing prunes delivered ones yet).
const BACKLOG: &str = "SELECT channel,
        COUNT(*) FILTER (WHERE delivered_at IS NULL AND dead_at IS NULL) AS pending,
        MIN(created_at) FILTER (WHERE delivered_at IS NULL AND dead_at IS NULL) AS oldest_pending,
        COUNT(*) FILTER (WHERE dead_at IS NOT NULL) AS dead,
        COUNT(*) FILTER (WHERE delivered_at IS NOT NULL) AS delivered,
        COUNT(*) FILTER (WHERE delivered_at IS NULL AND dead_at IS NULL AND attempts > 0)
            AS failing
    FROM alert_deliveries GROUP BY channel ORDER BY channel";

fn delivery_from_row(r: &SqliteRow) -> Result<Delivery> {
    let seq: i64 = r.try_get("seq")?;
    let attempts: i64 = r.try_get("attempts")?;
    Ok(Delivery {
        id: r.try_get("id")?,
        seq: u64::try_from(seq).map_err(|_| StoreError::Corrupt("negative audit seq".into()))?,
        channel: r.try_get("channel")?,
        attempts: u32::try_from(attempts)
            .map_err(|_| StoreError::Corrupt("delivery attempts out of range".into()))?,
        created_at: Timestamp::from_unix_millis(r.try_get("created_at")?),
        bytes: r.try_get("bytes")?,
    })
}
