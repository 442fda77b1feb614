//! Drills: a real grant of a role, flagged `drill`, taken through the role's whole path so it is
//! known to work before the day it is needed. The broker drives it; these are its rules.
//!
//! ```text
//! awaiting_grant ─grant active→ exercising ─exercised→ revoking ─grant ended→ awaiting_alerts
//!       │                                                                        │
//!       └─grant denied, cancelled, timed out or failed → awaiting_alerts ─every channel
//!                                                                accepted, or deadline→ completed
//! ```
//!
//! - Who may run one ([`Role::may_drill`]): a person (never a service) in the role's owner group or
//!   its `[review] reviewers`. The runner is the drill grant's requester even when the role's
//!   `requesters` do not name them: the drill exercises the role, not the runner's own access.
//! - The grant goes through the role's real approval, or its emergency path ([`Drill::start`]).
//! - Once the grant is active the broker exercises the credential itself and shows it to nobody,
//!   revokes it through the normal revoke path ([`Grant::end_drill`]), checks the target refuses it,
//!   and checks that every channel of the role accepted the `drill.started` alert.
//! - Each step is a [`DrillCheck`] with its timing; the drill passes only if every check did, and
//!   ends with one `drill.completed` event carrying them all.
//! - A drill does not count as use: it does not hold up its runner's emergency use of the role
//!   (see [`crate::grant::overdue_emergency_review`]), and it owes no review of its own beyond the
//!   automatic one with outcome `drill`.
//! - A role is overdue ([`drill_due`]) when its last passing drill is older than
//!   `[governance] drill_every`, or it has had none since it was first loaded plus that interval.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::EndCauseKind;
use crate::grant::EmergencyUse;
use crate::{
    Actor, DomainError, Duration, EndCause, EventDraft, EventKind, Grant, GrantId, GrantState,
    Name, Principal, PrincipalKind, Role, Timestamp, Transition,
};

/// How long after a drill's alert every channel of its role has to accept it.
pub const ALERT_DEADLINE: Duration = Duration::from_secs(300);
/// The longest window a drill grant asks for: it is revoked as soon as the drill has exercised it.
pub const MAX_DRILL_WINDOW: Duration = Duration::from_secs(900);
/// Who ends a drill's grant, in its events.
pub const DRILL_ACTOR: &str = "drill";

/// A drill's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DrillId(Uuid);

impl DrillId {
    pub const fn from_bytes(b: [u8; 16]) -> Self {
        Self(uuid::Builder::from_random_bytes(b).into_uuid())
    }
}

impl FromStr for DrillId {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| DomainError::InvalidDrillId {
                input: s.chars().take(80).collect(),
            })
    }
}

impl fmt::Display for DrillId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// One step of a drill that is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillStep {
    /// The role's approvers approved the drill grant (not checked on the emergency path).
    Approval,
    /// The target issued the credential.
    Activation,
    /// The target accepted the credential (token: signature against the broker's key set and
    /// introspection active; PostgreSQL: a login and `SELECT 1`).
    Exercise,
    /// The broker revoked the credential.
    Revoke,
    /// The target refuses the credential after the revoke.
    Refusal,
    /// Every channel of the role accepted the drill's alert.
    Alerts,
}

impl DrillStep {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approval => "approval",
            Self::Activation => "activation",
            Self::Exercise => "exercise",
            Self::Revoke => "revoke",
            Self::Refusal => "refusal",
            Self::Alerts => "alerts",
        }
    }
}

impl fmt::Display for DrillStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One checked step: whether it passed, when it started, how long it took, and what was seen (never
/// a secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillCheck {
    pub step: DrillStep,
    pub passed: bool,
    pub started_at: Timestamp,
    pub ms: i64,
    pub detail: String,
}

impl DrillCheck {
    fn new(step: DrillStep, passed: bool, from: Timestamp, to: Timestamp, detail: String) -> Self {
        Self {
            step,
            passed,
            started_at: from,
            ms: to.millis_since(from),
            detail,
        }
    }
}

/// Where a drill is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum DrillStage {
    /// Waiting for the drill grant to become active: its approval, or its emergency activation.
    AwaitingGrant,
    /// The grant is active: the broker exercises the credential.
    Exercising,
    /// Exercised; the grant is being revoked through the normal revoke path.
    Revoking { since: Timestamp },
    /// Waiting for every channel of the role to accept the drill's alert, until `deadline`.
    AwaitingAlerts { deadline: Timestamp },
    Completed {
        completed_at: Timestamp,
        passed: bool,
    },
}

