//! Drills: a real grant, flagged `drill`, through a role's whole path, proving it works before
//! the day it is needed. The rules are the core's (`breakglass_core::drill`); this starts a drill
//! with its grant, lists and shows drills, and reports each role's drill status. The drill worker
//! (`workers/drills.rs`) moves open drills on and alerts overdue ones ([`checks`]).
//!
//! Who runs one: a person in the role's owner group or its `[review] reviewers`
//! (`Role::may_drill`), with a fresh step-up. The runner is the drill grant's requester even if
//! the role's `requesters` do not name them: a drill exercises the role's path, not the runner's
//! own access. Its approvers approve it with the normal `approve`; `--emergency` takes the role's
//! emergency path instead.

mod checks;

pub use checks::{next_due, pass};

use breakglass_core::drill::{Drill, DrillId, drill_due};
use breakglass_core::{Actor, DomainError, Grant, GrantId, Role, Timestamp};
use breakglass_store::{DrillSchedule, StoredGrant};
use serde::Serialize;

use crate::app::App;
use crate::error::ServiceError;
use crate::signin::Caller;
use crate::startup::sealing::SealError;

/// The most drills one `drills` list returns.
pub(crate) const LIST_LIMIT: u32 = 200;

/// A role's drill status, for `roles list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DrillStatus {
    /// The last drill of the role, of any outcome, and its stage (`passed`, `failed`, or still
    /// under way).
    pub last_drill: Option<String>,
    pub last_drill_at: Option<Timestamp>,
    pub last_result: Option<&'static str>,
    /// When its last passing drill completed.
    pub last_passed: Option<Timestamp>,
    /// When the next drill is due, and whether that is already past.
    pub drill_due: Timestamp,
    pub drill_overdue: bool,
}

/// What a finished drill hands on: the hook for the automatic review with outcome `drill`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrillOutcome {
    pub drill: DrillId,
    pub grant: GrantId,
    pub role: String,
    pub passed: bool,
    pub completed_at: Timestamp,
}

impl DrillOutcome {
    /// The outcome of `d`, if it has completed.
    pub fn of(d: &Drill) -> Option<Self> {
        match d.stage {
            breakglass_core::drill::DrillStage::Completed {
                completed_at,
                passed,
            } => Some(Self {
                drill: d.id,
                grant: d.grant,
                role: d.role.to_string(),
                passed,
                completed_at,
            }),
            _ => None,
        }
    }
}

/// Called once a drill has completed and its `drill.completed` is committed: the broker records
/// the drill grant's post-use review with the outcome `drill` (`review::record_drill`), so a drill
/// never shows as a use owed a review. Failing to record it is logged, never fatal: the drill's
/// own report stands, and a drill grant owes no review it could be blocked by.
pub(crate) async fn completed(app: &App, outcome: &DrillOutcome) {
    tracing::info!(drill = %outcome.drill, grant = %outcome.grant, role = %outcome.role, passed = outcome.passed, "drill completed");
    for _ in 0..3 {
        match review_drill(app, outcome).await {
            Ok(()) => return,
            Err(ServiceError::Store(breakglass_store::StoreError::Conflict)) => continue,
            Err(e) => {
                tracing::warn!(drill = %outcome.drill, grant = %outcome.grant, error = %e, "could not record the drill's review");
                return;
            }
        }
    }
}

async fn review_drill(app: &App, outcome: &DrillOutcome) -> Result<(), ServiceError> {
    let sg = app.grants.load(outcome.grant).await?;
    let activated_at = crate::governance::reviews::activated(app, &sg.grant).await?;
    let earlier = app.store.reviews_of(outcome.grant).await?;
    if breakglass_core::review::final_review(&earlier).is_some() {
        return Ok(());
    }
    let now = app.clock.now();
    let rec = breakglass_core::review::record_drill(
        &sg.grant,
        activated_at,
        &earlier,
        &outcome.drill.to_string(),
        outcome.passed,
        now,
    )?;
    app.store
        .record_review(&rec.grant, sg.version, &rec.review, &rec.events, now)
        .await?;
    Ok(())
}

fn random_bytes() -> Result<[u8; 16], ServiceError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|_| SealError::Random)?;
    Ok(b)
}

