//! The grant state machine.
//!
//! ```text
//! requested ─approve×quorum→ approved → activating → active → revoking → expired | revoked
//!     ├─deny→ denied     ├─cancel→ cancelled     └─request_ttl→ timed_out
//! activating ─provider error→ failed
//!
//! requested ─(emergency: at once, by the requester)→ approved → activating → …
//! ```
//!
//! An emergency grant ([`Grant::request_emergency`]) has no approvals at all, is capped by the
//! role's emergency `max_duration`, owes a review by `review_due`, and every event about it carries
//! the `emergency` flag.
//!
//! Every transition is `(&Grant, command, &Role, now) -> Result<Transition, DomainError>`; the
//! caller persists the new grant and its events together or not at all.

use serde::{Deserialize, Serialize};

use crate::event::EndCauseKind;
use crate::text::free_text;
use crate::{
    Actor, DomainError, Duration, EventDraft, EventKind, GrantId, Name, Principal, Role, Target,
    Timestamp,
};

mod credential;
mod request;
mod requester;
mod review;
mod wire;

pub use credential::CredentialFacts;
pub use request::RequestInput;
pub use review::overdue_emergency_review;

const MAX_REASON_CHARS: usize = 1000;
const MAX_INCIDENT_CHARS: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub approver: Name,
    pub at: Timestamp,
    pub comment: Option<String>,
}

/// An approved extension of an active grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    pub duration: Duration,
    pub reason: String,
    pub requested_at: Timestamp,
    pub extended_at: Timestamp,
    pub approvals: Vec<Approval>,
}

/// An extension waiting for the same approval the grant needed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingExtension {
    pub duration: Duration,
    pub reason: String,
    pub requested_at: Timestamp,
    pub approvals: Vec<Approval>,
}

/// Why a grant in `revoking` is ending.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum EndCause {
    Expiry,
    Revoke {
        revoked_by: String,
        revoke_reason: String,
    },
    /// Its requester was disabled: the grant ends with their account.
    PrincipalDisabled {
        revoked_by: String,
        revoke_reason: String,
    },
    /// A lockdown (`lockdown`, its id) covers its role: the grant ends with who engaged it and why.
    Lockdown {
        revoked_by: String,
        revoke_reason: String,
        lockdown: String,
    },
}

/// Where a grant is in its life. Each variant carries only what is true in that state: the
/// provider's handle once activation is under way, a pending extension and an owed credential
/// only while active.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantState {
    Requested,
    Approved {
        approved_at: Timestamp,
    },
    /// Intent recorded: the provider is being (or is about to be) asked to grant. `handle` (no
    /// secret) is how the provider finds the privilege again, recorded with the intent before the
    /// provider is called, so a revoke never needs to guess it.
    Activating {
        started_at: Timestamp,
        expires_at: Timestamp,
        handle: String,
    },
    Active {
        activated_at: Timestamp,
        expires_at: Timestamp,
        handle: String,
        /// An extension waiting for the same approval the grant needed.
        pending_extension: Option<PendingExtension>,
        /// An approved extension moved the end; the holder is owed a credential carrying the new
        /// end. This is the intent the reconciler finishes if the broker dies before re-issuing.
        credential_due: bool,
        /// The end the holder was last warned about (`grant.expiring_soon`); an extension moves
        /// the end and so re-arms the warning.
        expiry_warned: Option<Timestamp>,
    },
    /// Intent recorded: the provider is being asked to revoke. No handle means the activation
    /// intent was never recorded: nothing reached the target.
    Revoking {
        activated_at: Option<Timestamp>,
        expires_at: Timestamp,
        end: EndCause,
        handle: Option<String>,
    },
    Expired {
        activated_at: Option<Timestamp>,
        expires_at: Timestamp,
        ended_at: Timestamp,
        handle: Option<String>,
    },
    Revoked {
        activated_at: Option<Timestamp>,
        ended_at: Timestamp,
        revoked_by: String,
        revoke_reason: String,
        handle: Option<String>,
    },
    Denied {
        denied_at: Timestamp,
        denied_by: String,
        deny_reason: String,
    },
    Cancelled {
        cancelled_at: Timestamp,
        cancelled_by: String,
    },
    TimedOut {
        timed_out_at: Timestamp,
    },
    Failed {
        failed_at: Timestamp,
        failure: String,
        /// What may have been left at the target, for the orphan sweep's record.
        handle: Option<String>,
    },
}

