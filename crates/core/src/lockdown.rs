//! The lockdown switch: for the day the break-glass path itself is suspected. An administrator
//! engages a lockdown of one role or of every role; every live grant in its scope is ended (the
//! privilege revoked at its target, a waiting request cancelled), and every new request in scope,
//! emergency ones included, is refused until an administrator lifts it.
//!
//! The rules are here, as functions of (the lockdowns in force, the input, now):
//! [`engage`] and [`lift`] decide a change and the audit event that records it, [`refusal`] says
//! whether a request (or an approval, or an extension) for a role is refused now, and
//! [`Grant::end_for_lockdown`] is what a lockdown does to one grant.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::event::EndCauseKind;
use crate::text::free_text;
use crate::{
    Actor, DomainError, EndCause, EventDraft, EventKind, Grant, GrantState, Name, Principal,
    RoleSet, Timestamp, Transition,
};

/// The longest reason a lockdown (or its lift) may give.
pub const MAX_REASON_CHARS: usize = 1000;

/// What a lockdown covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LockdownScope {
    /// Every role, including roles added while it is in force.
    All,
    /// One role.
    Role(Name),
}

impl LockdownScope {
    /// Whether a request for `role` falls in this scope.
    pub fn covers(&self, role: &str) -> bool {
        match self {
            Self::All => true,
            Self::Role(r) => r.as_str() == role,
        }
    }

    /// How the scope is stored and shown: `all`, or `role:ID`.
    pub fn as_string(&self) -> String {
        match self {
            Self::All => "all".into(),
            Self::Role(r) => format!("role:{r}"),
        }
    }

    /// The stored form back; `None` for anything else.
    pub fn parse(s: &str) -> Option<LockdownScope> {
        if s == "all" {
            return Some(Self::All);
        }
        s.strip_prefix("role:")
            .and_then(|r| r.parse().ok())
            .map(Self::Role)
    }

    /// The flag that names it on the command line.
    pub(crate) fn flag(&self) -> String {
        match self {
            Self::All => "--all".into(),
            Self::Role(r) => format!("--role {r}"),
        }
    }
}

impl fmt::Display for LockdownScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("every role"),
            Self::Role(r) => write!(f, "role `{r}`"),
        }
    }
}

impl Serialize for LockdownScope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_string())
    }
}

impl<'de> Deserialize<'de> for LockdownScope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("bad scope `{s}`")))
    }
}

/// A lockdown in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lockdown {
    pub id: String,
    pub scope: LockdownScope,
    pub reason: String,
    pub engaged_by: Name,
    pub engaged_at: Timestamp,
}

/// What a lockdown refuses: every way privilege in its scope could be asked for or moved forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Request,
    Emergency,
    /// Approving a pending request (or a pending extension).
    Approval,
    Extension,
}

impl Refused {
    fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Emergency => "emergency request",
            Self::Approval => "approval",
            Self::Extension => "extension",
        }
    }
}

/// The lockdown in force that covers `role`, if any: a role's own before one of every role, and
/// the oldest of each.
pub fn covering<'a>(in_force: &'a [Lockdown], role: &str) -> Option<&'a Lockdown> {
    in_force
        .iter()
        .filter(|l| l.scope.covers(role))
        .min_by_key(|l| (l.scope == LockdownScope::All, l.engaged_at))
}

/// Whether `what` for `role` is refused now: `locked_down`, naming who engaged the lockdown,
/// why, and the command that lifts it.
pub fn refusal(in_force: &[Lockdown], role: &str, what: Refused) -> Result<(), DomainError> {
    match covering(in_force, role) {
        None => Ok(()),
        Some(l) => Err(DomainError::LockedDown {
            role: role.to_owned(),
            what: what.as_str(),
            lockdown: Box::new(l.clone()),
        }),
    }
}

/// An administrator engages a lockdown of `scope` because of `reason`: the lockdown to record
/// (as `id`) and its `lockdown.engaged` event. Refused for anyone but an administrator, a role
/// that is not loaded, a missing or oversized reason, and a scope already covered by a lockdown
/// in force (a lockdown of every role may still be engaged over role lockdowns).
pub fn engage(
    in_force: &[Lockdown],
    roles: &RoleSet,
    by: &Principal,
    scope: LockdownScope,
    reason: &str,
    id: String,
    now: Timestamp,
) -> Result<(Lockdown, EventDraft), DomainError> {
    if !by.is_admin() {
        return Err(DomainError::AdminOnly {
            principal: by.name.to_string(),
            action: "engage a lockdown",
        });
    }
    if let LockdownScope::Role(r) = &scope {
        roles.require(r.as_str())?;
    }
    let reason = free_text("reason", reason, MAX_REASON_CHARS, true)?;
    let already = in_force.iter().find(|l| match (&l.scope, &scope) {
        (LockdownScope::All, _) => true,
        (LockdownScope::Role(a), LockdownScope::Role(b)) => a == b,
        (LockdownScope::Role(_), LockdownScope::All) => false,
    });
    if let Some(l) = already {
        return Err(DomainError::AlreadyLockedDown {
            scope: scope.to_string(),
            by: l.engaged_by.to_string(),
            since: l.engaged_at,
            covering: l.scope.to_string(),
        });
    }
    let lockdown = Lockdown {
        id,
        scope,
        reason,
        engaged_by: by.name.clone(),
        engaged_at: now,
    };
    let event = EventDraft::new(
        Actor::User(by.name.clone()),
        None,
        EventKind::LockdownEngaged {
            lockdown: lockdown.id.clone(),
            scope: lockdown.scope.as_string(),
            reason: lockdown.reason.clone(),
        },
    );
    Ok((lockdown, event))
}

