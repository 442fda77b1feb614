//! The record of loaded role files: replaced whole, and only if it is still what the caller
//! worked its changes out against, so that replicas loading the same change at once record it
//! once. Each backend supplies the SQL ([`RoleSql`]).

use breakglass_core::{EventDraft, Timestamp};

use crate::sql::{Conn, Row, Stmt};
use crate::{Result, RoleRecord};

/// The SQL of the role record. Parameters, in order, after each field's name.
pub(crate) struct RoleSql {
    /// Run before a replacement reads the record, where the backend needs a statement to keep
    /// other replacements out until the transaction ends (on SQLite, the writer already does).
    pub(crate) lock: Option<&'static str>,
    /// Every record's `id`, `hash` and `file`.
    pub(crate) all: &'static str,
    /// Every record deleted.
    pub(crate) delete_all: &'static str,
    /// `ids, hashes, files, loaded_at`: one record per position of the three lists.
    pub(crate) insert_all: &'static str,
}

/// See [`crate::Store::record_roles`].
pub(crate) async fn record<C: Conn>(
    tx: &mut C,
    previous: &[RoleRecord],
    current: &[RoleRecord],
    events: &[EventDraft],
    now: Timestamp,
) -> Result<bool> {
    if let Some(lock) = C::ROLES.lock {
        tx.execute(Stmt::new(lock)).await?;
    }
    // Whoever went first already recorded these changes: write nothing, and let the caller work
    // out what (if anything) is still to record.
    if all(tx).await? != by_id(previous.to_vec()) {
        return Ok(false);
    }
    tx.execute(Stmt::new(C::ROLES.delete_all)).await?;
    let insert = Stmt::new(C::ROLES.insert_all)
        .texts(current.iter().map(|r| r.id.as_str()).collect())
        .texts(current.iter().map(|r| r.hash.as_str()).collect())
        .texts(current.iter().map(|r| r.file.as_str()).collect())
        .time(now);
    tx.execute(insert).await?;
    tx.append(events, now).await?;
    Ok(true)
}

/// See [`crate::Store::roles`].
pub(crate) async fn all<C: Conn>(c: &mut C) -> Result<Vec<RoleRecord>> {
    let rows = c.all(Stmt::new(C::ROLES.all)).await?;
    let roles = rows
        .iter()
        .map(|r| {
            Ok(RoleRecord {
                id: r.text("id")?,
                hash: r.text("hash")?,
                file: r.text("file")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(by_id(roles))
}

fn by_id(mut roles: Vec<RoleRecord>) -> Vec<RoleRecord> {
    roles.sort_by(|a, b| a.id.cmp(&b.id));
    roles
}
