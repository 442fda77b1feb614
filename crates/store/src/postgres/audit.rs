//! The audit log on PostgreSQL: its SQL, and what PostgreSQL reads its own way. (Appending, with
//! the head row's lock, is in `mod.rs`.)

use std::collections::{BTreeMap, BTreeSet};

use breakglass_audit::{Hash, NodeId};
use sqlx::Row as _;

use super::PostgresStore;
use crate::audit::{self, AuditReads, AuditSql};
use crate::sql::{to_i64, to_u64};
use crate::{AuditSnapshot, AuditVisitor, Result, StoreError};

pub(super) const SQL: AuditSql = AuditSql {
    head: "SELECT size, frontier FROM audit_head WHERE id = 1",
    tail: "SELECT seq, bytes FROM (SELECT seq, bytes FROM audit_log ORDER BY seq DESC LIMIT $1)
           AS tail ORDER BY seq",
    from: "SELECT seq, bytes FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2",
    // `seq` is gapless from 0, so this equals COUNT(*) but reads one index entry instead of the
    // whole log (health checks call this often).
    size: "SELECT COALESCE(MAX(seq) + 1, 0) AS n FROM audit_log",
    save_checkpoint: "INSERT INTO audit_checkpoints (size, note, signed_at) VALUES ($1, $2, $3)
                      ON CONFLICT (size) DO NOTHING",
    checkpoints: "SELECT size, note, signed_at FROM audit_checkpoints ORDER BY size",
    latest_checkpoint: "SELECT size, note, signed_at FROM audit_checkpoints
                        ORDER BY size DESC LIMIT 1",
    leaves: "SELECT l.seq, l.bytes, h.hash FROM audit_log l
             LEFT JOIN audit_hashes h ON h.level = 0 AND h.idx = l.seq ORDER BY l.seq",
};

impl AuditReads for PostgresStore {
    /// One query for them all, joined against the ids asked for.
    async fn audit_hashes_in(&self, ids: &BTreeSet<NodeId>) -> Result<BTreeMap<NodeId, Hash>> {
        if ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let levels: Vec<i32> = ids.iter().map(|id| i32::from(id.level)).collect();
        let indexes = ids
            .iter()
            .map(|id| to_i64(id.index))
            .collect::<Result<Vec<_>>>()?;
        let rows = sqlx::query(
            "SELECT h.level, h.idx, h.hash FROM audit_hashes h
             JOIN UNNEST($1::integer[], $2::bigint[]) AS want(level, idx)
             ON h.level = want.level AND h.idx = want.idx",
        )
        .bind(levels)
        .bind(indexes)
        .fetch_all(&self.pool)
        .await?;
        let mut out = BTreeMap::new();
        for r in &rows {
            let level: i32 = r.try_get("level")?;
            let index: i64 = r.try_get("idx")?;
            let hash: Vec<u8> = r.try_get("hash")?;
            let id = NodeId {
                level: u8::try_from(level)
                    .map_err(|_| StoreError::Corrupt("bad subtree level".into()))?,
                index: to_u64(index, "subtree index")?,
            };
            if let Some(h) = Hash::from_slice(&hash) {
                out.insert(id, h);
            }
        }
        Ok(out)
    }

    /// One REPEATABLE READ transaction: the head, the checkpoints and the events are one
    /// consistent view, however many replicas append meanwhile.
    async fn audit_snapshot_in(&self, visitor: &mut dyn AuditVisitor) -> Result<AuditSnapshot> {
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let snapshot = audit::snapshot(&mut *tx, visitor).await?;
        tx.rollback().await?;
        Ok(snapshot)
    }
}
