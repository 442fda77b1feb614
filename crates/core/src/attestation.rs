//! Owner attestation: a member of a role's owner group re-confirms, every `attest_every`, that the
//! role is still needed and correctly scoped. An attestation is bound to the role file's content
//! hash, so a changed file needs a fresh one.
//!
//! Everything here is a pure function of (role, what the store knows about it, now):
//!
//! - [`status`]: current, due soon (from [`REMIND_BEFORE`] before the due date), lapsed, or
//!   expired (past `[governance] expires`);
//! - [`check_request`]: whether a new request (emergency ones included) is refused
//!   (`role_lapsed`) under `on_lapse = "disable"`;
//! - [`attest`]: who may attest and what is recorded (`role.attested`);
//! - [`notice`] and [`next_notice`]: which reminder or lapse alert is owed now, and when the next
//!   one falls due, for the worker that sends them once each.
//!
//! A content that has never been attested is not disabled the moment it loads: every new role
//! would be dead on arrival, and editing a role during an incident would shut its emergency path.
//! It is due [`FIRST_ATTEST_WITHIN`] after that content came into force (reminders at once), and
//! lapses after that like any other.

use serde::Serialize;

use crate::role::OnLapse;
use crate::{Actor, DomainError, Duration, EventDraft, EventKind, Principal, PrincipalKind, Role};
use crate::{Timestamp, text};

/// Reminders start this long before an attestation is due (Teleport's two weeks).
pub const REMIND_BEFORE: Duration = Duration::from_secs(14 * 86_400);
/// How long a role's content may stay in force before its first attestation is due.
pub const FIRST_ATTEST_WITHIN: Duration = Duration::from_secs(14 * 86_400);
/// The longest attestation note.
pub const MAX_NOTE_CHARS: usize = 1000;

/// One recorded attestation of one content of a role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attestation {
    pub role: String,
    /// The role file's hash that was attested.
    pub hash: String,
    pub by: String,
    pub note: String,
    pub at: Timestamp,
    /// When the next attestation is due (`at` plus the role's `attest_every`).
    pub next_due: Timestamp,
}

/// Where a role stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttestationState {
    /// Attested (or newly loaded), and not due within [`REMIND_BEFORE`].
    Current,
    /// Due within [`REMIND_BEFORE`]: reminders are sent.
    DueSoon,
    /// Its due date passed with no attestation of its current content.
    Lapsed,
    /// Past its `expires` date.
    Expired,
}

impl AttestationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::DueSoon => "due_soon",
            Self::Lapsed => "lapsed",
            Self::Expired => "expired",
        }
    }
}

/// A role's attestation status at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttestationStatus {
    pub state: AttestationState,
    /// When the current content's (next) attestation is due.
    pub due: Timestamp,
    /// The latest attestation of the current content, if any.
    pub last_attested: Option<Timestamp>,
    pub last_attested_by: Option<String>,
    /// The first instant the role is no longer valid (`[governance] expires`).
    pub expires: Option<Timestamp>,
    pub on_lapse: &'static str,
}

/// Where `role` stands at `now`: `latest` is the latest attestation of its current content (the
/// caller passes only one whose hash is `role.hash`), `since` when that content came into force.
pub fn status(
    role: &Role,
    latest: Option<&Attestation>,
    since: Timestamp,
    now: Timestamp,
) -> AttestationStatus {
    let latest = latest.filter(|a| a.hash == role.hash);
    let due = match latest {
        Some(a) => a.at.saturating_add(role.governance.attest_every),
        None => since.saturating_add(FIRST_ATTEST_WITHIN),
    };
    let remind_from =
        Timestamp::from_unix_millis(due.unix_millis().saturating_sub(REMIND_BEFORE.as_millis()));
    let state = match role.governance.expires {
        Some(end) if now >= end => AttestationState::Expired,
        _ if now >= due => AttestationState::Lapsed,
        _ if now >= remind_from => AttestationState::DueSoon,
        _ => AttestationState::Current,
    };
    AttestationStatus {
        state,
        due,
        last_attested: latest.map(|a| a.at),
        last_attested_by: latest.map(|a| a.by.clone()),
        expires: role.governance.expires,
        on_lapse: role.governance.on_lapse.as_str(),
    }
}

