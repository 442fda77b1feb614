//! Post-use reviews: every grant that became active owes one once it has ended, as its role's
//! `[review]` says, by someone other than the person who used it.
//!
//! The rules here are pure: whether a grant owes a review and by when ([`owed`]), who may record
//! one and whether this grant can take it ([`record`]), and when an overdue review is alerted
//! ([`reminders_due`]). The server gathers what they need (the grant, its role as loaded now, the
//! reviews already recorded, the reminders already sent) and writes what they decide.
//!
//! The review rule used is the role's **as it is loaded now**, not a copy taken at request time:
//! a role file that tightens `reviewers` applies at once to every review still owed. A grant whose
//! role is no longer loaded keeps the default rule and is reviewed by the `admins` group.

use serde::{Deserialize, Serialize};

pub mod evidence;

use crate::role::{ReviewRequired, ReviewRule};
use crate::text::free_text;
use crate::{
    Actor, DomainError, EventDraft, EventKind, Grant, GrantId, GrantState, Name, Principal,
    PrincipalKind, Role, Timestamp,
};

/// The longest review notes, in characters.
pub const MAX_NOTES_CHARS: usize = 4000;

/// What a reviewer concluded about a use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// A real emergency, handled as it should be.
    #[serde(rename = "legitimate")]
    Legitimate,
    /// A planned drill of the role's path.
    #[serde(rename = "drill")]
    Drill,
    /// The privilege was misused: alerted at high severity on the role's and the `always`
    /// channels.
    #[serde(rename = "misuse")]
    Misuse,
    /// Not concluded yet: the review stays open, owned by whoever recorded this, until a final
    /// outcome is recorded.
    #[serde(rename = "follow-up")]
    FollowUp,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Legitimate,
        Outcome::Drill,
        Outcome::Misuse,
        Outcome::FollowUp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Legitimate => "legitimate",
            Self::Drill => "drill",
            Self::Misuse => "misuse",
            Self::FollowUp => "follow-up",
        }
    }

    /// The outcome named `s`, or a refusal listing the names there are.
    pub fn parse(s: &str) -> Result<Outcome, DomainError> {
        Self::ALL
            .into_iter()
            .find(|o| o.as_str() == s.trim())
            .ok_or_else(|| DomainError::InvalidField {
                field: "outcome",
                problem: format!(
                    "`{}` is not one of {}",
                    crate::text::shown(s, 40),
                    Self::ALL.map(Self::as_str).join(", ")
                ),
            })
    }

    /// Whether it closes the review (everything but `follow-up`).
    pub fn is_final(self) -> bool {
        match self {
            Self::Legitimate | Self::Drill | Self::Misuse => true,
            Self::FollowUp => false,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A review as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub grant: GrantId,
    pub reviewer: Name,
    pub outcome: Outcome,
    pub notes: String,
    pub at: Timestamp,
}

/// The review a grant owes: by when, and when the overdue alert escalates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Owed {
    pub activated_at: Timestamp,
    pub ended_at: Timestamp,
    /// When the review is due: for an emergency use its `review_due` (the request plus
    /// `[approval.emergency] review_within`), otherwise the end plus `[review] within`.
    pub due: Timestamp,
    /// When an overdue review is escalated to the `always` channels: twice its window after the
    /// window opened, i.e. one more window after `due`.
    pub escalate_at: Timestamp,
    pub emergency: bool,
}

/// An alert about an overdue review, each sent once per grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reminder {
    /// Due has passed: the role's channels are told.
    Overdue,
    /// Twice the window has passed: the `always` channels are told too.
    Escalated,
}

impl Reminder {
    pub const ALL: [Reminder; 2] = [Reminder::Overdue, Reminder::Escalated];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Overdue => "overdue",
            Self::Escalated => "escalated",
        }
    }

    pub fn parse(s: &str) -> Option<Reminder> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// When this reminder falls due for `owed`.
    pub fn at(self, owed: &Owed) -> Timestamp {
        match self {
            Self::Overdue => owed.due,
            Self::Escalated => owed.escalate_at,
        }
    }
}

/// The review rule for a grant of `role` (the default rule when the role is gone).
fn rule(role: Option<&Role>) -> ReviewRule {
    role.map(|r| r.review.clone()).unwrap_or_default()
}

/// When `g` ended, if it has.
pub fn ended_at(g: &Grant) -> Option<Timestamp> {
    match g.state {
        GrantState::Expired { ended_at, .. } | GrantState::Revoked { ended_at, .. } => {
            Some(ended_at)
        }
        GrantState::Failed { failed_at, .. } => Some(failed_at),
        _ => None,
    }
}