impl DrillStage {
    pub fn name(&self) -> &'static str {
        match self {
            Self::AwaitingGrant => "awaiting_grant",
            Self::Exercising => "exercising",
            Self::Revoking { .. } => "revoking",
            Self::AwaitingAlerts { .. } => "awaiting_alerts",
            Self::Completed { passed: true, .. } => "passed",
            Self::Completed { passed: false, .. } => "failed",
        }
    }
}

/// A drill of one role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drill {
    pub id: DrillId,
    pub role: Name,
    /// The drill's grant, flagged `drill`.
    pub grant: GrantId,
    pub runner: Name,
    /// Taken through the role's emergency path instead of its approval.
    pub emergency: bool,
    /// The channels of the role when the drill started: each must accept the drill's alert.
    pub channels: Vec<String>,
    pub started_at: Timestamp,
    #[serde(flatten)]
    pub stage: DrillStage,
    pub checks: Vec<DrillCheck>,
    pub updated_at: Timestamp,
}

/// A drill as it is now, and what to record about the change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrillTransition {
    pub drill: Drill,
    pub events: Vec<EventDraft>,
}

/// A newly started drill with its grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrillStart {
    pub drill: Drill,
    /// The drill grant: `requested`, or `approved` on the emergency path (the caller records the
    /// activation intent with it, as for any emergency self-activation).
    pub grant: Transition,
}

/// What the store says about the delivery of a drill's alert to one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelDelivery {
    pub channel: String,
    pub delivered_at: Option<Timestamp>,
    /// Given up on (the dead letter).
    pub dead: bool,
    pub attempts: u32,
    /// The last failure, which holds no secret.
    pub last_error: Option<String>,
}

/// What the broker saw when it tried the credential at the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// `Ok` with what was seen, or `Err` with why it did not work; neither holds a secret.
    pub outcome: Result<String, String>,
}

impl Role {
    /// Who may drill the role: a person in its owner group or its `[review] reviewers`.
    pub fn may_drill(&self, p: &Principal) -> bool {
        p.kind == PrincipalKind::Human && !p.disabled && (self.is_owner(p) || self.may_review(p))
    }
}

impl Drill {
    /// `runner` starts a drill of `role`, through its approval or (`emergency`) its emergency path.
    pub fn start(
        id: DrillId,
        grant_id: GrantId,
        role: &Role,
        runner: &Principal,
        emergency: bool,
        now: Timestamp,
    ) -> Result<DrillStart, DomainError> {
        if !role.may_drill(runner) {
            return Err(DomainError::NotDrillRunner {
                principal: runner.name.to_string(),
                role: role.id.to_string(),
                owner: role.owner.to_string(),
            });
        }
        let emergency_rule = match (emergency, role.emergency) {
            (true, None) => {
                return Err(DomainError::EmergencyNotAllowed {
                    role: role.id.to_string(),
                });
            }
            (true, Some(e)) => Some(e),
            (false, _) => None,
        };
        let cap = emergency_rule.map_or(role.default_duration, |e| e.max_duration);
        let duration = if cap < MAX_DRILL_WINDOW {
            cap
        } else {
            MAX_DRILL_WINDOW
        };
        let channels: Vec<String> = role.alerts.iter().map(ToString::to_string).collect();
        let mut grant = Grant {
            id: grant_id,
            role: role.id.clone(),
            role_hash: role.hash.clone(),
            requester: runner.name.clone(),
            reason: format!("drill {id} of role `{}` by {}", role.id, runner.name),
            incident: None,
            duration,
            requested_at: now,
            target: role.target.clone(),
            approvals: Vec::new(),
            extensions: Vec::new(),
            emergency: None,
            drill: true,
            state: GrantState::Requested,
            updated_at: now,
        };
        let actor = Actor::User(runner.name.clone());
        let mut events = vec![grant.event(
            actor.clone(),
            EventKind::GrantRequested {
                role: role.id.to_string(),
                role_hash: role.hash.clone(),
                requester: runner.name.to_string(),
                reason: grant.reason.clone(),
                incident: None,
                duration,
            },
        )];
        if let Some(e) = emergency_rule {
            let review_due = now.saturating_add(e.review_within);
            grant.emergency = Some(EmergencyUse {
                review_due,
                reviewed_at: None,
            });
            // INVARIANT(7): as for every emergency grant, nobody approved it.
            grant.state = GrantState::Approved { approved_at: now };
            events = events
                .into_iter()
                .map(|e| e.flagged(true))
                .chain([grant.event(
                    actor.clone(),
                    EventKind::GrantEmergencyActivated {
                        requester: runner.name.to_string(),
                        review_due,
                        max_duration: e.max_duration,
                    },
                )])
                .collect();
        }
        events.push(grant.event(
            actor,
            EventKind::DrillStarted {
                drill_id: id.to_string(),
                role: role.id.to_string(),
                runner: runner.name.to_string(),
                emergency,
                channels: channels.clone(),
            },
        ));
        let drill = Drill {
            id,
            role: role.id.clone(),
            grant: grant_id,
            runner: runner.name.clone(),
            emergency,
            channels,
            started_at: now,
            stage: DrillStage::AwaitingGrant,
            checks: Vec::new(),
            updated_at: now,
        };
        Ok(DrillStart {
            drill,
            grant: Transition { grant, events },
        })
    }

