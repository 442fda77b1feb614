//! Handing a grant's credential to its holder: once, only to the requester, only while the grant
//! is active and before its end (invariant 6). The store applies the decision inside the
//! transaction that erases the sealed copy, so two racing collections cannot both succeed.

use crate::{Actor, DomainError, EventDraft, EventKind, Grant, GrantState, Principal, Timestamp};

/// What the store knows of a grant's latest credential when it is asked to hand it over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialFacts {
    pub fingerprint: String,
    /// Whether it was already handed over (its sealed copy erased).
    pub delivered: bool,
}

impl Grant {
    /// Checks that `by` may receive this grant's credential now: the requester, while active and
    /// before the end.
    pub fn check_reveal(&self, by: &Principal, now: Timestamp) -> Result<(), DomainError> {
        if by.name != self.requester {
            return Err(DomainError::NotAllowed {
                principal: by.name.to_string(),
                action: "receive the credential of",
                grant: self.id.to_string(),
            });
        }
        // A drill's credential is the broker's to exercise, never anyone's to hold.
        if self.drill {
            return Err(DomainError::DrillCredentialNotShown {
                grant: self.id.to_string(),
            });
        }
        if !matches!(self.state, GrantState::Active { .. }) {
            return Err(DomainError::CredentialNotAvailable {
                grant: self.id.to_string(),
                state: self.state.name(),
            });
        }
        if self.past_end(now) {
            return Err(DomainError::ReachedItsEnd {
                grant: self.id.to_string(),
            });
        }
        Ok(())
    }

    /// Decides a collection of the latest credential (`credential`, if one was issued) by `to`:
    /// the `credential.delivered` event to record with erasing the sealed copy, or why not.
    pub fn deliver_credential(
        &self,
        to: &Principal,
        credential: Option<&CredentialFacts>,
        now: Timestamp,
    ) -> Result<EventDraft, DomainError> {
        self.check_reveal(to, now)?;
        let Some(c) = credential else {
            return Err(DomainError::CredentialNotAvailable {
                grant: self.id.to_string(),
                state: self.state.name(),
            });
        };
        if c.delivered {
            // INVARIANT(6): shown once; the sealed copy was erased when it was delivered.
            return Err(DomainError::CredentialAlreadyDelivered {
                grant: self.id.to_string(),
            });
        }
        Ok(self.event(
            Actor::User(to.name.clone()),
            EventKind::CredentialDelivered {
                to: to.name.to_string(),
                fingerprint: c.fingerprint.clone(),
            },
        ))
    }
}