/// A grant state without its data: what lists and workers filter on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StateKind {
    Requested,
    Approved,
    Activating,
    Active,
    Revoking,
    Expired,
    Revoked,
    Denied,
    Cancelled,
    TimedOut,
    Failed,
}

impl StateKind {
    pub const ALL: [StateKind; 11] = [
        StateKind::Requested,
        StateKind::Approved,
        StateKind::Activating,
        StateKind::Active,
        StateKind::Revoking,
        StateKind::Expired,
        StateKind::Revoked,
        StateKind::Denied,
        StateKind::Cancelled,
        StateKind::TimedOut,
        StateKind::Failed,
    ];

    /// The lowercase name used in the API, the CLI, `--state` filters and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Approved => "approved",
            Self::Activating => "activating",
            Self::Active => "active",
            Self::Revoking => "revoking",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Denied => "denied",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
            Self::Failed => "failed",
        }
    }

    /// The state named `s`, or a refusal listing the names there are.
    pub fn parse(s: &str) -> Result<StateKind, DomainError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| DomainError::InvalidField {
                field: "state",
                problem: format!(
                    "`{}` is not one of {}",
                    crate::text::shown(s, 40),
                    Self::ALL.map(Self::as_str).join(", ")
                ),
            })
    }

    pub fn is_ended(self) -> bool {
        match self {
            Self::Expired
            | Self::Revoked
            | Self::Denied
            | Self::Cancelled
            | Self::TimedOut
            | Self::Failed => true,
            Self::Requested | Self::Approved | Self::Activating | Self::Active | Self::Revoking => {
                false
            }
        }
    }
}

impl std::fmt::Display for StateKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl GrantState {
    pub fn kind(&self) -> StateKind {
        match self {
            Self::Requested => StateKind::Requested,
            Self::Approved { .. } => StateKind::Approved,
            Self::Activating { .. } => StateKind::Activating,
            Self::Active { .. } => StateKind::Active,
            Self::Revoking { .. } => StateKind::Revoking,
            Self::Expired { .. } => StateKind::Expired,
            Self::Revoked { .. } => StateKind::Revoked,
            Self::Denied { .. } => StateKind::Denied,
            Self::Cancelled { .. } => StateKind::Cancelled,
            Self::TimedOut { .. } => StateKind::TimedOut,
            Self::Failed { .. } => StateKind::Failed,
        }
    }

    /// The lowercase name used in the API, the CLI and `--state` filters.
    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }

    pub fn is_ended(&self) -> bool {
        self.kind().is_ended()
    }
}

/// One activation of one role for one principal. Stored and shown as one flat JSON object (see
/// [`wire`]), the same as before the state-dependent fields moved into the states.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "wire::GrantWire", try_from = "wire::GrantWire")]
pub struct Grant {
    pub id: GrantId,
    pub role: Name,
    pub role_hash: String,
    pub requester: Name,
    pub reason: String,
    pub incident: Option<String>,
    /// The window asked for; it starts at activation, not at request.
    pub duration: Duration,
    pub requested_at: Timestamp,
    /// The role's target as it was when requested, so the grant can be ended even if the role
    /// file changes or disappears.
    pub target: Target,
    pub approvals: Vec<Approval>,
    pub extensions: Vec<Extension>,
    /// Self-activated by its requester with no approver ([`Grant::request_emergency`]): every
    /// event about it is flagged, and a review of the use is owed.
    pub emergency: Option<EmergencyUse>,
    /// A drill of the role's path ([`crate::drill`]), run by the broker: every event about it is
    /// flagged `drill`, its credential is exercised by the broker and shown to nobody, and it does
    /// not count as a use of the role.
    pub drill: bool,
    pub state: GrantState,
    pub updated_at: Timestamp,
}

