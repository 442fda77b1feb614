//! Grants and their credentials. A grant is kept whole as JSON in `body`, next to the columns the
//! workers filter on (`state`, `requested_at`, `expires_at`) and a `version` that every update
//! names; its credentials are sealed until delivered once. Each backend supplies the SQL
//! ([`GrantSql`]).

use std::collections::BTreeMap;

use breakglass_core::{
    CredentialFacts, DomainError, EventDraft, Grant, GrantId, Principal, StateKind, Timestamp,
};

use crate::sql::{Conn, Row, Stmt};
use crate::{NewCredential, Result, SealedCredential, StoreError, StoredGrant};

/// The SQL of grants. Parameters, in order, after each field's name; the reads return `body` and
/// `version`.
pub(crate) struct GrantSql {
    /// `id, role, requester, state, requested_at, expires_at, body`: a new grant at version 1.
    pub(crate) insert: &'static str,
    /// `state, expires_at, body, id, version`: the grant written over its row and moved to the
    /// next version, if the row is still at `version`.
    pub(crate) update: &'static str,
    /// `grant id, fingerprint, ciphertext, issued_at`: the grant's next credential.
    pub(crate) add_credential: &'static str,
    /// `grant id`: the ciphertext of every credential of the grant erased.
    pub(crate) erase_credentials: &'static str,
    /// `id`: the grant, kept from any other write until the transaction ends.
    pub(crate) lock: &'static str,
    /// `grant id`: `serial`, `fingerprint` and `ciphertext` of the grant's latest credential.
    pub(crate) latest_credential: &'static str,
    /// `delivered_at, delivered_to, grant id, serial`: the credential erased as delivered.
    pub(crate) mark_delivered: &'static str,
    /// `id`.
    pub(crate) by_id: &'static str,
    /// `state or NULL, limit`: newest first.
    pub(crate) list: &'static str,
    /// `state` and `n`, the count of grants in it, for each state.
    pub(crate) counts: &'static str,
    /// `states`: the grants in one of them, oldest first.
    pub(crate) in_states: &'static str,
    /// `now`: active grants whose end is at or before it, by end.
    pub(crate) due_for_expiry: &'static str,
    /// `cutoff`: requests made at or before it, oldest first.
    pub(crate) requested_before: &'static str,
    /// No parameters: `at`, the earliest `expires_at` of an active grant (NULL if none).
    pub(crate) next_expiry: &'static str,
    /// No parameters: `role` and `at`, its oldest pending request's `requested_at`, by role.
    pub(crate) oldest_requests: &'static str,
    /// `role, requester`: newest first.
    pub(crate) of_requester: &'static str,
}

/// A credential as stored: the ciphertext is gone once delivered (or erased).
struct Credential {
    serial: i64,
    fingerprint: String,
    ciphertext: Option<Vec<u8>>,
}

/// See [`crate::Store::insert_grant`].
pub(crate) async fn insert<C: Conn>(
    tx: &mut C,
    g: &Grant,
    events: &[EventDraft],
    now: Timestamp,
) -> Result<()> {
    let (id, body) = (g.id.to_string(), body(g)?);
    let insert = Stmt::new(C::GRANTS.insert)
        .text(&id)
        .text(g.role.as_str())
        .text(g.requester.as_str())
        .text(g.state.name())
        .time(g.requested_at)
        .opt_time(g.expires_at())
        .text(&body);
    tx.execute(insert).await?;
    tx.append(events, now).await
}

/// See [`crate::Store::update_grant`].
pub(crate) async fn update<C: Conn>(
    tx: &mut C,
    g: &Grant,
    expected: i64,
    credential: Option<&NewCredential>,
    events: &[EventDraft],
    now: Timestamp,
) -> Result<StoredGrant> {
    let (id, body) = (g.id.to_string(), body(g)?);
    let update = Stmt::new(C::GRANTS.update)
        .text(g.state.name())
        .opt_time(g.expires_at())
        .text(&body)
        .text(&id)
        .int(expected);
    if tx.execute(update).await? != 1 {
        return Err(StoreError::Conflict);
    }
    if let Some(c) = credential {
        let add = Stmt::new(C::GRANTS.add_credential)
            .text(&id)
            .text(&c.fingerprint)
            .bytes(&c.ciphertext)
            .time(now);
        tx.execute(add).await?;
    }
    if g.state.is_ended() || g.state.kind() == StateKind::Revoking {
        // INVARIANT(6): a credential nobody collected is not kept past its grant.
        tx.execute(Stmt::new(C::GRANTS.erase_credentials).text(&id))
            .await?;
    }
    tx.append(events, now).await?;
    Ok(StoredGrant {
        grant: g.clone(),
        // The row matched `version = expected` and the update moved it on by one.
        version: expected + 1,
    })
}