/// Refuses a new request of `role` (emergency ones included) when it has lapsed or expired and
/// its `on_lapse` is `disable`. With `warn` requests go on (the lapse is alerted by the worker).
/// Grants already active are never cut by this.
pub fn check_request(role: &Role, status: &AttestationStatus) -> Result<(), DomainError> {
    let expired = match status.state {
        AttestationState::Current | AttestationState::DueSoon => return Ok(()),
        AttestationState::Lapsed => false,
        AttestationState::Expired => true,
    };
    match role.governance.on_lapse {
        OnLapse::Warn => Ok(()),
        OnLapse::Disable => Err(DomainError::RoleLapsed {
            role: role.id.to_string(),
            owner: role.owner.to_string(),
            why: if expired {
                format!(
                    "it expired after `{}`",
                    role.governance.expires_date.as_deref().unwrap_or_default()
                )
            } else {
                format!("its attestation lapsed at {}", status.due)
            },
            expired,
            file: role.file.clone(),
        }),
    }
}

/// A member of `role`'s owner group, a person, confirms at `now` that the role is still needed
/// and correctly scoped. Returns the attestation to record and its `role.attested` event.
pub fn attest(
    role: &Role,
    by: &Principal,
    note: &str,
    now: Timestamp,
) -> Result<(Attestation, EventDraft), DomainError> {
    if by.kind == PrincipalKind::Service {
        return Err(DomainError::ServiceCannotAttest {
            principal: by.name.to_string(),
            role: role.id.to_string(),
            owner: role.owner.to_string(),
        });
    }
    if !role.is_owner(by) {
        return Err(DomainError::NotOwner {
            principal: by.name.to_string(),
            role: role.id.to_string(),
            owner: role.owner.to_string(),
        });
    }
    let note = text::free_text("note", note, MAX_NOTE_CHARS, true)?;
    let a = Attestation {
        role: role.id.to_string(),
        hash: role.hash.clone(),
        by: by.name.to_string(),
        note,
        at: now,
        next_due: now.saturating_add(role.governance.attest_every),
    };
    let event = EventDraft::new(
        Actor::User(by.name.clone()),
        None,
        EventKind::RoleAttested {
            role: a.role.clone(),
            hash: a.hash.clone(),
            by: a.by.clone(),
            note: a.note.clone(),
            next_due: a.next_due,
        },
    );
    Ok((a, event))
}

/// Which alert a notice is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NoticeKind {
    /// `role.attestation_due`: the due date is near.
    Due,
    /// `role.lapsed` because the due date passed.
    Lapsed,
    /// `role.lapsed` because the `expires` date passed.
    Expired,
}

impl NoticeKind {
    pub const ALL: [NoticeKind; 3] = [NoticeKind::Due, NoticeKind::Lapsed, NoticeKind::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Due => "due",
            Self::Lapsed => "lapsed",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<NoticeKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One alert owed about one content of a role, sent once: `(role, hash, kind, at)` is its key, `at`
/// being the due date (or the expiry) it is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NoticeKey {
    pub role: String,
    pub hash: String,
    pub kind: NoticeKind,
    pub at: Timestamp,
}

/// The alert owed about `role` at `now`, if any, with its event: the lapse (or expiry) once it has
/// happened, else a reminder once the due date is within [`REMIND_BEFORE`]. A reminder that was
/// never sent is not sent after the lapse; the lapse says more.
pub fn notice(role: &Role, status: &AttestationStatus) -> Option<(NoticeKey, EventDraft)> {
    let (kind, at) = match status.state {
        AttestationState::Current => return None,
        AttestationState::DueSoon => (NoticeKind::Due, status.due),
        AttestationState::Lapsed => (NoticeKind::Lapsed, status.due),
        AttestationState::Expired => (NoticeKind::Expired, status.expires?),
    };
    let role_id = role.id.to_string();
    let owner = role.owner.to_string();
    let event = match kind {
        NoticeKind::Due => EventKind::RoleAttestationDue {
            role: role_id.clone(),
            hash: role.hash.clone(),
            owner,
            due: at,
            last_attested: status.last_attested,
        },
        NoticeKind::Lapsed | NoticeKind::Expired => EventKind::RoleLapsed {
            role: role_id.clone(),
            hash: role.hash.clone(),
            owner,
            cause: if kind == NoticeKind::Expired {
                "expired".into()
            } else {
                "attestation".into()
            },
            since: at,
            on_lapse: role.governance.on_lapse.as_str().into(),
        },
    };
    let key = NoticeKey {
        role: role_id,
        hash: role.hash.clone(),
        kind,
        at,
    };
    Some((
        key,
        EventDraft::new(Actor::System("attestations"), None, event),
    ))
}

/// When the next alert about `role` falls due after `now` (the start of the reminders, the due
/// date, or the expiry), if ever.
pub fn next_notice(status: &AttestationStatus, now: Timestamp) -> Option<Timestamp> {
    let remind_from = Timestamp::from_unix_millis(
        status
            .due
            .unix_millis()
            .saturating_sub(REMIND_BEFORE.as_millis()),
    );
    [Some(remind_from), Some(status.due), status.expires]
        .into_iter()
        .flatten()
        .filter(|t| *t > now)
        .min()
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on anything unexpected"
)]
mod tests {
    use super::*;
    use crate::Name;

