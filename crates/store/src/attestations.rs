//! Owner attestations of roles: when each role's current content came into force, every
//! attestation (bound to the content it attests), and the reminders and lapse alerts already sent.
//! The rules (what is due, who may attest) are the core's (`breakglass_core::attestation`); this
//! keeps the facts they need. Each backend supplies the SQL ([`AttestationSql`]).

use std::collections::BTreeSet;

use breakglass_core::attestation::{Attestation, NoticeKey, NoticeKind};
use breakglass_core::{EventDraft, Timestamp};

use crate::sql::{Conn, Row, Stmt};
use crate::{Result, StoreError};

/// When a role's content (its file's hash) came into force here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleContent {
    pub role: String,
    pub hash: String,
    pub since: Timestamp,
}

/// What the attestation rules read: when each role's content came into force, and the latest
/// attestation of each content of each role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttestationBook {
    pub contents: Vec<RoleContent>,
    pub latest: Vec<Attestation>,
}

impl AttestationBook {
    /// When `role`'s content `hash` came into force, if it is the one recorded.
    pub fn since(&self, role: &str, hash: &str) -> Option<Timestamp> {
        self.contents
            .iter()
            .find(|c| c.role == role && c.hash == hash)
            .map(|c| c.since)
    }

    /// The latest attestation of `role`'s content `hash`.
    pub fn latest(&self, role: &str, hash: &str) -> Option<&Attestation> {
        self.latest
            .iter()
            .find(|a| a.role == role && a.hash == hash)
    }
}

/// The SQL of attestations. Parameters, in order, after each field's name.
pub(crate) struct AttestationSql {
    /// `roles, hashes, now`: records each role's content as in force since `now` unless that very
    /// content already is (a role whose hash changed starts again).
    pub(crate) in_force: &'static str,
    /// `roles`: forgets the roles not among them (a role removed and added back starts again).
    pub(crate) forget_others: &'static str,
    /// Every `role`, `hash`, `since`.
    pub(crate) contents: &'static str,
    /// `role, hash, attested_by, note, attested_at, next_due`.
    pub(crate) insert: &'static str,
    /// The latest attestation of each (role, hash): `role`, `hash`, `attested_by`, `note`,
    /// `attested_at`, `next_due`.
    pub(crate) latest: &'static str,
    /// `role, hash, kind, due, sent_at`: a notice, unless it was sent (nothing changed then).
    pub(crate) insert_notice: &'static str,
    /// Every notice sent: `role`, `hash`, `kind`, `due`.
    pub(crate) notices: &'static str,
}

/// See [`crate::Store::roles_in_force`].
pub(crate) async fn in_force<C: Conn>(
    tx: &mut C,
    roles: &[(String, String)],
    now: Timestamp,
) -> Result<()> {
    let ids: Vec<&str> = roles.iter().map(|(r, _)| r.as_str()).collect();
    let hashes: Vec<&str> = roles.iter().map(|(_, h)| h.as_str()).collect();
    tx.execute(Stmt::new(C::ATTESTATIONS.forget_others).texts(ids.clone()))
        .await?;
    tx.execute(
        Stmt::new(C::ATTESTATIONS.in_force)
            .texts(ids)
            .texts(hashes)
            .time(now),
    )
    .await?;
    Ok(())
}

/// See [`crate::Store::attestation_book`].
pub(crate) async fn book<C: Conn>(c: &mut C) -> Result<AttestationBook> {
    let contents = c
        .all(Stmt::new(C::ATTESTATIONS.contents))
        .await?
        .iter()
        .map(|r| {
            Ok(RoleContent {
                role: r.text("role")?,
                hash: r.text("hash")?,
                since: r.time("since")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let latest = c
        .all(Stmt::new(C::ATTESTATIONS.latest))
        .await?
        .iter()
        .map(|r| {
            Ok(Attestation {
                role: r.text("role")?,
                hash: r.text("hash")?,
                by: r.text("attested_by")?,
                note: r.text("note")?,
                at: r.time("attested_at")?,
                next_due: r.time("next_due")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(AttestationBook { contents, latest })
}

/// See [`crate::Store::record_attestation`].
pub(crate) async fn record<C: Conn>(
    tx: &mut C,
    a: &Attestation,
    events: &[EventDraft],
    now: Timestamp,
) -> Result<()> {
    let insert = Stmt::new(C::ATTESTATIONS.insert)
        .text(&a.role)
        .text(&a.hash)
        .text(&a.by)
        .text(&a.note)
        .time(a.at)
        .time(a.next_due);
    tx.execute(insert).await?;
    tx.append(events, now).await
}

/// See [`crate::Store::record_attestation_notice`].
pub(crate) async fn record_notice<C: Conn>(
    tx: &mut C,
    key: &NoticeKey,
    events: &[EventDraft],
    now: Timestamp,
) -> Result<bool> {
    let insert = Stmt::new(C::ATTESTATIONS.insert_notice)
        .text(&key.role)
        .text(&key.hash)
        .text(key.kind.as_str())
        .time(key.at)
        .time(now);
    // Another replica (or an earlier pass) sent it: its event is already in the log.
    if tx.execute(insert).await? == 0 {
        return Ok(false);
    }
    tx.append(events, now).await?;
    Ok(true)
}

/// See [`crate::Store::attestation_notices`].
pub(crate) async fn notices<C: Conn>(c: &mut C) -> Result<BTreeSet<NoticeKey>> {
    c.all(Stmt::new(C::ATTESTATIONS.notices))
        .await?
        .iter()
        .map(|r| {
            let kind = r.text("kind")?;
            Ok(NoticeKey {
                role: r.text("role")?,
                hash: r.text("hash")?,
                kind: NoticeKind::parse(&kind).ok_or_else(|| {
                    StoreError::Corrupt(format!("unknown attestation notice kind `{kind}`"))
                })?,
                at: r.time("due")?,
            })
        })
        .collect()
}
