//! The audit log on SQLite: its SQL, and what SQLite reads its own way. (Appending is the
//! writer's, in `mod.rs`.)

use std::collections::{BTreeMap, BTreeSet};

use breakglass_audit::{Hash, NodeId};

use super::SqliteStore;
use crate::audit::{self, AuditReads, AuditSql};
use crate::sql::to_i64;
use crate::{AuditSnapshot, AuditVisitor, Result};

pub(super) const SQL: AuditSql = AuditSql {
    head: "SELECT size, frontier FROM audit_head WHERE id = 1",
    tail: "SELECT seq, bytes FROM (SELECT seq, bytes FROM audit_log ORDER BY seq DESC LIMIT ?1)
           ORDER BY seq",
    from: "SELECT seq, bytes FROM audit_log WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
    size: "SELECT COUNT(*) AS n FROM audit_log",
    save_checkpoint: "INSERT OR IGNORE INTO audit_checkpoints (size, note, signed_at)
                      VALUES (?1, ?2, ?3)",
    checkpoints: "SELECT size, note, signed_at FROM audit_checkpoints ORDER BY size",
    latest_checkpoint: "SELECT size, note, signed_at FROM audit_checkpoints
                        ORDER BY size DESC LIMIT 1",
    leaves: "SELECT l.seq, l.bytes, h.hash FROM audit_log l
             LEFT JOIN audit_hashes h ON h.level = 0 AND h.idx = l.seq ORDER BY l.seq",
};

impl AuditReads for SqliteStore {
    /// One query per subtree: SQLite binds no lists.
    async fn audit_hashes_in(&self, ids: &BTreeSet<NodeId>) -> Result<BTreeMap<NodeId, Hash>> {
        let mut conn = self.reader.acquire().await?;
        let mut out = BTreeMap::new();
        for id in ids {
            let h: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT hash FROM audit_hashes WHERE level = ? AND idx = ?")
                    .bind(i64::from(id.level))
                    .bind(to_i64(id.index)?)
                    .fetch_optional(&mut *conn)
                    .await?;
            if let Some(h) = h.as_deref().and_then(Hash::from_slice) {
                out.insert(*id, h);
            }
        }
        Ok(out)
    }

    /// One read transaction: the head, the checkpoints and the events are one consistent view.
    async fn audit_snapshot_in(&self, visitor: &mut dyn AuditVisitor) -> Result<AuditSnapshot> {
        let mut tx = self.reader.begin().await?;
        let snapshot = audit::snapshot(&mut *tx, visitor).await?;
        tx.rollback().await?;
        Ok(snapshot)
    }
}
