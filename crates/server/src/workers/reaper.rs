//! The reaper: expires active grants when their window closes (revoking at the provider first,
//! then recording `grant.expired`), retries the revocations a target refused, and times out
//! requests nobody approved. One grant's failure never holds up the others.
//!
//! It sleeps until its next due item (see [`super::wake`]): the earliest active grant's end, the
//! next request time-out, or the next revocation retry (or take-over of a revocation left alone),
//! whichever comes first ([`next_due`]). The grant service moves its alarm forward when it commits
//! earlier work.

use std::sync::Arc;

use breakglass_core::{Actor, StateKind, Timestamp};
use breakglass_store::{StoreError, StoredGrant};
use futures_util::StreamExt as _;
use tokio::sync::watch;
use tokio::time::Instant;

use super::wake::{Pace, earliest};
use crate::app::App;
use crate::error::ServiceError;
use crate::grant::{Grants, SETTLED_MS};

/// How many grants one pass ends at the same time.
const REAP_CONCURRENCY: usize = 16;

pub async fn run(app: Arc<App>, pace: Pace, mut shutdown: watch::Receiver<bool>) {
    let alarm = &app.alarms.reaper;
    // The start-up pass has just run (`Server::start`): begin with what is due after it.
    let mut last = Instant::now();
    plan(&app.grants).await;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(alarm.wake_at(app.clock.as_ref(), pace, last, Instant::now())) => {}
            // Earlier work: sleep less.
            () = alarm.moved() => continue,
            _ = shutdown.changed() => return,
        }
        last = Instant::now();
        alarm.clear();
        if let Err(e) = pass(&app.grants).await {
            tracing::warn!(error = %e, "reaper pass failed; retrying shortly");
            alarm.ring();
        }
        plan(&app.grants).await;
    }
}

/// Sets the reaper's alarm to its next due item.
async fn plan(grants: &Grants) {
    match next_due(grants).await {
        Ok(at) => grants.alarms.reaper.found(at),
        Err(e) => {
            tracing::warn!(error = %e, "could not find the reaper's next due item; retrying shortly");
            grants.alarms.reaper.ring();
        }
    }
}

/// When the reaper next has work (at or before now: at once), or `None` if it has none: the
/// earliest of the earliest active grant's end, the oldest pending request of each role plus the
/// role's `request_ttl`, and for each grant being revoked, its retry (or, with none scheduled in
/// this process, when it is left alone long enough to be taken over).
pub async fn next_due(grants: &Grants) -> Result<Option<Timestamp>, ServiceError> {
    let mut next = grants.store.next_expiry().await?;
    let roles = grants.catalog.roles();
    for (role, oldest) in grants.store.oldest_requests().await? {
        next = earliest(next, Some(oldest.saturating_add(roles.request_ttl(&role))));
    }
    for sg in grants.in_states(&[StateKind::Revoking]).await? {
        let at = match grants.retries.get(sg.grant.id) {
            Some(r) => r.next_at,
            None => Timestamp::from_unix_millis(
                sg.grant.updated_at.unix_millis().saturating_add(SETTLED_MS),
            ),
        };
        next = earliest(next, Some(at));
    }
    Ok(next)
}

/// One pass: expire every active grant whose window has closed, retry refused revocations, and
/// time out requests nobody approved in time.
pub async fn pass(grants: &Grants) -> Result<(), ServiceError> {
    let now = grants.clock.now();
    let mut first_error = None;
    let due = grants.store.due_for_expiry(now).await?;
    // Grants are expired several at a time: one slow or unreachable target must not hold up the
    // end of every other grant due in the same pass.
    let expiries = futures_util::stream::iter(due)
        .map(|sg| async move {
            let id = sg.grant.id;
            (id, expire(grants, sg, now).await)
        })
        .buffer_unordered(REAP_CONCURRENCY)
        .collect::<Vec<_>>();
    let mut retry_error = None;
    let retries = retry_revocations(grants, now, &mut retry_error);
    let (expired, ()) = tokio::join!(expiries, retries);
    for (id, res) in expired {
        if let Err(e) = res {
            tracing::warn!(grant = %id, error = %e, "could not expire; retrying next pass");
            first_error.get_or_insert(e);
        }
    }
    if let Some(e) = retry_error {
        first_error.get_or_insert(e);
    }
    let roles = grants.catalog.roles();
    // Only requests older than the shortest TTL can be due: the reaper runs often and must not
    // read every pending request each time.
    let cutoff =
        Timestamp::from_unix_millis(now.unix_millis() - roles.shortest_request_ttl().as_millis());
    for sg in grants.store.requested_before(cutoff).await? {
        let ttl = roles.request_ttl(sg.grant.role.as_str());
        let Some(tr) = sg.grant.time_out(ttl, now) else {
            continue;
        };
        match grants.write(&sg, tr, None, now).await {
            Ok(_) | Err(StoreError::Conflict) => {}
            Err(e) => {
                first_error.get_or_insert(e.into());
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn expire(grants: &Grants, sg: StoredGrant, now: Timestamp) -> Result<(), ServiceError> {
    let Some(tr) = sg.grant.begin_expiry(now) else {
        return Ok(());
    };
    let revoking = match grants.write(&sg, tr, None, now).await {
        Ok(s) => s,
        // Someone else (a revoke, another pass) got there first.
        Err(StoreError::Conflict) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    grants
        .finish_revoking(revoking, Actor::System("reaper"))
        .await?;
    Ok(())
}

/// Retries the revocations a target refused, each on its own backoff schedule, plus any grant
/// left `revoking` for a while with no schedule here (by a crash, or by another replica that
/// stopped).
async fn retry_revocations(
    grants: &Grants,
    now: Timestamp,
    first_error: &mut Option<ServiceError>,
) {
    let revoking = match grants.in_states(&[StateKind::Revoking]).await {
        Ok(r) => r,
        Err(e) => {
            first_error.get_or_insert(e);
            return;
        }
    };
    let due = revoking
        .into_iter()
        .filter(|sg| match grants.retries.get(sg.grant.id) {
            Some(r) => r.next_at <= now,
            // A revocation in flight right now (an API call, another replica) is left to finish;
            // one untouched for a while is stuck and taken over.
            None => now.unix_millis() - sg.grant.updated_at.unix_millis() >= SETTLED_MS,
        });
    let results = futures_util::stream::iter(due)
        .map(|sg| async move {
            let id = sg.grant.id;
            (
                id,
                grants.finish_revoking(sg, Actor::System("reaper")).await,
            )
        })
        .buffer_unordered(REAP_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    for (id, res) in results {
        match res {
            Ok(_) => {}
            Err(e) if e.is_conflict() => {}
            Err(e) => {
                tracing::warn!(grant = %id, error = %e, "could not finish revoking; retrying");
                first_error.get_or_insert(e);
            }
        }
    }
}