/// When `g` became active, as its state remembers it. A grant that failed after it was active
/// does not remember: the caller reads it from the grant's `grant.activated` event.
pub fn activated_at(g: &Grant) -> Option<Timestamp> {
    match g.state {
        GrantState::Active { activated_at, .. } => Some(activated_at),
        GrantState::Revoking { activated_at, .. }
        | GrantState::Expired { activated_at, .. }
        | GrantState::Revoked { activated_at, .. } => activated_at,
        _ => None,
    }
}

/// The review `g` owes under `role`'s rule, if any: a grant that became active (at
/// `activated_at`) and has ended. Emergency uses always owe one, whatever `required` says.
pub fn owed(role: Option<&Role>, g: &Grant, activated_at: Option<Timestamp>) -> Option<Owed> {
    // A drill is not a use: its review is recorded by the broker when the drill completes
    // ([`record_drill`]), and nobody owes one.
    if g.drill {
        return None;
    }
    let activated_at = activated_at?;
    let ended_at = ended_at(g)?;
    let (due, opened) = match g.emergency {
        Some(e) => (e.review_due, g.requested_at),
        None => {
            let rule = rule(role);
            match rule.required {
                ReviewRequired::Always => {}
                ReviewRequired::Emergency | ReviewRequired::Never => return None,
            }
            (ended_at.saturating_add(rule.within), ended_at)
        }
    };
    let window = due.millis_since(opened);
    Some(Owed {
        activated_at,
        ended_at,
        due,
        escalate_at: Timestamp::from_unix_millis(due.unix_millis().saturating_add(window)),
        emergency: g.emergency.is_some(),
    })
}

/// The final review among `reviews`, if there is one.
pub fn final_review(reviews: &[Review]) -> Option<&Review> {
    reviews.iter().find(|r| r.outcome.is_final())
}

/// Whether `p` may review uses of `role` at all (before separation of duties): one of its
/// `reviewers` (the owner by default); for a role no longer loaded, an administrator.
pub fn may_review(role: Option<&Role>, p: &Principal) -> bool {
    match role {
        Some(r) => r.may_review(p),
        None => p.is_admin(),
    }
}

/// Whether `p` may see `g`'s reviews and their evidence: whoever may see the grant (its
/// requester, approvers and owner, admins and auditors) and the role's reviewers.
pub fn may_see(role: Option<&Role>, g: &Grant, p: &Principal) -> bool {
    g.visible_to(role, p) || may_review(role, p)
}

/// Separation of duties for one grant: never its requester, and not one of its approvers (of the
/// request or of an extension) when the role excludes them.
pub fn separation(role: Option<&Role>, g: &Grant, p: &Principal) -> Result<(), DomainError> {
    // INVARIANT(7): nobody reviews their own use.
    if p.name == g.requester {
        return Err(DomainError::SelfReview {
            principal: p.name.to_string(),
            grant: g.id.to_string(),
        });
    }
    let approved = g
        .approvals
        .iter()
        .chain(g.extensions.iter().flat_map(|e| e.approvals.iter()))
        .any(|a| a.approver == p.name);
    if approved && rule(role).exclude_approvers {
        return Err(DomainError::ApproverReview {
            principal: p.name.to_string(),
            grant: g.id.to_string(),
        });
    }
    Ok(())
}

/// What recording a review decided: the review, the grant as it is to be written (an emergency
/// grant's `reviewed_at` is set by a final review), and the events to record with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub review: Review,
    pub grant: Grant,
    pub events: Vec<EventDraft>,
}

