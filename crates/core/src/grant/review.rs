//! Reviews owed for emergency use.

use crate::{DomainError, Grant, Principal, Role, Timestamp};

impl Grant {
    /// An emergency grant whose review is due before `now` and has not been done.
    pub fn review_overdue(&self, now: Timestamp) -> bool {
        self.emergency
            .is_some_and(|e| e.reviewed_at.is_none() && e.review_due < now)
    }
}

/// Refuses an emergency self-activation of `role` by `requester` while one of their `earlier`
/// grants of it is overdue for review, unless the role allows repeats.
pub fn overdue_emergency_review(
    role: &Role,
    requester: &Principal,
    earlier: &[Grant],
    now: Timestamp,
) -> Result<(), DomainError> {
    let Some(e) = &role.emergency else {
        return Ok(());
    };
    if e.repeat_while_review_overdue {
        return Ok(());
    }
    match earlier
        .iter()
        // A drill is not a use: it never holds up its runner's emergency use.
        .filter(|g| g.role == role.id && g.requester == requester.name && !g.drill)
        .find(|g| g.review_overdue(now))
    {
        Some(g) => Err(DomainError::EmergencyReviewOverdue {
            role: role.id.to_string(),
            principal: requester.name.to_string(),
            grant: g.id.to_string(),
            due: g.review_due().unwrap_or(now),
        }),
        None => Ok(()),
    }
}
