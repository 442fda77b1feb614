//! Post-use reviews: every grant that became active owes one once it ends, with the evidence
//! assembled by the broker and proven against the signed log.
//!
//! The core decides who may review, whether a grant can take a review, what is owed and when a
//! reminder is due ([`breakglass_core::review`]); this service gathers what those rules need,
//! asks them, and writes what they decided: a review with its `review.recorded` event (and an
//! emergency grant's `reviewed_at`) in one transaction, each reminder once. The evidence itself is
//! in [`super::evidence`].

use std::collections::BTreeMap;

use breakglass_core::review::{self, Outcome, Owed, Reminder, Review};
use breakglass_core::{Grant, GrantId, GrantState, Role, Timestamp};
use breakglass_store::{StoreError, StoredGrant};
use serde_json::{Value, json};

use crate::app::App;
use crate::error::ServiceError;
use crate::signin::Caller;

/// How many times recording re-decides after losing a race on the same grant.
const MAX_ATTEMPTS: usize = 8;
/// The most reviews one list reads.
const LIST_LIMIT: u32 = 500;

/// Which reviews a list shows.
#[derive(Clone, Copy, Debug, Default)]
pub struct Filter {
    /// Only reviews still owed (no final outcome yet, follow-ups included).
    pub owed: bool,
    /// Only owed reviews past their due time.
    pub overdue: bool,
    /// Only owed reviews the caller may record.
    pub mine: bool,
}

/// When `g` became active: from its state, or for a grant that failed after it was active (its
/// state no longer says), from its `grant.activated` event.
pub(crate) async fn activated(app: &App, g: &Grant) -> Result<Option<Timestamp>, ServiceError> {
    if let Some(at) = review::activated_at(g) {
        return Ok(Some(at));
    }
    if !matches!(g.state, GrantState::Failed { .. }) {
        return Ok(None);
    }
    let events = app.store.grant_events(g.id).await?;
    Ok(events.iter().find_map(|e| {
        let v = e.to_json()?;
        if v.get("type")?.as_str()? != "grant.activated" {
            return None;
        }
        Timestamp::parse_rfc3339(v.get("activated_at")?.as_str()?)
    }))
}

/// Who may record `role`'s reviews, as written (for alerts and lists).
pub(crate) fn reviewers(role: Option<&Role>) -> Vec<String> {
    match role {
        Some(r) => r.reviewers().iter().map(ToString::to_string).collect(),
        None => vec![format!("group:{}", breakglass_core::ADMIN_GROUP)],
    }
}