/// `reviewer` records `outcome` for `g` (whose role is `role`, as loaded now), given the reviews
/// already recorded (`earlier`) and when it became active (`activated_at`).
#[expect(
    clippy::too_many_arguments,
    reason = "one pure rule over everything it decides from; a struct would only rename them"
)]
pub fn record(
    role: Option<&Role>,
    g: &Grant,
    activated_at: Option<Timestamp>,
    earlier: &[Review],
    reviewer: &Principal,
    outcome: Outcome,
    notes: &str,
    now: Timestamp,
) -> Result<Recorded, DomainError> {
    if reviewer.kind != PrincipalKind::Human {
        return Err(DomainError::ReviewerNotHuman {
            principal: reviewer.name.to_string(),
        });
    }
    if !may_review(role, reviewer) {
        return Err(DomainError::NotReviewer {
            principal: reviewer.name.to_string(),
            role: g.role.to_string(),
        });
    }
    separation(role, g, reviewer)?;
    match &g.state {
        GrantState::Active { .. } | GrantState::Revoking { .. } => {
            return Err(DomainError::StillActive {
                grant: g.id.to_string(),
                state: g.state.name(),
            });
        }
        s if !s.is_ended() || activated_at.is_none() => {
            return Err(DomainError::NeverActive {
                grant: g.id.to_string(),
                state: g.state.name(),
            });
        }
        _ => {}
    }
    if let Some(done) = final_review(earlier) {
        return Err(DomainError::AlreadyReviewed {
            grant: g.id.to_string(),
            outcome: done.outcome.as_str(),
            reviewer: done.reviewer.to_string(),
        });
    }
    let notes = free_text("notes", notes, MAX_NOTES_CHARS, true)?;
    let mut next = g.clone();
    if outcome.is_final()
        && let Some(e) = &mut next.emergency
    {
        // The review that lifts the block on the requester's next emergency use.
        e.reviewed_at = Some(now);
    }
    let owed = owed(role, g, activated_at);
    let event = g.event(
        Actor::User(reviewer.name.clone()),
        EventKind::ReviewRecorded {
            role: g.role.to_string(),
            requester: g.requester.to_string(),
            reviewer: reviewer.name.to_string(),
            outcome,
            notes: notes.clone(),
            due: owed.map(|o| o.due),
        },
    );
    Ok(Recorded {
        review: Review {
            grant: g.id,
            reviewer: reviewer.name.clone(),
            outcome,
            notes,
            at: now,
        },
        grant: next,
        events: vec![event],
    })
}

/// The name a drill's automatic review is recorded under. It is not a principal: names starting
/// `system.` are refused when a user is added ([`is_reserved_name`]).
pub const DRILL_REVIEWER: &str = "system.drills";

/// Whether `name` is kept for the broker's own records (such as [`DRILL_REVIEWER`]) and may not be
/// given to a principal.
pub fn is_reserved_name(name: &str) -> bool {
    name.starts_with("system.")
}

/// The broker records the review of drill grant `g` (which became active at `activated_at`) when
/// its drill `drill` completed: the outcome is `drill`, final, by [`DRILL_REVIEWER`]. A grant that
/// is not a drill, is not over, or has a final review already is refused as a person's would be.
pub fn record_drill(
    g: &Grant,
    activated_at: Option<Timestamp>,
    earlier: &[Review],
    drill: &str,
    passed: bool,
    now: Timestamp,
) -> Result<Recorded, DomainError> {
    if !g.drill || !g.state.is_ended() || activated_at.is_none() {
        return Err(DomainError::NeverActive {
            grant: g.id.to_string(),
            state: g.state.name(),
        });
    }
    if let Some(done) = final_review(earlier) {
        return Err(DomainError::AlreadyReviewed {
            grant: g.id.to_string(),
            outcome: done.outcome.as_str(),
            reviewer: done.reviewer.to_string(),
        });
    }
    let reviewer: Name = DRILL_REVIEWER.parse()?;
    let notes = format!(
        "drill {drill} {}; its report is `breakglass drills show {drill}`",
        if passed { "passed" } else { "failed" }
    );
    let event = g.event(
        Actor::System("drills"),
        EventKind::ReviewRecorded {
            role: g.role.to_string(),
            requester: g.requester.to_string(),
            reviewer: reviewer.to_string(),
            outcome: Outcome::Drill,
            notes: notes.clone(),
            due: None,
        },
    );
    Ok(Recorded {
        review: Review {
            grant: g.id,
            reviewer,
            outcome: Outcome::Drill,
            notes,
            at: now,
        },
        grant: g.clone(),
        events: vec![event],
    })
}

/// The reminders about `owed` that are due at `now` and not yet `sent`, in order, with the event
/// each records (`review.overdue`). `reviewers` names who is waited on, for the alert.
pub fn reminders_due(
    g: &Grant,
    owed: &Owed,
    sent: &[Reminder],
    reviewers: &[String],
    now: Timestamp,
) -> Vec<(Reminder, EventDraft)> {
    Reminder::ALL
        .into_iter()
        .filter(|r| !sent.contains(r) && now >= r.at(owed))
        .map(|r| {
            let event = g.event(
                Actor::System("reviews"),
                EventKind::ReviewOverdue {
                    role: g.role.to_string(),
                    requester: g.requester.to_string(),
                    due: owed.due,
                    escalated: r == Reminder::Escalated,
                    reviewers: reviewers.to_vec(),
                },
            );
            (r, event)
        })
        .collect()
}

/// When the next reminder about `owed` falls due, if one is still to be sent.
pub fn next_reminder(owed: &Owed, sent: &[Reminder]) -> Option<Timestamp> {
    Reminder::ALL
        .into_iter()
        .filter(|r| !sent.contains(r))
        .map(|r| r.at(owed))
        .min()
}

#[cfg(test)]
mod tests;
