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

use breakglass_core::{AuditEvent, Timestamp};

use super::PostgresStore;
use crate::alerts::{self, AlertSql, Outbox};
use crate::{Delivery, Result};

pub(super) const SQL: AlertSql = AlertSql {
    cursor: "SELECT next_seq FROM alert_cursor WHERE id = 1",
    succeeded: "UPDATE alert_deliveries SET delivered_at = $1, claimed_until = NULL
                WHERE id = $2 AND delivered_at IS NULL AND dead_at IS NULL",
    // The row lock this takes comes before the audit head's, as in every write here.
    failed: "UPDATE alert_deliveries
             SET attempts = attempts + 1, last_error = $1, claimed_until = NULL,
                 next_attempt_at = COALESCE($2, next_attempt_at),
                 dead_at = CASE WHEN $2::bigint IS NULL THEN $3 END
             WHERE id = $4 AND delivered_at IS NULL AND dead_at IS NULL",
    backlog: "SELECT channel,
                  COUNT(*) FILTER (WHERE delivered_at IS NULL AND dead_at IS NULL) AS pending,
                  MIN(created_at) FILTER (WHERE delivered_at IS NULL AND dead_at IS NULL)
                      AS oldest_pending,
                  COUNT(*) FILTER (WHERE dead_at IS NOT NULL) AS dead,
                  COUNT(*) FILTER (WHERE delivered_at IS NOT NULL) AS delivered,
                  COUNT(*) FILTER (WHERE delivered_at IS NULL AND dead_at IS NULL AND attempts > 0)
                      AS failing
              FROM alert_deliveries GROUP BY channel ORDER BY channel",
    // GREATEST ignores a NULL lease.
    next_due: "SELECT MIN(GREATEST(next_attempt_at, claimed_until)) AS at
               FROM alert_deliveries WHERE delivered_at IS NULL AND dead_at IS NULL",
};

impl Outbox for PostgresStore {
    /// See [`crate::Store::route_alerts`].
    async fn route_alerts_in(
        &self,
        limit: u32,
        route: &(dyn Fn(&AuditEvent) -> Option<Vec<String>> + Send + Sync),
        now: Timestamp,
    ) -> Result<usize> {
        self.transact(|mut tx| async move {
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
            let routed = alerts::route(from, &rows, route)?;
            if routed.next == from {
                return Ok((tx, 0));
            }
            let events = routed.events()?;
            let (seqs, channels): (Vec<i64>, Vec<String>) = routed.deliveries.into_iter().unzip();
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
                .bind(routed.next)
                .execute(&mut *tx)
                .await?;
            Ok((tx, events))
        })
        .await
    }

    /// See [`crate::Store::claim_deliveries`].
    async fn claim_deliveries_in(
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
             SELECT c.id, c.seq, c.channel, c.attempts::bigint AS attempts, c.created_at, l.bytes
             FROM claimed c JOIN audit_log l ON l.seq = c.seq
             ORDER BY c.next_attempt_at, c.id",
        )
        .bind(now.unix_millis())
        .bind(until)
        .bind(i64::from(limit))
        .bind(skip)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(alerts::delivery).collect()
    }
}