    const EXAMPLE: &str = r#"
id = "prod-db-admin"
title = "Emergency admin on the production database"
owner = "group:dba-leads"
requesters = ["group:sre"]
default_duration = "30m"
max_duration = "1h"
[approval]
quorum = 1
approvers = ["group:sre-leads"]
[target]
kind = "token"
audience = "prod-db"
scope = ["db:admin"]
"#;

    const DAY: i64 = 86_400_000;
    /// 2026-12-01T00:00:00Z.
    const T0: i64 = 1_796_083_200_000;

    fn t(days: i64) -> Timestamp {
        Timestamp::from_unix_millis(T0 + days * DAY)
    }

    fn role(extra: &str) -> Role {
        Role::parse("roles/x.toml", &format!("{EXAMPLE}{extra}")).unwrap()
    }

    fn person(groups: &[&str], kind: PrincipalKind) -> Principal {
        Principal {
            name: "dana".parse().unwrap(),
            kind,
            groups: groups.iter().map(|g| g.parse::<Name>().unwrap()).collect(),
            disabled: false,
            created_at: t(0),
        }
    }

    fn attested(r: &Role, at: Timestamp) -> Attestation {
        attest(
            r,
            &person(&["dba-leads"], PrincipalKind::Human),
            "still needed",
            at,
        )
        .unwrap()
        .0
    }

    #[test]
    fn a_new_content_is_due_two_weeks_after_it_loads_and_reminded_at_once() {
        let r = role("[governance]\nattest_every = \"90d\"\n");
        let s = status(&r, None, t(0), t(0));
        assert_eq!(s.state, AttestationState::DueSoon);
        assert_eq!(s.due, t(14));
        assert_eq!(s.last_attested, None);
        assert!(check_request(&r, &s).is_ok(), "not dead on arrival");
        let s = status(&r, None, t(0), t(14));
        assert_eq!(s.state, AttestationState::Lapsed);
    }

    #[test]
    fn an_attestation_is_good_for_attest_every_and_reminders_start_two_weeks_before() {
        let r = role("[governance]\nattest_every = \"90d\"\n");
        let a = attested(&r, t(1));
        assert_eq!(a.next_due, t(91));
        let at = |d| status(&r, Some(&a), t(0), t(d)).state;
        assert_eq!(at(1), AttestationState::Current);
        assert_eq!(at(76), AttestationState::Current);
        assert_eq!(
            status(
                &r,
                Some(&a),
                t(0),
                Timestamp::from_unix_millis(t(77).unix_millis())
            )
            .state,
            AttestationState::DueSoon
        );
        assert_eq!(at(90), AttestationState::DueSoon);
        assert_eq!(at(91), AttestationState::Lapsed);
        let s = status(&r, Some(&a), t(0), t(2));
        assert_eq!(s.last_attested, Some(t(1)));
        assert_eq!(s.last_attested_by.as_deref(), Some("dana"));
    }

    #[test]
    fn a_changed_file_needs_a_fresh_attestation() {
        let r = role("[governance]\nattest_every = \"90d\"\n");
        let a = attested(&r, t(1));
        let edited = role("[governance]\nattest_every = \"90d\"\n# a comment\n");
        assert_ne!(edited.hash, r.hash);
        // The old content's attestation does not count for the new one, which came into force at
        // day 30 and is due two weeks later.
        let s = status(&edited, Some(&a), t(30), t(31));
        assert_eq!(s.last_attested, None);
        assert_eq!(s.due, t(44));
        assert_eq!(
            status(&edited, Some(&a), t(30), t(44)).state,
            AttestationState::Lapsed
        );
    }