    /// Who may see a drill and its report: its runner, whoever reads everything, and the role's
    /// owners, reviewers and approvers (`role`, if it is still loaded).
    pub fn visible_to(&self, role: Option<&Role>, p: &Principal) -> bool {
        p.name == self.runner
            || p.may_read_everything()
            || role.is_some_and(|r| r.may_drill(p) || r.may_approve(p))
    }

    pub fn is_completed(&self) -> bool {
        matches!(self.stage, DrillStage::Completed { .. })
    }

    /// Whether it completed with every check passed.
    pub fn passed(&self) -> Option<bool> {
        match self.stage {
            DrillStage::Completed { passed, .. } => Some(passed),
            _ => None,
        }
    }

    /// When the worker must look at this drill again at the latest, whatever else happens: the
    /// alert deadline. `None` when only a change to its grant moves it on.
    pub fn next_due(&self) -> Option<Timestamp> {
        match self.stage {
            DrillStage::AwaitingAlerts { deadline } => Some(deadline),
            _ => None,
        }
    }

    /// The checks that failed, in order.
    pub fn failed_steps(&self) -> Vec<DrillStep> {
        self.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.step)
            .collect()
    }

    fn alerts_stage(&self, now: Timestamp) -> DrillStage {
        DrillStage::AwaitingAlerts {
            deadline: self.started_at.saturating_add(ALERT_DEADLINE).max(now),
        }
    }

    fn complete(&self, last: DrillCheck, now: Timestamp) -> DrillTransition {
        let mut checks = self.checks.clone();
        checks.push(last);
        let passed = checks.iter().all(|c| c.passed);
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.step.as_str().to_owned())
            .collect();
        let event = EventDraft::new(
            Actor::System(DRILL_ACTOR),
            Some(self.grant),
            EventKind::DrillCompleted {
                drill_id: self.id.to_string(),
                role: self.role.to_string(),
                passed,
                failed,
                checks: checks.clone(),
            },
        )
        .flagged(self.emergency)
        .drilled(true);
        let mut drill = self.clone();
        drill.checks = checks;
        drill.stage = DrillStage::Completed {
            completed_at: now,
            passed,
        };
        drill.updated_at = now;
        DrillTransition {
            drill,
            events: vec![event],
        }
    }

    /// Moves on to `stage` with `checks` done; only completion is an audit event.
    fn moved(&self, stage: DrillStage, checks: Vec<DrillCheck>, now: Timestamp) -> DrillTransition {
        let mut drill = self.clone();
        drill.checks.extend(checks);
        drill.stage = stage;
        drill.updated_at = now;
        DrillTransition {
            drill,
            events: Vec::new(),
        }
    }
}

impl Grant {
    /// The broker ends a drill grant once it has exercised it: the normal revoke intent, by the
    /// drill. `None` unless the grant is a drill grant with privilege at its target (or about to
    /// have it).
    pub fn end_drill(&self, drill: DrillId, now: Timestamp) -> Option<Transition> {
        if !self.drill {
            return None;
        }
        let (activated_at, expires_at) = match self.state {
            GrantState::Active {
                activated_at,
                expires_at,
                ..
            } => (Some(activated_at), expires_at),
            GrantState::Activating { expires_at, .. } => (None, expires_at),
            _ => return None,
        };
        let by = format!("system:{DRILL_ACTOR}");
        let reason = format!("drill {drill} exercised the credential");
        let mut next = self.clone();
        next.updated_at = now;
        next.state = GrantState::Revoking {
            activated_at,
            expires_at,
            end: EndCause::Revoke {
                revoked_by: by.clone(),
                revoke_reason: reason.clone(),
            },
            handle: self.handle().map(str::to_owned),
        };
        let event = self.event(
            Actor::System(DRILL_ACTOR),
            EventKind::GrantRevoking {
                cause: EndCauseKind::Revoke,
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

mod schedule;
mod steps;

pub use schedule::{drill_due, overdue_alert};

#[cfg(test)]
mod tests;
