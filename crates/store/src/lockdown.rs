//! Lockdowns: a row per lockdown ever engaged, in force until its `lifted_at` is set. At most one
//! of each scope is in force at once (a unique index over the rows not lifted), so two
//! administrators engaging the same scope at once record it once. The rules (who may, what is
//! covered) are the core's (`breakglass_core::lockdown`); this applies what it decided. Each
//! backend supplies the SQL ([`LockdownSql`]).

use breakglass_core::{EventDraft, Lockdown, LockdownScope, Name, Timestamp};

use crate::sql::{Conn, Row, Stmt};
use crate::{GrantUpdate, Result, StoreError, StoredGrant, grants};

/// The SQL of lockdowns. Parameters, in order, after each field's name.
pub(crate) struct LockdownSql {
    /// `id, scope, reason, engaged_by, engaged_at`: a lockdown in force, unless one of the same
    /// scope is in force already (then nothing is inserted).
    pub(crate) insert: &'static str,
    /// `lifted_by, lifted_at, ids`: each of `ids` still in force lifted.
    pub(crate) lift: &'static str,
    /// No parameters: `id, scope, reason, engaged_by, engaged_at` of every lockdown in force,
    /// oldest first.
    pub(crate) in_force: &'static str,
}

/// See [`crate::Store::engage_lockdown`].
pub(crate) async fn engage<C: Conn>(
    tx: &mut C,
    l: &Lockdown,
    events: &[EventDraft],
    now: Timestamp,
) -> Result<bool> {
    let scope = l.scope.as_string();
    let insert = Stmt::new(C::LOCKDOWNS.insert)
        .text(&l.id)
        .text(&scope)
        .text(&l.reason)
        .text(l.engaged_by.as_str())
        .time(l.engaged_at);
    if tx.execute(insert).await? != 1 {
        return Ok(false);
    }
    tx.append(events, now).await?;
    Ok(true)
}

/// See [`crate::Store::lift_lockdowns`].
pub(crate) async fn lift<C: Conn>(
    tx: &mut C,
    ids: &[String],
    by: &str,
    events: &[EventDraft],
    now: Timestamp,
) -> Result<()> {
    let lift = Stmt::new(C::LOCKDOWNS.lift)
        .text(by)
        .time(now)
        .texts(ids.iter().map(String::as_str).collect());
    // Someone lifted one of them meanwhile: nothing of this is kept, and the caller decides again.
    if tx.execute(lift).await? != u64::try_from(ids.len()).unwrap_or(u64::MAX) {
        return Err(StoreError::Conflict);
    }
    tx.append(events, now).await
}

/// See [`crate::Store::update_grants`].
pub(crate) async fn update_grants<C: Conn>(
    tx: &mut C,
    batch: &[GrantUpdate],
    now: Timestamp,
) -> Result<Vec<Option<StoredGrant>>> {
    let mut out = Vec::with_capacity(batch.len());
    for u in batch {
        // A stale version matches no row and writes nothing (not even its events), so the rest
        // of the batch carries on in the same transaction.
        match grants::update(tx, &u.grant, u.expected_version, None, &u.events, now).await {
            Ok(s) => out.push(Some(s)),
            Err(StoreError::Conflict) => out.push(None),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// See [`crate::Store::lockdowns`].
pub(crate) async fn in_force<C: Conn>(c: &mut C) -> Result<Vec<Lockdown>> {
    c.all(Stmt::new(C::LOCKDOWNS.in_force))
        .await?
        .iter()
        .map(|r| {
            let scope = r.text("scope")?;
            let by = r.text("engaged_by")?;
            Ok(Lockdown {
                id: r.text("id")?,
                scope: LockdownScope::parse(&scope)
                    .ok_or_else(|| StoreError::Corrupt(format!("lockdown scope `{scope}`")))?,
                reason: r.text("reason")?,
                engaged_by: by
                    .parse::<Name>()
                    .map_err(|_| StoreError::Corrupt(format!("lockdown by `{by}`")))?,
                engaged_at: r.time("engaged_at")?,
            })
        })
        .collect()
}