    #[test]
    fn a_lapsed_role_refuses_requests_only_when_it_disables() {
        let r = role("");
        let s = status(&r, None, t(0), t(15));
        let e = check_request(&r, &s).unwrap_err();
        assert_eq!(e.code(), "role_lapsed");
        assert_eq!(
            e.to_string(),
            format!(
                "role `{}` is disabled: its attestation lapsed at 2026-12-15T00:00:00.000Z",
                r.id
            )
        );
        let help = e.help();
        assert!(help.contains(&r.owner.to_string()), "{help}");
        assert!(
            help.contains(&format!("breakglass roles attest {} --note", r.id)),
            "{help}"
        );
        let warn = role("[governance]\non_lapse = \"warn\"\n");
        let s = status(&warn, None, t(0), t(15));
        assert_eq!(s.state, AttestationState::Lapsed);
        assert!(check_request(&warn, &s).is_ok());
    }

    #[test]
    fn an_expired_role_refuses_even_when_attested_and_says_to_edit_the_file() {
        let r = role("[governance]\nexpires = \"2026-12-10\"\n");
        let a = attested(&r, t(0));
        assert_eq!(
            status(&r, Some(&a), t(0), t(9)).state,
            AttestationState::Current
        );
        let s = status(&r, Some(&a), t(0), t(10));
        assert_eq!(s.state, AttestationState::Expired);
        let e = check_request(&r, &s).unwrap_err();
        assert_eq!(e.code(), "role_lapsed");
        assert!(e.to_string().contains("expired after `2026-12-10`"), "{e}");
        assert!(e.help().contains("roles/x.toml"), "{}", e.help());
        assert!(e.help().contains("expires"), "{}", e.help());
    }

    #[test]
    fn only_a_person_in_the_owner_group_attests() {
        let r = role("");
        let e = attest(&r, &person(&["sre"], PrincipalKind::Human), "ok", t(0)).unwrap_err();
        assert_eq!(e.code(), "not_owner");
        assert!(e.help().contains(&r.owner.to_string()), "{}", e.help());
        let e = attest(
            &r,
            &person(&["dba-leads"], PrincipalKind::Service),
            "ok",
            t(0),
        )
        .unwrap_err();
        assert_eq!(e.code(), "service_cannot_attest");
        let e = attest(
            &r,
            &person(&["dba-leads"], PrincipalKind::Human),
            "  ",
            t(0),
        )
        .unwrap_err();
        assert_eq!(e.code(), "invalid_field");
        let (a, ev) = attest(
            &r,
            &person(&["dba-leads"], PrincipalKind::Human),
            " still needed ",
            t(0),
        )
        .unwrap();
        assert_eq!(a.note, "still needed");
        assert_eq!(ev.kind.type_name(), "role.attested");
        assert_eq!(ev.actor, Actor::User("dana".parse().unwrap()));
    }

    #[test]
    fn notices_remind_then_tell_of_the_lapse_then_of_the_expiry() {
        let r = role("[governance]\nexpires = \"2027-01-31\"\n");
        let s = status(&r, None, t(0), t(0));
        let (k, ev) = notice(&r, &s).unwrap();
        assert_eq!((k.kind, k.at), (NoticeKind::Due, t(14)));
        assert_eq!(ev.kind.type_name(), "role.attestation_due");
        assert_eq!(next_notice(&s, t(0)), Some(t(14)));
        let s = status(&r, None, t(0), t(14));
        let (k, ev) = notice(&r, &s).unwrap();
        assert_eq!((k.kind, k.at), (NoticeKind::Lapsed, t(14)));
        assert_eq!(ev.kind.type_name(), "role.lapsed");
        // Valid through 31 January: it ends at midnight starting 1 February, day 62.
        assert_eq!(next_notice(&s, t(14)), Some(t(62)), "the expiry is next");
        let s = status(&r, None, t(0), t(62));
        let (k, _) = notice(&r, &s).unwrap();
        assert_eq!((k.kind, k.at), (NoticeKind::Expired, t(62)));
        assert_eq!(next_notice(&s, t(62)), None);
        // Attested: nothing is owed until two weeks before the next due date.
        let a = attested(&r, t(1));
        let s = status(&r, Some(&a), t(0), t(2));
        assert_eq!(notice(&r, &s), None);
        assert_eq!(next_notice(&s, t(2)), Some(t(62)), "the expiry comes first");
    }
}