/// An administrator lifts the lockdowns in force that `scope` names: `None` (or
/// [`LockdownScope::All`]) lifts every one, a role lifts that role's own. The lockdowns lifted,
/// and one `lockdown.lifted` event for each. Refused (`not_locked_down`, nothing changes) when
/// none is in force, or the role's is not (with a lockdown of every role still covering it, the
/// help says so).
pub fn lift(
    in_force: &[Lockdown],
    by: &Principal,
    scope: Option<&LockdownScope>,
    reason: Option<&str>,
) -> Result<(Vec<Lockdown>, Vec<EventDraft>), DomainError> {
    if !by.is_admin() {
        return Err(DomainError::AdminOnly {
            principal: by.name.to_string(),
            action: "lift a lockdown",
        });
    }
    let reason = match reason.map(str::trim) {
        None | Some("") => None,
        Some(r) => Some(free_text("reason", r, MAX_REASON_CHARS, true)?),
    };
    let lifted: Vec<Lockdown> = in_force
        .iter()
        .filter(|l| match scope {
            None | Some(LockdownScope::All) => true,
            Some(s) => &l.scope == s,
        })
        .cloned()
        .collect();
    if lifted.is_empty() {
        let still = scope.and_then(|s| match s {
            LockdownScope::Role(r) => covering(in_force, r.as_str()),
            LockdownScope::All => None,
        });
        return Err(DomainError::NotLockedDown {
            scope: scope.map_or_else(|| "anything".to_owned(), ToString::to_string),
            covered_by: still.map(|l| l.scope.flag()),
        });
    }
    let events = lifted
        .iter()
        .map(|l| {
            EventDraft::new(
                Actor::User(by.name.clone()),
                None,
                EventKind::LockdownLifted {
                    lockdown: l.id.clone(),
                    scope: l.scope.as_string(),
                    engaged_by: l.engaged_by.to_string(),
                    reason: reason.clone(),
                },
            )
        })
        .collect();
    Ok((lifted, events))
}

impl Grant {
    /// What lockdown `l` does to this grant, if it covers its role: privilege at the target (or
    /// about to be) starts revoking with cause `lockdown`, naming who engaged it and why; a
    /// request still waiting (or approved and not yet activating) is cancelled. `None` for a
    /// grant outside the scope, or already ending or ended. `actor` carries it out: the
    /// administrator engaging it, or the reconciler finishing what a crash interrupted.
    pub fn end_for_lockdown(
        &self,
        l: &Lockdown,
        actor: &Actor,
        now: Timestamp,
    ) -> Option<Transition> {
        if !l.scope.covers(self.role.as_str()) {
            return None;
        }
        let by = l.engaged_by.to_string();
        let actor = actor.clone();
        let reason = format!("lockdown of {}: {}", l.scope, l.reason);
        let mut next = self.clone();
        next.updated_at = now;
        let (activated_at, expires_at) = match self.state {
            GrantState::Requested | GrantState::Approved { .. } => {
                next.state = GrantState::Cancelled {
                    cancelled_at: now,
                    cancelled_by: by.clone(),
                };
                let event = self.event(actor, EventKind::GrantCancelled { by });
                return Some(Transition {
                    grant: next,
                    events: vec![event],
                });
            }
            GrantState::Active {
                activated_at,
                expires_at,
                ..
            } => (Some(activated_at), expires_at),
            GrantState::Activating { expires_at, .. } => (None, expires_at),
            GrantState::Revoking { .. }
            | GrantState::Expired { .. }
            | GrantState::Revoked { .. }
            | GrantState::Denied { .. }
            | GrantState::Cancelled { .. }
            | GrantState::TimedOut { .. }
            | GrantState::Failed { .. } => return None,
        };
        next.state = GrantState::Revoking {
            activated_at,
            expires_at,
            end: EndCause::Lockdown {
                revoked_by: by.clone(),
                revoke_reason: reason.clone(),
                lockdown: l.id.clone(),
            },
            handle: self.handle().map(str::to_owned),
        };
        let event = self.event(
            actor,
            EventKind::GrantRevoking {
                cause: EndCauseKind::Lockdown,
                by: Some(by),
                reason: Some(reason),
            },
        );
        Some(Transition {
            grant: next,
            events: vec![event],
        })
    }
}

#[cfg(test)]
mod tests;
