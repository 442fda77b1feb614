//! When a role's drill is due, and the alert an overdue one raises once per due date.

use super::DRILL_ACTOR;
use crate::{Actor, EventDraft, EventKind, Role, Timestamp};

/// When `role`'s next drill is due: `drill_every` after its last passing drill, or after it was
/// first seen if it has never passed one.
pub fn drill_due(role: &Role, last_passed: Option<Timestamp>, first_seen: Timestamp) -> Timestamp {
    last_passed
        .unwrap_or(first_seen)
        .saturating_add(role.governance.drill_every)
}

/// The `drill.overdue` alert for `role`, due at `due`, unless it is not due yet or that due date
/// was already alerted (`alerted`): once per due date.
pub fn overdue_alert(
    role: &Role,
    due: Timestamp,
    last_passed: Option<Timestamp>,
    alerted: Option<Timestamp>,
    now: Timestamp,
) -> Option<EventDraft> {
    if now < due || alerted == Some(due) {
        return None;
    }
    Some(
        EventDraft::new(
            Actor::System(DRILL_ACTOR),
            None,
            EventKind::DrillOverdue {
                role: role.id.to_string(),
                due,
                last_passed,
            },
        )
        .drilled(true),
    )
}
