//! The alert outbox on SQLite: deliveries routed from the audit log, claimed with a lease,
//! retried, and finished as delivered or dead. Every write goes through the group-commit writer.

use breakglass_core::{AuditEvent, Timestamp};

use super::SqliteStore;
use crate::alerts::{self, AlertSql, Outbox};
use crate::{Delivery, Result, StoreError};

pub(super) const SQL: AlertSql = AlertSql {
    cursor: "SELECT next_seq FROM alert_cursor WHERE id = 1",
    succeeded: "UPDATE alert_deliveries SET delivered_at = ?1, claimed_until = NULL
                WHERE id = ?2 AND delivered_at IS NULL AND dead_at IS NULL",
    failed: "UPDATE alert_deliveries
             SET attempts = attempts + 1, last_error = ?1, claimed_until = NULL,
                 next_attempt_at = COALESCE(?2, next_attempt_at),
                 dead_at = CASE WHEN ?2 IS NULL THEN ?3 END
             WHERE id = ?4 AND delivered_at IS NULL AND dead_at IS NULL",
    backlog: "SELECT channel,
        COUNT(*) FILTER (WHERE delivered_at IS NULL AND dead_at IS NULL) AS pending,
        MIN(created_at) FILTER (WHERE delivered_at IS NULL AND dead_at IS NULL) AS oldest_pending,
        COUNT(*) FILTER (WHERE dead_at IS NOT NULL) AS dead,
        COUNT(*) FILTER (WHERE delivered_at IS NOT NULL) AS delivered,
        COUNT(*) FILTER (WHERE delivered_at IS NULL AND dead_at IS NULL AND attempts > 0)
            AS failing
    FROM alert_deliveries GROUP BY channel ORDER BY channel",
    // SQLite's two-argument MAX is the larger of the two (a delivery not leased is due at its
    // attempt time).
    next_due: "SELECT MIN(MAX(next_attempt_at, COALESCE(claimed_until, next_attempt_at))) AS at
               FROM alert_deliveries WHERE delivered_at IS NULL AND dead_at IS NULL",
};

/// How many times one routing pass starts again after finding that another process's pass moved
/// the cursor first. Each time, that other pass made progress; so many in a row means something
/// is wrong, and the caller gets [`StoreError::Conflict`].
const MAX_ROUTE_ATTEMPTS: u32 = 64;

/// Deliveries inserted per statement (each statement has a fixed cost).
const PER_STATEMENT: usize = 100;

impl Outbox for SqliteStore {
    /// See [`crate::Store::route_alerts`].
    ///
    /// The writer runs only work that owns everything it uses, and `route` is borrowed, so the
    /// events are read and routed first, outside the write; the write then moves the cursor only
    /// if it is still where the events were read from (a compare-and-set, standing in for the
    /// cursor's row lock on PostgreSQL), else the pass starts again. That is as good as one
    /// transaction: logged events never change, and the cursor decides which are routed. The
    /// passes of this process take turns, so only another process's pass can move the cursor
    /// meanwhile.
    async fn route_alerts_in(
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
            let routed = alerts::route(from, &rows, route)?;
            if routed.next == from {
                return Ok(0);
            }
            let events = routed.events()?;
            let moved = self
                .submit(move |tx| {
                    Box::pin(async move {
                        // INVARIANT: only the pass that moves the cursor from `from` inserts its
                        // deliveries, so each event is routed once.
                        let moved = sqlx::query(
                            "UPDATE alert_cursor SET next_seq = ? WHERE id = 1 AND next_seq = ?",
                        )
                        .bind(routed.next)
                        .bind(from)
                        .execute(&mut *tx)
                        .await?;
                        if moved.rows_affected() == 0 {
                            return Ok(false);
                        }
                        for chunk in routed.deliveries.chunks(PER_STATEMENT) {
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
                return Ok(events);
            }
        }
        Err(StoreError::Conflict)
    }

    /// See [`crate::Store::claim_deliveries`]. The writer serialises claims, so a delivery read
    /// as free here is still free when it is leased.
    async fn claim_deliveries_in(
        &self,
        now: Timestamp,
        lease_ms: i64,
        limit: u32,
        skip: &[String],
    ) -> Result<Vec<Delivery>> {
        let until = now.unix_millis().saturating_add(lease_ms);
        let skip = serde_json::to_string(skip).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.submit(move |tx| {
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
                    .map(alerts::delivery)
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
}