/// Records `outcome` for grant `id` as the caller. Policy (`review` on the role) and a fresh
/// step-up are asked of someone the core would let review; anyone else gets the core's more
/// precise refusal. Returns the review and the grant as now stored.
pub async fn record(
    app: &App,
    caller: &Caller,
    id: GrantId,
    outcome: &str,
    notes: &str,
) -> Result<(Review, Grant), ServiceError> {
    let outcome = Outcome::parse(outcome)?;
    let roles = app.catalog.roles();
    for _ in 0..MAX_ATTEMPTS {
        let sg = app.grants.load(id).await?;
        let g = &sg.grant;
        let role = roles.get(g.role.as_str());
        let p = &caller.principal;
        if review::may_review(role, p) && review::separation(role, g, p).is_ok() {
            app.access.scope(caller, caller.action)?;
            if let Some(r) = role {
                app.access
                    .policy(caller, caller.action, Some(r.id.as_str()), false)?;
            }
            app.access.step_up(caller, caller.action, role)?;
        }
        let activated_at = activated(app, g).await?;
        let earlier = app.store.reviews_of(id).await?;
        let now = app.clock.now();
        let rec = review::record(role, g, activated_at, &earlier, p, outcome, notes, now)?;
        match app
            .store
            .record_review(&rec.grant, sg.version, &rec.review, &rec.events, now)
            .await
        {
            Ok(stored) => {
                tracing::info!(grant = %id, reviewer = %p.name, outcome = %outcome, "review recorded");
                return Ok((rec.review, stored.grant));
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ServiceError::Busy)
}

/// The reviews owed and recorded that the caller may see, most urgent first: owed ones by due
/// time, then recorded ones, newest first.
pub async fn list(app: &App, caller: &Caller, f: Filter) -> Result<Vec<Value>, ServiceError> {
    let roles = app.catalog.roles();
    let now = app.clock.now();
    let p = &caller.principal;
    let mut recorded: BTreeMap<GrantId, Vec<Review>> = BTreeMap::new();
    for r in app.store.reviews(LIST_LIMIT).await? {
        recorded.entry(r.grant).or_default().push(r);
    }
    for rs in recorded.values_mut() {
        rs.reverse();
    }
    let mut open = Vec::new();
    for (sg, activated_at) in app.store.unreviewed().await? {
        let g = sg.grant;
        let role = roles.get(g.role.as_str());
        let owed = review::owed(role, &g, Some(activated_at));
        let reviews = recorded.remove(&g.id).unwrap_or_default();
        if owed.is_none() && reviews.is_empty() {
            continue;
        }
        if !review::may_see(role, &g, p) {
            continue;
        }
        let eligible = review::may_review(role, p) && review::separation(role, &g, p).is_ok();
        let overdue = owed.is_some_and(|o| now > o.due);
        if (f.overdue && !overdue) || (f.mine && !eligible) {
            continue;
        }
        open.push((
            owed.map(|o| o.due),
            item(&g, role, owed, &reviews, eligible, now),
        ));
    }
    open.sort_by_key(|(due, _)| due.map_or(i64::MAX, Timestamp::unix_millis));
    let mut out: Vec<Value> = open.into_iter().map(|(_, v)| v).collect();
    if f.owed || f.overdue || f.mine {
        return Ok(out);
    }
    // Grants with a final review (newest review first).
    let mut done: Vec<(GrantId, Vec<Review>)> = recorded.into_iter().collect();
    done.sort_by_key(|(_, rs)| std::cmp::Reverse(rs.last().map(|r| r.at)));
    for (id, reviews) in done {
        let Some(sg) = app.store.grant(id).await? else {
            continue;
        };
        let g = sg.grant;
        let role = roles.get(g.role.as_str());
        if !review::may_see(role, &g, p) {
            continue;
        }
        let owed = review::owed(role, &g, activated(app, &g).await?);
        out.push(item(&g, role, owed, &reviews, false, now));
    }
    Ok(out)
}

/// One line of `reviews`.
fn item(
    g: &Grant,
    role: Option<&Role>,
    owed: Option<Owed>,
    reviews: &[Review],
    may_record: bool,
    now: Timestamp,
) -> Value {
    let last = reviews.last();
    let finished = review::final_review(reviews);
    let status = match (finished, last) {
        (Some(r), _) => r.outcome.as_str(),
        (None, Some(_)) => Outcome::FollowUp.as_str(),
        (None, None) => "owed",
    };
    json!({
        "grant": g.id,
        "role": g.role,
        "requester": g.requester,
        "emergency": g.emergency.is_some(),
        "state": g.state.name(),
        "activated_at": owed.map(|o| o.activated_at),
        "ended_at": review::ended_at(g),
        "due": owed.map(|o| o.due),
        "overdue": finished.is_none() && owed.is_some_and(|o| now > o.due),
        "escalated": finished.is_none() && owed.is_some_and(|o| now >= o.escalate_at),
        "status": status,
        "reviewer": last.map(|r| r.reviewer.to_string()),
        "reviewed_at": last.map(|r| r.at),
        "notes": last.map(|r| r.notes.clone()),
        "reviewers": reviewers(role),
        "may_record": may_record && finished.is_none(),
    })
}

/// What a grant owes and what it has had, for its evidence.
pub(crate) async fn state_of(app: &App, g: &Grant, caller: &Caller) -> Result<Value, ServiceError> {
    let roles = app.catalog.roles();
    let role = roles.get(g.role.as_str());
    let owed = review::owed(role, g, activated(app, g).await?);
    let reviews = app.store.reviews_of(g.id).await?;
    let p = &caller.principal;
    let eligible = review::may_review(role, p) && review::separation(role, g, p).is_ok();
    let mut v = item(g, role, owed, &reviews, eligible, app.clock.now());
    if let Some(o) = v.as_object_mut() {
        o.insert("owed".into(), json!(owed.is_some()));
        o.insert("escalate_at".into(), json!(owed.map(|o| o.escalate_at)));
        o.insert("reviews".into(), json!(reviews));
    }
    Ok(v)
}

/// The overdue pass: sends each reminder that has fallen due (`review.overdue` to the role's
/// channels at the due time, escalated to `always` after twice the window), each once. Returns
/// when the next reminder falls due, if one is still to come.
pub async fn remind(app: &App) -> Result<Option<Timestamp>, ServiceError> {
    let roles = app.catalog.roles();
    let mut sent: BTreeMap<GrantId, Vec<Reminder>> = BTreeMap::new();
    for (id, r) in app.store.review_reminders().await? {
        sent.entry(id).or_default().push(r);
    }
    let mut next: Option<Timestamp> = None;
    for (StoredGrant { grant: g, .. }, activated_at) in app.store.unreviewed().await? {
        let role = roles.get(g.role.as_str());
        let Some(owed) = review::owed(role, &g, Some(activated_at)) else {
            continue;
        };
        let mut done = sent.remove(&g.id).unwrap_or_default();
        let now = app.clock.now();
        for (stage, event) in review::reminders_due(&g, &owed, &done, &reviewers(role), now) {
            if app
                .store
                .send_review_reminder(g.id, stage, &[event], now)
                .await?
            {
                tracing::warn!(grant = %g.id, stage = stage.as_str(), due = %owed.due, "review overdue");
            }
            done.push(stage);
        }
        if let Some(at) = review::next_reminder(&owed, &done) {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
    }
    Ok(next)
}
