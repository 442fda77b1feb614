//! What the broker was set up with: the `initialized` marker, sealed key material
//! (`secret:NAME`) and plain settings (`setting:NAME`), all rows of `meta`. A name is claimed by
//! inserting it, so that of two processes setting up at once one does and the other finds it
//! done. Each backend supplies the SQL ([`MetaSql`]).

use breakglass_core::{EventDraft, Principal, Timestamp};

use crate::audit::record_if;
use crate::sql::{Conn, Row as _, Stmt};
use crate::{ApiToken, Result, StoreError, principals, tokens};

/// The key whose presence means `initialize` has run.
const INITIALIZED: &str = "initialized";

/// The SQL of `meta`. Parameters, in order, after each field's name.
pub(crate) struct MetaSql {
    /// `key`: whether it is there, as the flag `present`.
    pub(crate) present: &'static str,
    /// `key, value`: the key inserted, unless it is there already (waiting for a racing insert
    /// of the same key, then seeing it).
    pub(crate) insert_once: &'static str,
    /// `key, value`: a key that must not be there yet.
    pub(crate) insert: &'static str,
    /// `key, value`: the key set to the value, unless it holds it already.
    pub(crate) set: &'static str,
    /// `key`: its `value`.
    pub(crate) value: &'static str,
}

/// See [`crate::Store::initialized`].
pub(crate) async fn initialized<C: Conn>(c: &mut C) -> Result<bool> {
    let present = Stmt::new(C::META.present).text(INITIALIZED);
    c.one(present).await?.flag("present")
}

/// See [`crate::Store::initialize`].
pub(crate) async fn initialize<C: Conn>(
    tx: &mut C,
    admin: &Principal,
    token: &ApiToken,
    secrets: &[(String, Vec<u8>)],
    events: &[EventDraft],
    now: Timestamp,
) -> Result<()> {
    // The marker first: a second process initialising at the same moment waits for this
    // transaction (PostgreSQL), then finds the key taken.
    let marker = now.unix_millis().to_string();
    let claim = Stmt::new(C::META.insert_once)
        .text(INITIALIZED)
        .bytes(marker.as_bytes());
    if tx.execute(claim).await? == 0 {
        return Err(StoreError::AlreadyInitialized);
    }
    for (name, value) in secrets {
        insert_secret(tx, name, value).await?;
    }
    principals::insert(tx, admin).await?;
    tokens::insert(tx, token).await?;
    tx.append(events, now).await
}

/// See [`crate::Store::add_secrets`].
pub(crate) async fn add_secrets<C: Conn>(
    tx: &mut C,
    secrets: &[(String, Vec<u8>)],
    events: &[EventDraft],
    now: Timestamp,
) -> Result<bool> {
    let Some(((first, value), rest)) = secrets.split_first() else {
        return Ok(false);
    };
    // The first name is the claim: a process adding the same secrets at the same moment waits
    // for this insert (PostgreSQL), then finds the name taken and writes nothing.
    let key = secret_key(first);
    let claim = Stmt::new(C::META.insert_once).text(&key).bytes(value);
    if tx.execute(claim).await? == 0 {
        return Ok(false);
    }
    for (name, value) in rest {
        insert_secret(tx, name, value).await?;
    }
    tx.append(events, now).await?;
    Ok(true)
}

/// See [`crate::Store::secret`].
pub(crate) async fn secret<C: Conn>(c: &mut C, name: &str) -> Result<Option<Vec<u8>>> {
    value(c, &secret_key(name)).await
}

/// See [`crate::Store::record_setting`].
pub(crate) async fn record_setting<C: Conn>(
    tx: &mut C,
    name: &str,
    value: &[u8],
    events: &[EventDraft],
    now: Timestamp,
) -> Result<bool> {
    let key = setting_key(name);
    let done = tx
        .execute(Stmt::new(C::META.set).text(&key).bytes(value))
        .await?;
    record_if(tx, done > 0, events, now).await
}

/// See [`crate::Store::setting`].
pub(crate) async fn setting<C: Conn>(c: &mut C, name: &str) -> Result<Option<Vec<u8>>> {
    value(c, &setting_key(name)).await
}

async fn insert_secret<C: Conn>(tx: &mut C, name: &str, value: &[u8]) -> Result<()> {
    let key = secret_key(name);
    tx.execute(Stmt::new(C::META.insert).text(&key).bytes(value))
        .await?;
    Ok(())
}

async fn value<C: Conn>(c: &mut C, key: &str) -> Result<Option<Vec<u8>>> {
    let row = c.optional(Stmt::new(C::META.value).text(key)).await?;
    row.map(|r| r.bytes("value")).transpose()
}

fn secret_key(name: &str) -> String {
    format!("secret:{name}")
}

fn setting_key(name: &str) -> String {
    format!("setting:{name}")
}
