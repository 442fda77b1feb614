//! The requester behind a grant: whether they may still have it moved forward, and what happens
//! to it when their account is disabled.

use crate::event::EndCauseKind;
use crate::{
    Actor, DomainError, EndCause, EventKind, Grant, GrantState, Principal, Role, Timestamp,
    Transition,
};

impl Grant {
    /// Before anything moves a grant forward (an approval, an extension): its requester must still
    /// be allowed to request `role` and be enabled, and the role must still grant what it granted
    /// when the request was made. `requester` is the requester as stored now (`None` if gone).
    ///
    /// Only someone who could act on the grant (`caller` approves the role or is the requester)
    /// learns why it cannot go on; for everyone else, and for every ended grant, this passes and
    /// the transition's own refusal speaks.
    pub fn check_still_allowed(
        &self,
        role: &Role,
        caller: &Principal,
        requester: Option<&Principal>,
    ) -> Result<(), DomainError> {
        let involved = role.may_approve(caller) || caller.name == self.requester;
        if !involved || self.state.is_ended() {
            return Ok(());
        }
        // A drill's requester is its runner, who need not be a requester of the role, only still
        // someone who may drill it.
        let may = |p: &Principal| {
            if self.drill {
                role.may_drill(p)
            } else {
                role.may_request(p)
            }
        };
        if !requester.is_some_and(|p| may(p) && !p.disabled) {
            return Err(DomainError::RequesterNoLongerAllowed {
                principal: self.requester.to_string(),
                role: role.id.to_string(),
                grant: self.id.to_string(),
            });
        }
        if role.target != self.target {
            return Err(DomainError::RoleChangedSinceRequest {
                role: role.id.to_string(),
                grant: self.id.to_string(),
            });
        }
        Ok(())
    }

    /// The requester's account was disabled (`by` acts on it: the administrator, or the
    /// reconciler finding it later): a grant with privilege at its target (or
    /// about to have it) starts revoking with cause `principal_disabled`, and one still waiting is
    /// cancelled. `None` for a grant already ending or ended.
    pub fn end_for_disabled_requester(&self, by: &Actor, now: Timestamp) -> Option<Transition> {
        let reason = format!("user `{}` was disabled", self.requester);
        let actor = by.clone();
        let who = match by {
            Actor::User(n) => n.to_string(),
            Actor::System(_) => by.to_string(),
        };
        let mut next = self.clone();
        next.updated_at = now;
        let (activated_at, expires_at) = match self.state {
            GrantState::Requested | GrantState::Approved { .. } => {
                next.state = GrantState::Cancelled {
                    cancelled_at: now,
                    cancelled_by: who.clone(),
                };
                let event = self.event(actor, EventKind::GrantCancelled { by: who });
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
            end: EndCause::PrincipalDisabled {
                revoked_by: who.clone(),
                revoke_reason: reason.clone(),
            },
            handle: self.handle().map(str::to_owned),
        };
        let event = self.event(
            actor,
            EventKind::GrantRevoking {
                cause: EndCauseKind::PrincipalDisabled,
                by: Some(who),
                reason: Some(reason),
            },
        );
        Some(Transition {
            grant: next,
            events: vec![event],
        })
    }
}