/// An emergency use and the review it owes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmergencyUse {
    /// When someone other than the requester must have reviewed the use.
    pub review_due: Timestamp,
    /// When the use was reviewed; `None` until the review workflow records one.
    pub reviewed_at: Option<Timestamp>,
}

/// The result of a transition: the grant as it is now and what to record about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub grant: Grant,
    pub events: Vec<EventDraft>,
}

impl Grant {
    /// One approval. Reaching the role's quorum of distinct approvers moves a request to
    /// `approved`; on an active grant with a pending extension, it approves the extension.
    pub fn approve(
        &self,
        role: &Role,
        approver: &Principal,
        comment: Option<String>,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        let comment = match comment.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(c) => Some(free_text("comment", c, MAX_REASON_CHARS, true)?),
        };
        let extending = self.pending_extension().is_some();
        if extending && self.past_end(now) {
            return Err(DomainError::ReachedItsEnd {
                grant: self.id.to_string(),
            });
        }
        if !extending && self.state != GrantState::Requested {
            return Err(self.wrong_state(
                "a pending request (or an active grant with a pending extension)",
                "approved",
            ));
        }
        // INVARIANT(7): nobody approves their own request, and a quorum counts distinct people.
        if approver.name == self.requester {
            return Err(DomainError::SelfApproval {
                principal: approver.name.to_string(),
                grant: self.id.to_string(),
            });
        }
        if !role.may_approve(approver) {
            return Err(DomainError::NotApprover {
                principal: approver.name.to_string(),
                role: role.id.to_string(),
            });
        }
        let mut next = self.clone();
        next.updated_at = now;
        let approval = Approval {
            approver: approver.name.clone(),
            at: now,
            comment: comment.clone(),
        };
        let approvals = match &mut next.state {
            GrantState::Active {
                pending_extension: Some(p),
                ..
            } => &mut p.approvals,
            _ => &mut next.approvals,
        };
        if approvals.iter().any(|a| a.approver == approver.name) {
            return Err(DomainError::AlreadyApproved {
                principal: approver.name.to_string(),
                grant: self.id.to_string(),
            });
        }
        approvals.push(approval);
        let count = u32::try_from(approvals.len()).unwrap_or(u32::MAX);
        let actor = Actor::User(approver.name.clone());
        let mut events = vec![self.event(
            actor.clone(),
            EventKind::GrantApproved {
                approver: approver.name.to_string(),
                comment,
                approvals: count,
                quorum: role.quorum,
                extension: extending,
            },
        )];
        if count >= role.quorum {
            if extending {
                if let GrantState::Active {
                    expires_at,
                    pending_extension,
                    credential_due,
                    ..
                } = &mut next.state
                    && let Some(p) = pending_extension.take()
                {
                    let new_end = expires_at.saturating_add(p.duration);
                    *expires_at = new_end;
                    *credential_due = true;
                    next.extensions.push(Extension {
                        duration: p.duration,
                        reason: p.reason,
                        requested_at: p.requested_at,
                        extended_at: now,
                        approvals: p.approvals,
                    });
                    events.push(self.event(
                        actor,
                        EventKind::GrantExtended {
                            duration: p.duration,
                            expires_at: new_end,
                            extensions_used:
                                u32::try_from(next.extensions.len()).unwrap_or(u32::MAX),
                        },
                    ));
                }
            } else {
                next.state = GrantState::Approved { approved_at: now };
            }
        }
        Ok(Transition {
            grant: next,
            events,
        })
    }

    /// An approver refuses the request (or the pending extension).
    pub fn deny(
        &self,
        role: &Role,
        by: &Principal,
        reason: &str,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        let reason = free_text("reason", reason, MAX_REASON_CHARS, true)?;
        let extending = self.pending_extension().is_some();
        if extending && self.past_end(now) {
            return Err(DomainError::ReachedItsEnd {
                grant: self.id.to_string(),
            });
        }
        if !extending && self.state != GrantState::Requested {
            return Err(self.wrong_state(
                "a pending request (or an active grant with a pending extension)",
                "denied",
            ));
        }
        if by.name == self.requester {
            return Err(DomainError::NotAllowed {
                principal: by.name.to_string(),
                action: "deny (cancel your own request instead)",
                grant: self.id.to_string(),
            });
        }
        if !role.may_approve(by) {
            return Err(DomainError::NotApprover {
                principal: by.name.to_string(),
                role: role.id.to_string(),
            });
        }
        let mut next = self.clone();
        next.updated_at = now;
        if extending {
            if let GrantState::Active {
                pending_extension, ..
            } = &mut next.state
            {
                *pending_extension = None;
            }
        } else {
            next.state = GrantState::Denied {
                denied_at: now,
                denied_by: by.name.to_string(),
                deny_reason: reason.clone(),
            };
        }
        let event = self.event(
            Actor::User(by.name.clone()),
            EventKind::GrantDenied {
                by: by.name.to_string(),
                reason,
                extension: extending,
            },
        );
        Ok(Transition {
            grant: next,
            events: vec![event],
        })
    }

    /// The requester (or an admin) withdraws a request that has not been activated.
    pub fn cancel(&self, by: &Principal, now: Timestamp) -> Result<Transition, DomainError> {
        if by.name != self.requester && !by.is_admin() {
            return Err(DomainError::NotAllowed {
                principal: by.name.to_string(),
                action: "cancel",
                grant: self.id.to_string(),
            });
        }
        if !matches!(
            self.state,
            GrantState::Requested | GrantState::Approved { .. }
        ) {
            return Err(self.wrong_state("requested or approved", "cancelled"));
        }
        let mut next = self.clone();
        next.updated_at = now;
        next.state = GrantState::Cancelled {
            cancelled_at: now,
            cancelled_by: by.name.to_string(),
        };
        let event = self.event(
            Actor::User(by.name.clone()),
            EventKind::GrantCancelled {
                by: by.name.to_string(),
            },
        );
        Ok(Transition {
            grant: next,
            events: vec![event],
        })
    }

    /// A request nobody approved within the role's `request_ttl`. `None` if not yet due.
    pub fn time_out(&self, request_ttl: Duration, now: Timestamp) -> Option<Transition> {
        if self.state != GrantState::Requested
            || now < self.requested_at.saturating_add(request_ttl)
        {
            return None;
        }
        let mut next = self.clone();
        next.updated_at = now;
        next.state = GrantState::TimedOut { timed_out_at: now };
        let event = self.event(
            Actor::System("reaper"),
            EventKind::GrantTimedOut {
                requested_at: self.requested_at,
                request_ttl,
            },
        );
        Some(Transition {
            grant: next,
            events: vec![event],
        })
    }

    /// The window an activation starting at `now` would have: from now, for the duration asked.
    /// The provider's handle for it is worked out from this before the intent is recorded.
    pub fn activation_window(&self, now: Timestamp) -> (Timestamp, Timestamp) {
        (now, now.saturating_add(self.duration))
    }

    /// Records the intent to activate, with the `handle` the provider will know the privilege by
    /// (for the window [`Grant::activation_window`] gives). The window starts now, not at request.
    pub fn begin_activation(
        &self,
        actor: Actor,
        handle: String,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        if !matches!(self.state, GrantState::Approved { .. }) {
            return Err(self.wrong_state("approved", "activated"));
        }
        let (started_at, expires_at) = self.activation_window(now);
        let mut next = self.clone();
        next.updated_at = now;
        next.state = GrantState::Activating {
            started_at,
            expires_at,
            handle,
        };
        let event = self.event(
            actor,
            EventKind::GrantActivating {
                target: self.target.kind().into(),
                expires_at,
            },
        );
        Ok(Transition {
            grant: next,
            events: vec![event],
        })
    }

    /// The provider granted; `fingerprint` identifies the credential without revealing it.
    pub fn activated(
        &self,
        actor: Actor,
        handle: &str,
        fingerprint: &str,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        let GrantState::Activating { expires_at, .. } = self.state else {
            return Err(self.wrong_state("activating", "marked active"));
        };
        let mut next = self.clone();
        next.updated_at = now;
        next.state = GrantState::Active {
            activated_at: now,
            expires_at,
            handle: handle.to_owned(),
            pending_extension: None,
            credential_due: false,
            expiry_warned: None,
        };
        let events = vec![
            self.event(
                actor.clone(),
                EventKind::GrantActivated {
                    activated_at: now,
                    expires_at,
                },
            ),
            self.credential_issued(actor, fingerprint, expires_at),
        ];
        Ok(Transition {
            grant: next,
            events,
        })
    }

    /// The `credential.issued` event for a credential valid until `expires_at`.
    pub fn credential_issued(
        &self,
        actor: Actor,
        fingerprint: &str,
        expires_at: Timestamp,
    ) -> EventDraft {
        self.event(
            actor,
            EventKind::CredentialIssued {
                target: self.target.kind().into(),
                fingerprint: fingerprint.into(),
                expires_at,
            },
        )
    }

    /// The provider issued the credential owed after an extension; `handle` finds it again.
    pub fn credential_reissued(
        &self,
        actor: Actor,
        handle: &str,
        fingerprint: &str,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        let GrantState::Active { expires_at, .. } = self.state else {
            return Err(self.wrong_state("active", "given a new credential"));
        };
        let mut next = self.clone();
        if let GrantState::Active {
            handle: h,
            credential_due,
            ..
        } = &mut next.state
        {
            *h = handle.to_owned();
            *credential_due = false;
        }
        next.updated_at = now;
        let event = self.credential_issued(actor, fingerprint, expires_at);
        Ok(Transition {
            grant: next,
            events: vec![event],
        })
    }

    /// Activation failed at the provider (or cannot be completed); the reason must hold no secret.
    pub fn fail(
        &self,
        actor: Actor,
        reason: &str,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        if self.state.is_ended() {
            return Err(DomainError::AlreadyEnded {
                grant: self.id.to_string(),
                state: self.state.name(),
            });
        }
        let mut next = self.clone();
        next.updated_at = now;
        next.state = GrantState::Failed {
            failed_at: now,
            failure: reason.into(),
            handle: self.handle().map(str::to_owned),
        };
        let event = self.event(
            actor,
            EventKind::GrantFailed {
                reason: reason.into(),
            },
        );
        Ok(Transition {
            grant: next,
            events: vec![event],
        })
    }

    /// Someone ends the grant early: records the intent to revoke at the provider.
    pub fn begin_revoke(
        &self,
        role: Option<&Role>,
        by: &Principal,
        reason: &str,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        let allowed = by.name == self.requester
            || by.is_admin()
            || role.is_some_and(|r| r.may_approve(by) || r.is_owner(by));
        if !allowed {
            return Err(DomainError::NotAllowed {
                principal: by.name.to_string(),
                action: "revoke",
                grant: self.id.to_string(),
            });
        }
        let reason = free_text("reason", reason, MAX_REASON_CHARS, true)?;
        let (activated_at, expires_at) = match self.state {
            GrantState::Active {
                activated_at,
                expires_at,
                ..
            } => (Some(activated_at), expires_at),
            GrantState::Activating { expires_at, .. } => (None, expires_at),
            ref s if s.is_ended() => {
                return Err(DomainError::AlreadyEnded {
                    grant: self.id.to_string(),
                    state: s.name(),
                });
            }
            _ => {
                return Err(
                    self.wrong_state("active", "revoked (cancel a pending request instead)")
                );
            }
        };
        let mut next = self.clone();
        next.updated_at = now;
        next.state = GrantState::Revoking {
            activated_at,
            expires_at,
            end: EndCause::Revoke {
                revoked_by: by.name.to_string(),
                revoke_reason: reason.clone(),
            },
            handle: self.handle().map(str::to_owned),
        };
        let event = self.event(
            Actor::User(by.name.clone()),
            EventKind::GrantRevoking {
                cause: EndCauseKind::Revoke,
                by: Some(by.name.to_string()),
                reason: Some(reason),
            },
        );
        Ok(Transition {
            grant: next,
            events: vec![event],
        })
    }

    /// An active grant whose end is within `window` of `now` and whose holder has not been warned
    /// about this end yet: records the warning (`grant.expiring_soon`). `None` otherwise.
    pub fn warn_expiring(&self, window: Duration, now: Timestamp) -> Option<Transition> {
        let GrantState::Active {
            expires_at,
            expiry_warned,
            ..
        } = self.state
        else {
            return None;
        };
        if now >= expires_at
            || now.saturating_add(window) < expires_at
            || expiry_warned == Some(expires_at)
        {
            return None;
        }
        let mut next = self.clone();
        next.updated_at = now;
        if let GrantState::Active { expiry_warned, .. } = &mut next.state {
            *expiry_warned = Some(expires_at);
        }
        let event = self.event(
            Actor::System("reaper"),
            EventKind::GrantExpiringSoon { expires_at },
        );
        Some(Transition {
            grant: next,
            events: vec![event],
        })
    }

    /// An active grant whose window has closed: records the intent to revoke. `None` if not due.
    pub fn begin_expiry(&self, now: Timestamp) -> Option<Transition> {
        let GrantState::Active {
            activated_at,
            expires_at,
            ref handle,
            ..
        } = self.state
        else {
            return None;
        };
        if now < expires_at {
            return None;
        }
        let mut next = self.clone();
        next.updated_at = now;
        next.state = GrantState::Revoking {
            activated_at: Some(activated_at),
            expires_at,
            end: EndCause::Expiry,
            handle: Some(handle.clone()),
        };
        let event = self.event(
            Actor::System("reaper"),
            EventKind::GrantRevoking {
                cause: EndCauseKind::Expiry,
                by: None,
                reason: None,
            },
        );
        Some(Transition {
            grant: next,
            events: vec![event],
        })
    }

    /// The provider confirmed the privilege is gone.
    pub fn finish_revoke(&self, actor: Actor, now: Timestamp) -> Result<Transition, DomainError> {
        let GrantState::Revoking {
            activated_at,
            expires_at,
            ref end,
            ref handle,
        } = self.state
        else {
            return Err(self.wrong_state("revoking", "finished revoking"));
        };
        let mut next = self.clone();
        next.updated_at = now;
        let kind = match end {
            EndCause::Expiry => {
                next.state = GrantState::Expired {
                    activated_at,
                    expires_at,
                    ended_at: now,
                    handle: handle.clone(),
                };
                EventKind::GrantExpired { expires_at }
            }
            EndCause::Revoke {
                revoked_by: by,
                revoke_reason: reason,
            }
            | EndCause::PrincipalDisabled {
                revoked_by: by,
                revoke_reason: reason,
            }
            | EndCause::Lockdown {
                revoked_by: by,
                revoke_reason: reason,
                ..
            } => {
                next.state = GrantState::Revoked {
                    activated_at,
                    ended_at: now,
                    revoked_by: by.clone(),
                    revoke_reason: reason.clone(),
                    handle: handle.clone(),
                };
                EventKind::GrantRevoked {
                    by: by.clone(),
                    reason: reason.clone(),
                }
            }
        };
        Ok(Transition {
            grant: next,
            events: vec![self.event(actor, kind)],
        })
    }

    /// The holder asks for more time; it needs the same approval as the grant did.
    pub fn request_extension(
        &self,
        role: &Role,
        by: &Principal,
        duration: Duration,
        reason: &str,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        if by.name != self.requester {
            return Err(DomainError::NotAllowed {
                principal: by.name.to_string(),
                action: "extend",
                grant: self.id.to_string(),
            });
        }
        let reason = free_text("reason", reason, MAX_REASON_CHARS, true)?;
        if !matches!(self.state, GrantState::Active { .. }) {
            return Err(self.wrong_state("active", "extended"));
        }
        if self.past_end(now) {
            return Err(DomainError::ReachedItsEnd {
                grant: self.id.to_string(),
            });
        }
        if self.pending_extension().is_some() {
            return Err(DomainError::ExtensionPending {
                grant: self.id.to_string(),
            });
        }
        let used = u32::try_from(self.extensions.len()).unwrap_or(u32::MAX);
        if used >= role.max_extensions {
            return Err(DomainError::ExtensionsExhausted {
                grant: self.id.to_string(),
                max: role.max_extensions,
            });
        }
        let total = self.total_duration().saturating_add(duration);
        if total > role.max_duration {
            return Err(DomainError::ExtensionOverMax {
                grant: self.id.to_string(),
                requested: duration.to_string(),
                total: total.to_string(),
                max: role.max_duration.to_string(),
            });
        }
        let mut next = self.clone();
        next.updated_at = now;
        if let GrantState::Active {
            pending_extension, ..
        } = &mut next.state
        {
            *pending_extension = Some(PendingExtension {
                duration,
                reason: reason.clone(),
                requested_at: now,
                approvals: Vec::new(),
            });
        }
        let event = self.event(
            Actor::User(by.name.clone()),
            EventKind::GrantExtensionRequested {
                by: by.name.to_string(),
                duration,
                reason,
            },
        );
        Ok(Transition {
            grant: next,
            events: vec![event],
        })
    }

    /// How the provider finds the privilege, once activation is under way.
    pub fn handle(&self) -> Option<&str> {
        match &self.state {
            GrantState::Activating { handle, .. } | GrantState::Active { handle, .. } => {
                Some(handle)
            }
            GrantState::Revoking { handle, .. }
            | GrantState::Expired { handle, .. }
            | GrantState::Revoked { handle, .. }
            | GrantState::Failed { handle, .. } => handle.as_deref(),
            GrantState::Requested
            | GrantState::Approved { .. }
            | GrantState::Denied { .. }
            | GrantState::Cancelled { .. }
            | GrantState::TimedOut { .. } => None,
        }
    }

    /// An extension of an active grant waiting for approval.
    pub fn pending_extension(&self) -> Option<&PendingExtension> {
        match &self.state {
            GrantState::Active {
                pending_extension, ..
            } => pending_extension.as_ref(),
            _ => None,
        }
    }

    /// Whether the holder of an active grant is owed a credential carrying a new end.
    pub fn credential_due(&self) -> bool {
        matches!(
            self.state,
            GrantState::Active {
                credential_due: true,
                ..
            }
        )
    }

    /// When a review of this emergency use is due (`None` for a grant that was approved).
    pub fn review_due(&self) -> Option<Timestamp> {
        self.emergency.map(|e| e.review_due)
    }

    /// An active grant whose window has closed is over, even before the reaper records it.
    pub fn past_end(&self, now: Timestamp) -> bool {
        matches!(self.state, GrantState::Active { expires_at, .. } if now >= expires_at)
    }

    /// Whether `p` may see this grant: its requester, anyone who may approve or owns the role,
    /// admins and auditors.
    pub fn visible_to(&self, role: Option<&Role>, p: &Principal) -> bool {
        p.name == self.requester
            || p.may_read_everything()
            || role.is_some_and(|r| r.may_approve(p) || r.is_owner(p))
    }

    /// The initial window plus every approved extension.
    pub fn total_duration(&self) -> Duration {
        self.extensions
            .iter()
            .fold(self.duration, |acc, e| acc.saturating_add(e.duration))
    }

    /// When the privilege ends (or ended), if it was ever activated.
    pub fn expires_at(&self) -> Option<Timestamp> {
        match self.state {
            GrantState::Activating { expires_at, .. }
            | GrantState::Active { expires_at, .. }
            | GrantState::Revoking { expires_at, .. }
            | GrantState::Expired { expires_at, .. } => Some(expires_at),
            _ => None,
        }
    }

    /// Every event about this grant is made here, so an emergency grant's events are all flagged
    /// without any transition having to remember it.
    pub(crate) fn event(&self, actor: Actor, kind: EventKind) -> EventDraft {
        EventDraft::new(actor, Some(self.id), kind)
            .flagged(self.emergency.is_some())
            .drilled(self.drill)
    }

    pub(crate) fn wrong_state(&self, expected: &'static str, action: &'static str) -> DomainError {
        if self.state.is_ended() {
            return DomainError::AlreadyEnded {
                grant: self.id.to_string(),
                state: self.state.name(),
            };
        }
        DomainError::WrongState {
            grant: self.id.to_string(),
            state: self.state.name(),
            expected,
            action,
        }
    }
}

#[cfg(test)]
mod tests;
