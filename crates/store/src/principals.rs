//! Principals: how a principal's kind and groups are kept, the one name each may have, and
//! disabling, which ends every token the principal holds. Each backend supplies the SQL
//! ([`PrincipalSql`]).

use breakglass_core::{DomainError, EventDraft, Principal, PrincipalKind, Timestamp};

use crate::sql::{Conn, Row, Stmt};
use crate::{Result, StoreError, tokens};

/// The SQL of principals. Parameters, in order, after each field's name.
pub(crate) struct PrincipalSql {
    /// `name, kind, groups, disabled, created_at`: a new principal (a taken name is the
    /// database's unique violation).
    pub(crate) insert: &'static str,
    /// `disabled, name`: the flag set, unless it is set so already.
    pub(crate) set_disabled: &'static str,
    /// `name`: the principal's columns.
    pub(crate) by_name: &'static str,
    /// Every principal's columns, by name.
    pub(crate) all: &'static str,
}

/// Inserts `p`: [`DomainError::PrincipalExists`] if the name is taken.
pub(crate) async fn insert<C: Conn>(tx: &mut C, p: &Principal) -> Result<()> {
    let groups =
        serde_json::to_string(&p.groups).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let insert = Stmt::new(C::PRINCIPALS.insert)
        .text(p.name.as_str())
        .text(kind_name(p.kind))
        .text(&groups)
        .flag(p.disabled)
        .time(p.created_at);
    match tx.execute(insert).await {
        Ok(_) => Ok(()),
        Err(StoreError::Database(sqlx::Error::Database(e))) if e.is_unique_violation() => {
            Err(DomainError::PrincipalExists {
                name: p.name.to_string(),
            }
            .into())
        }
        Err(e) => Err(e),
    }
}

/// See [`crate::Store::create_principal`].
pub(crate) async fn create<C: Conn>(
    tx: &mut C,
    p: &Principal,
    events: &[EventDraft],
    now: Timestamp,
) -> Result<()> {
    insert(tx, p).await?;
    tx.append(events, now).await
}

/// See [`crate::Store::set_disabled`].
pub(crate) async fn set_disabled<C: Conn>(
    tx: &mut C,
    name: &str,
    disabled: bool,
    events: &[EventDraft],
    now: Timestamp,
) -> Result<bool> {
    let set = Stmt::new(C::PRINCIPALS.set_disabled)
        .flag(disabled)
        .text(name);
    if tx.execute(set).await? == 0 {
        return Ok(false);
    }
    if disabled {
        tokens::revoke_all_of(tx, name, now).await?;
    }
    tx.append(events, now).await?;
    Ok(true)
}

/// See [`crate::Store::principal`].
pub(crate) async fn get<C: Conn>(c: &mut C, name: &str) -> Result<Option<Principal>> {
    let row = c
        .optional(Stmt::new(C::PRINCIPALS.by_name).text(name))
        .await?;
    row.as_ref().map(principal).transpose()
}

/// See [`crate::Store::principals`].
pub(crate) async fn all<C: Conn>(c: &mut C) -> Result<Vec<Principal>> {
    let rows = c.all(Stmt::new(C::PRINCIPALS.all)).await?;
    rows.iter().map(principal).collect()
}

fn kind_name(kind: PrincipalKind) -> &'static str {
    match kind {
        PrincipalKind::Human => "human",
        PrincipalKind::Service => "service",
    }
}

fn principal(r: &impl Row) -> Result<Principal> {
    let name = r.text("name")?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("principal `{name}`: {what}"));
    Ok(Principal {
        name: name.parse().map_err(|_| corrupt("bad name"))?,
        kind: match r.text("kind")?.as_str() {
            "human" => PrincipalKind::Human,
            "service" => PrincipalKind::Service,
            _ => return Err(corrupt("bad kind")),
        },
        groups: serde_json::from_str(&r.text("groups")?).map_err(|_| corrupt("bad groups"))?,
        disabled: r.flag("disabled")?,
        created_at: r.time("created_at")?,
    })
}
