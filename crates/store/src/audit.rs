//! Reading the audit log back: events, checkpoints, the tree's head, and the snapshot
//! `audit verify` reads. Each backend supplies the SQL ([`AuditSql`]), and does its own way what
//! it does differently ([`AuditReads`]); appending is each backend's own too (`append_in`, reached
//! through [`Conn::append`]), since it is where they differ most.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use breakglass_audit::{Frontier, Hash, NodeId};
use breakglass_core::{AuditEvent, EventDraft, Timestamp};
use futures_util::TryStreamExt as _;

use crate::sql::{Conn, Row, Stmt, to_i64};
use crate::{AuditSnapshot, AuditVisitor, Result, StoreError, StoredCheckpoint};

/// The SQL of the audit log. Parameters, in order, after each field's name.
pub(crate) struct AuditSql {
    /// The head row's `size` and `frontier`.
    pub(crate) head: &'static str,
    /// `n`: the last `n` events' `seq` and `bytes`, oldest first.
    pub(crate) tail: &'static str,
    /// `from, limit`: up to `limit` events from `seq` `from` on, in order.
    pub(crate) from: &'static str,
    /// How many events there are, as `n`.
    pub(crate) size: &'static str,
    /// `size, note, signed_at`: a checkpoint, unless one of that size is kept already.
    pub(crate) save_checkpoint: &'static str,
    /// Every checkpoint's `size`, `note` and `signed_at`, smallest first.
    pub(crate) checkpoints: &'static str,
    /// The checkpoint with the largest size.
    pub(crate) latest_checkpoint: &'static str,
    /// Every event's `seq` and `bytes`, with the leaf `hash` recorded for it (if any), in order.
    pub(crate) leaves: &'static str,
}

/// What each backend reads its own way.
pub(crate) trait AuditReads {
    /// See [`crate::Store::audit_hashes`].
    fn audit_hashes_in(
        &self,
        ids: &BTreeSet<NodeId>,
    ) -> impl Future<Output = Result<BTreeMap<NodeId, Hash>>> + Send;
    /// See [`crate::Store::audit_snapshot`]: [`snapshot`] in a read transaction that sees one
    /// snapshot of the database.
    fn audit_snapshot_in(
        &self,
        visitor: &mut dyn AuditVisitor,
    ) -> impl Future<Output = Result<AuditSnapshot>> + Send;
}

/// Appends `events` if the statement before changed something, and says whether it did: a write
/// that changed nothing records nothing.
pub(crate) async fn record_if<C: Conn>(
    tx: &mut C,
    changed: bool,
    events: &[EventDraft],
    now: Timestamp,
) -> Result<bool> {
    if changed {
        tx.append(events, now).await?;
    }
    Ok(changed)
}

/// The head row: how many events the tree holds, and its frontier (its hashes, 32 bytes each,
/// largest subtree first).
pub(crate) async fn head<C: Conn>(c: &mut C) -> Result<Frontier> {
    frontier(&c.one(Stmt::new(C::AUDIT.head)).await?)
}

/// A row with the head's `size` and `frontier`.
pub(crate) fn frontier(r: &impl Row) -> Result<Frontier> {
    let size = r.count("size", "audit size")?;
    let blob = r.bytes("frontier")?;
    let hashes = blob.chunks(32).filter_map(Hash::from_slice).collect();
    Frontier::from_parts(size, hashes)
        .ok_or_else(|| StoreError::Corrupt("audit head frontier does not match its size".into()))
}

/// A frontier as the head row keeps it.
pub(crate) fn frontier_bytes(f: &Frontier) -> Vec<u8> {
    f.hashes().iter().flat_map(|h| h.0).collect()
}

/// See [`crate::Store::audit_tail`].
pub(crate) async fn tail<C: Conn>(c: &mut C, n: u32) -> Result<Vec<AuditEvent>> {
    let rows = c.all(Stmt::new(C::AUDIT.tail).int(i64::from(n))).await?;
    rows.iter().map(event).collect()
}

/// See [`crate::Store::audit_events`].
pub(crate) async fn from<C: Conn>(c: &mut C, from: u64, limit: u32) -> Result<Vec<AuditEvent>> {
    let page = Stmt::new(C::AUDIT.from)
        .int(to_i64(from)?)
        .int(i64::from(limit));
    c.all(page).await?.iter().map(event).collect()
}

/// See [`crate::Store::audit_size`].
pub(crate) async fn size<C: Conn>(c: &mut C) -> Result<u64> {
    c.one(Stmt::new(C::AUDIT.size)).await?.count("n", "count")
}

/// See [`crate::Store::save_checkpoint`].
pub(crate) async fn save_checkpoint<C: Conn>(
    tx: &mut C,
    size: u64,
    note: &str,
    now: Timestamp,
) -> Result<()> {
    let save = Stmt::new(C::AUDIT.save_checkpoint)
        .int(to_i64(size)?)
        .text(note)
        .time(now);
    tx.execute(save).await?;
    Ok(())
}

/// See [`crate::Store::latest_checkpoint`].
pub(crate) async fn latest_checkpoint<C: Conn>(c: &mut C) -> Result<Option<StoredCheckpoint>> {
    let row = c.optional(Stmt::new(C::AUDIT.latest_checkpoint)).await?;
    row.as_ref().map(checkpoint).transpose()
}

/// The head, the checkpoints (handed to the visitor first), then every event, read through `tx`
/// (which the backend opened on one snapshot). The events are streamed, not collected.
pub(crate) async fn snapshot<C: Conn>(
    tx: &mut C,
    visitor: &mut dyn AuditVisitor,
) -> Result<AuditSnapshot> {
    let head = head(tx).await?;
    let rows = tx.all(Stmt::new(C::AUDIT.checkpoints)).await?;
    let checkpoints = rows.iter().map(checkpoint).collect::<Result<Vec<_>>>()?;
    visitor.checkpoints(&checkpoints);
    let mut rows = tx.stream(Stmt::new(C::AUDIT.leaves));
    while let Some(r) = rows.try_next().await? {
        let leaf = r.opt_bytes("hash")?;
        visitor.event(
            r.count("seq", "audit seq")?,
            &r.bytes("bytes")?,
            leaf.as_deref().and_then(Hash::from_slice),
        );
    }
    Ok(AuditSnapshot {
        head_size: head.size(),
        head_root: head.root(),
        checkpoints,
    })
}

/// A row of `audit_log`: `seq` and `bytes`.
pub(crate) fn event(r: &impl Row) -> Result<AuditEvent> {
    Ok(AuditEvent {
        seq: r.count("seq", "audit seq")?,
        bytes: r.bytes("bytes")?,
    })
}

fn checkpoint(r: &impl Row) -> Result<StoredCheckpoint> {
    Ok(StoredCheckpoint {
        size: r.count("size", "checkpoint size")?,
        note: r.text("note")?,
        signed_at: r.time("signed_at")?,
    })
}