/// See [`crate::Store::deliver_credential`].
pub(crate) async fn deliver<C: Conn>(
    tx: &mut C,
    id: GrantId,
    to: &Principal,
    now: Timestamp,
) -> Result<SealedCredential> {
    let id = id.to_string();
    let Some(row) = tx.optional(Stmt::new(C::GRANTS.lock).text(&id)).await? else {
        return Err(DomainError::UnknownGrant { grant: id }.into());
    };
    let grant = stored(&row)?.grant;
    let latest = tx
        .optional(Stmt::new(C::GRANTS.latest_credential).text(&id))
        .await?
        .as_ref()
        .map(credential)
        .transpose()?;
    let facts = latest.as_ref().map(|c| CredentialFacts {
        fingerprint: c.fingerprint.clone(),
        delivered: c.ciphertext.is_none(),
    });
    // The core decides; this transaction applies its decision.
    let event = grant.deliver_credential(to, facts.as_ref(), now)?;
    let Some(Credential {
        serial,
        fingerprint,
        ciphertext: Some(ciphertext),
    }) = latest
    else {
        return Err(StoreError::Corrupt(
            "credential vanished while delivered".into(),
        ));
    };
    let delivered = Stmt::new(C::GRANTS.mark_delivered)
        .time(now)
        .text(to.name.as_str())
        .text(&id)
        .int(serial);
    tx.execute(delivered).await?;
    tx.append(&[event], now).await?;
    Ok(SealedCredential {
        fingerprint,
        ciphertext,
        // Read under the grant's lock: the end this credential carries.
        expires_at: grant.expires_at(),
    })
}

/// See [`crate::Store::grant`].
pub(crate) async fn get<C: Conn>(c: &mut C, id: GrantId) -> Result<Option<StoredGrant>> {
    let id = id.to_string();
    let row = c.optional(Stmt::new(C::GRANTS.by_id).text(&id)).await?;
    row.as_ref().map(stored).transpose()
}

/// See [`crate::Store::grants`].
pub(crate) async fn list<C: Conn>(
    c: &mut C,
    state: Option<StateKind>,
    limit: u32,
) -> Result<Vec<StoredGrant>> {
    let list = Stmt::new(C::GRANTS.list)
        .opt_text(state.map(StateKind::as_str))
        .int(i64::from(limit));
    stored_all(c, list).await
}

/// See [`crate::Store::grant_counts`].
pub(crate) async fn counts<C: Conn>(c: &mut C) -> Result<BTreeMap<StateKind, u64>> {
    let rows = c.all(Stmt::new(C::GRANTS.counts)).await?;
    rows.iter()
        .map(|r| {
            let name = r.text("state")?;
            let state = StateKind::parse(&name)
                .map_err(|_| StoreError::Corrupt(format!("unknown grant state `{name}`")))?;
            Ok((state, r.count("n", "count")?))
        })
        .collect()
}

/// See [`crate::Store::grants_in_states`].
pub(crate) async fn in_states<C: Conn>(
    c: &mut C,
    states: &[StateKind],
) -> Result<Vec<StoredGrant>> {
    let names = states.iter().map(|s| s.as_str()).collect();
    stored_all(c, Stmt::new(C::GRANTS.in_states).texts(names)).await
}

/// See [`crate::Store::due_for_expiry`].
pub(crate) async fn due_for_expiry<C: Conn>(c: &mut C, now: Timestamp) -> Result<Vec<StoredGrant>> {
    stored_all(c, Stmt::new(C::GRANTS.due_for_expiry).time(now)).await
}

/// See [`crate::Store::requested_before`].
pub(crate) async fn requested_before<C: Conn>(
    c: &mut C,
    cutoff: Timestamp,
) -> Result<Vec<StoredGrant>> {
    stored_all(c, Stmt::new(C::GRANTS.requested_before).time(cutoff)).await
}

/// See [`crate::Store::next_expiry`].
pub(crate) async fn next_expiry<C: Conn>(c: &mut C) -> Result<Option<Timestamp>> {
    c.one(Stmt::new(C::GRANTS.next_expiry))
        .await?
        .opt_time("at")
}

/// See [`crate::Store::oldest_requests`].
pub(crate) async fn oldest_requests<C: Conn>(c: &mut C) -> Result<Vec<(String, Timestamp)>> {
    c.all(Stmt::new(C::GRANTS.oldest_requests))
        .await?
        .iter()
        .map(|r| Ok((r.text("role")?, r.time("at")?)))
        .collect()
}

/// See [`crate::Store::grants_for`].
pub(crate) async fn of_requester<C: Conn>(
    c: &mut C,
    role: &str,
    requester: &str,
) -> Result<Vec<StoredGrant>> {
    let of = Stmt::new(C::GRANTS.of_requester).text(role).text(requester);
    stored_all(c, of).await
}

async fn stored_all<C: Conn>(c: &mut C, s: Stmt<'_>) -> Result<Vec<StoredGrant>> {
    c.all(s).await?.iter().map(stored).collect()
}

/// The grant as `body` keeps it.
fn body(g: &Grant) -> Result<String> {
    serde_json::to_string(g).map_err(|e| StoreError::Corrupt(format!("grant body: {e}")))
}

fn stored(r: &impl Row) -> Result<StoredGrant> {
    let grant = serde_json::from_str(&r.text("body")?)
        .map_err(|e| StoreError::Corrupt(format!("grant body: {e}")))?;
    Ok(StoredGrant {
        grant,
        version: r.int("version")?,
    })
}

fn credential(r: &impl Row) -> Result<Credential> {
    Ok(Credential {
        serial: r.int("serial")?,
        fingerprint: r.text("fingerprint")?,
        ciphertext: r.opt_bytes("ciphertext")?,
    })
}