/// `caller` starts a drill of `role`: its grant is requested (waiting for the role's approvers),
/// or on the emergency path activated at once. Returns the drill and its grant as they are now.
pub async fn start(
    app: &App,
    caller: &Caller,
    role: &str,
    emergency: bool,
) -> Result<(Drill, Grant), ServiceError> {
    let roles = app.catalog.roles();
    let role = roles.require(role)?;
    let now = app.clock.now();
    let id = DrillId::from_bytes(random_bytes()?);
    let grant_id = GrantId::from_bytes(random_bytes()?);
    // The core's refusal (not an owner or reviewer, no emergency path) says most precisely what
    // is wrong; then the token's scope and a fresh step-up.
    let started = Drill::start(id, grant_id, role, &caller.principal, emergency, now)?;
    app.access.check(caller, caller.action, Some(role), false)?;
    let drill = started.drill;
    let mut tr = started.grant;
    let actor = Actor::User(caller.principal.name.clone());
    if emergency {
        // As for any emergency self-activation: the request and the activation intent commit
        // together, and the drill with them.
        let next = app.grants.begin_activation(&tr.grant, actor.clone(), now)?;
        tr.events.extend(next.events);
        tr.grant = next.grant;
    }
    app.store
        .start_drill(&drill, &tr.grant, &tr.events, now)
        .await?;
    app.grants.wake_for(&tr.grant);
    tracing::info!(drill = %id, grant = %grant_id, role = %role.id, runner = %caller.principal.name, emergency, "drill started");
    if emergency {
        let sg = StoredGrant {
            grant: tr.grant,
            version: 1,
        };
        // A target that is down fails the grant (and leaves nothing behind); the drill records
        // that as its activation step. Anything else is the reconciler's to finish.
        if let Err(e) = app.grants.finish_activation(sg, actor).await {
            tracing::warn!(drill = %id, grant = %grant_id, error = %e, "drill activation did not complete; the reconciler will finish it");
        }
    }
    app.alarms.drills.ring();
    let grant = app.grants.load(grant_id).await?.grant;
    Ok((drill, grant))
}

/// Drills the caller may see, of `role` or of every role, newest first.
pub async fn list(
    app: &App,
    caller: &Caller,
    role: Option<&str>,
) -> Result<Vec<Drill>, ServiceError> {
    let roles = app.catalog.roles();
    if let Some(r) = role
        && roles.get(r).is_none()
        && app.store.drills(Some(r), 1).await?.is_empty()
    {
        return Err(DomainError::UnknownRole { role: r.to_owned() }.into());
    }
    Ok(app
        .store
        .drills(role, LIST_LIMIT)
        .await?
        .into_iter()
        .map(|sd| sd.drill)
        .filter(|d| d.visible_to(roles.get(d.role.as_str()), &caller.principal))
        .collect())
}

/// One drill with its report.
pub async fn show(app: &App, caller: &Caller, id: &str) -> Result<Drill, ServiceError> {
    let id: DrillId = id.parse()?;
    let unknown = || DomainError::UnknownDrill {
        drill: id.to_string(),
    };
    let d = app.store.drill(id).await?.ok_or_else(unknown)?.drill;
    let roles = app.catalog.roles();
    // Someone who may not see it learns no more than that there is no such drill for them.
    if !d.visible_to(roles.get(d.role.as_str()), &caller.principal) {
        return Err(unknown().into());
    }
    Ok(d)
}

/// The drill status of every role loaded now, by role id.
pub async fn statuses(
    app: &App,
) -> Result<std::collections::BTreeMap<String, DrillStatus>, ServiceError> {
    let roles = app.catalog.roles();
    let now = app.clock.now();
    // Reading adds no schedule row: the drill worker adds one for each role it sees. A role it
    // has not seen yet counts from now.
    let schedule = app.store.drill_schedule(&[], now).await?;
    let mut out = std::collections::BTreeMap::new();
    for role in roles.iter() {
        let s = schedule
            .iter()
            .find(|s| s.role == role.id.as_str())
            .cloned()
            .unwrap_or_else(|| DrillSchedule {
                role: role.id.to_string(),
                first_seen: now,
                alerted_due: None,
                last_passed: None,
            });
        let last = app.store.drills(Some(role.id.as_str()), 1).await?;
        out.insert(
            role.id.to_string(),
            status(role, &s, last.first().map(|d| &d.drill), now),
        );
    }
    Ok(out)
}

/// One role's drill status from its schedule and its last drill.
pub(crate) fn status(
    role: &Role,
    s: &DrillSchedule,
    last: Option<&Drill>,
    now: Timestamp,
) -> DrillStatus {
    let due = drill_due(role, s.last_passed, s.first_seen);
    DrillStatus {
        last_drill: last.map(|d| d.id.to_string()),
        last_drill_at: last.map(|d| d.started_at),
        last_result: last.map(|d| d.stage.name()),
        last_passed: s.last_passed,
        drill_due: due,
        drill_overdue: now >= due,
    }
}
