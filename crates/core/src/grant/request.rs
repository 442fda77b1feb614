//! New grants: the ordinary request that waits for approval, and emergency self-activation.

use super::{MAX_INCIDENT_CHARS, MAX_REASON_CHARS};
use crate::text::free_text;
use crate::{
    Actor, DomainError, Duration, EventDraft, EventKind, Grant, GrantId, GrantState, Principal,
    Role, Timestamp, Transition,
};

/// What a requester supplies.
#[derive(Clone, Debug, Default)]
pub struct RequestInput {
    pub reason: String,
    pub incident: Option<String>,
    pub duration: Option<Duration>,
}

impl Grant {
    /// A new request for `role` by `requester`.
    pub fn request(
        id: GrantId,
        role: &Role,
        requester: &Principal,
        input: RequestInput,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        let checked = CheckedRequest::new(role, requester, &input)?;
        let duration = input.duration.unwrap_or(role.default_duration);
        if duration > role.max_duration {
            return Err(DomainError::DurationOverMax {
                requested: duration.to_string(),
                max: role.max_duration.to_string(),
                role: role.id.to_string(),
            });
        }
        let grant = checked.grant(id, role, requester, duration, now);
        let event = checked.event(&grant, role, requester);
        Ok(Transition {
            grant,
            events: vec![event],
        })
    }

    /// Emergency self-activation: a request by `requester` that needs no approver, for a role
    /// whose `[approval.emergency]` allows it. The grant is `approved` at once (with no approvals:
    /// nobody approved it, least of all its requester), capped by the emergency `max_duration`
    /// (also the default), and owes a review by `now + review_within`. The caller goes on with
    /// [`Grant::begin_activation`] straight away, so it is seen to go `requested → activating`.
    pub fn request_emergency(
        id: GrantId,
        role: &Role,
        requester: &Principal,
        input: RequestInput,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        let checked = CheckedRequest::new(role, requester, &input)?;
        let Some(emergency) = role.emergency else {
            return Err(DomainError::EmergencyNotAllowed {
                role: role.id.to_string(),
            });
        };
        let duration = input.duration.unwrap_or(emergency.max_duration);
        if duration > emergency.max_duration {
            return Err(DomainError::EmergencyDurationOverMax {
                requested: duration.to_string(),
                max: emergency.max_duration.to_string(),
                role: role.id.to_string(),
            });
        }
        let review_due = now.saturating_add(emergency.review_within);
        let mut grant = checked.grant(id, role, requester, duration, now);
        grant.emergency = Some(crate::grant::EmergencyUse {
            review_due,
            reviewed_at: None,
        });
        // INVARIANT(7): nobody approves their own request: an emergency grant is approved by
        // nobody and carries no approvals at all.
        grant.state = GrantState::Approved { approved_at: now };
        let events = vec![
            checked.event(&grant, role, requester),
            grant.event(
                Actor::User(requester.name.clone()),
                EventKind::GrantEmergencyActivated {
                    requester: requester.name.to_string(),
                    review_due,
                    max_duration: emergency.max_duration,
                },
            ),
        ];
        Ok(Transition { grant, events })
    }
}

/// What a request supplied, checked against the role's rules for who may ask, the reason and the
/// incident reference (everything but the duration, whose cap depends on the kind of request).
struct CheckedRequest {
    reason: String,
    incident: Option<String>,
}

impl CheckedRequest {
    fn new(role: &Role, requester: &Principal, input: &RequestInput) -> Result<Self, DomainError> {
        if !role.may_request(requester) {
            return Err(DomainError::NotRequester {
                principal: requester.name.to_string(),
                role: role.id.to_string(),
            });
        }
        let reason = free_text("reason", &input.reason, MAX_REASON_CHARS, true)?;
        let incident = match input.incident.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(i) => Some(free_text("incident", i, MAX_INCIDENT_CHARS, true)?),
        };
        match (&incident, &role.incident_pattern) {
            (None, Some(p)) if role.require_incident => {
                return Err(DomainError::IncidentRequired {
                    role: role.id.to_string(),
                    pattern: p.as_str().to_owned(),
                });
            }
            (Some(i), Some(p)) if !p.is_match(i) => {
                return Err(DomainError::IncidentMismatch {
                    incident: i.clone(),
                    pattern: p.as_str().to_owned(),
                    role: role.id.to_string(),
                });
            }
            _ => {}
        }
        Ok(Self { reason, incident })
    }

    /// The new grant, `requested` and not an emergency.
    fn grant(
        &self,
        id: GrantId,
        role: &Role,
        requester: &Principal,
        duration: Duration,
        now: Timestamp,
    ) -> Grant {
        Grant {
            id,
            role: role.id.clone(),
            role_hash: role.hash.clone(),
            requester: requester.name.clone(),
            reason: self.reason.clone(),
            incident: self.incident.clone(),
            duration,
            requested_at: now,
            target: role.target.clone(),
            approvals: Vec::new(),
            extensions: Vec::new(),
            emergency: None,
            drill: false,
            state: GrantState::Requested,
            updated_at: now,
        }
    }

    /// The `grant.requested` event for `grant`.
    fn event(self, grant: &Grant, role: &Role, requester: &Principal) -> EventDraft {
        grant.event(
            Actor::User(requester.name.clone()),
            EventKind::GrantRequested {
                role: role.id.to_string(),
                role_hash: role.hash.clone(),
                requester: requester.name.to_string(),
                reason: self.reason,
                incident: self.incident,
                duration: grant.duration,
            },
        )
    }
}
