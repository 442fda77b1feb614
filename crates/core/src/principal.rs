//! Principals (people and workloads) and their groups.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::{Name, Subject, Timestamp};

/// Members administer breakglass itself: principals, tokens, every grant, the audit trail.
pub const ADMIN_GROUP: &str = "admins";
/// Members may read every grant and the audit trail, and change nothing.
pub const AUDITOR_GROUP: &str = "auditors";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    Human,
    Service,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub name: Name,
    pub kind: PrincipalKind,
    pub groups: BTreeSet<Name>,
    pub disabled: bool,
    pub created_at: Timestamp,
}

impl Principal {
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g.as_str() == group)
    }

    pub fn is_admin(&self) -> bool {
        self.in_group(ADMIN_GROUP)
    }

    pub fn may_read_everything(&self) -> bool {
        self.is_admin() || self.in_group(AUDITOR_GROUP)
    }

    /// Whether this principal is one of `subjects` (by name or by group).
    pub fn matches_any(&self, subjects: &[Subject]) -> bool {
        subjects.iter().any(|s| match s {
            Subject::User(n) => *n == self.name,
            Subject::Group(g) => self.groups.contains(g),
        })
    }
}
