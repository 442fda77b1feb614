//! The reconciler: at start and periodically, finishes or undoes every open `approved` and
//! `activating` intent so a crash between intent and outcome is repaired (invariant 3), re-issues
//! a credential owed after an extension, ends the grants of requesters disabled meanwhile, checks
//! that every active grant's privilege is still at its target, and sweeps the targets for
//! privilege no live grant stands behind. Open `revoking` intents are the reaper's.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use breakglass_core::{Actor, GrantState, StateKind, Target, Timestamp};
use breakglass_providers::Presence;
use tokio::sync::watch;

use crate::app::App;
use crate::error::ServiceError;
use crate::grant::{Grants, SETTLED_MS};

pub async fn run(app: Arc<App>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match pass(&app.grants, Intents::Settled).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(open_intents = n, "reconciler pass"),
                    Err(e) => tracing::warn!(error = %e, "reconciler pass failed; retrying next tick"),
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Which open intents a pass takes over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intents {
    /// Only those left alone for a while: whoever recorded a fresher one (an API call, another
    /// replica) is most likely finishing it right now.
    Settled,
    /// Every one: at the start of the only process that can be serving (the embedded store's
    /// data directory is locked), nobody else is finishing any of them.
    All,
}

/// One pass. Returns how many open intents it finished or undid.
pub async fn pass(grants: &Grants, intents: Intents) -> Result<usize, ServiceError> {
    let actor = Actor::System("reconciler");
    // A lockdown in force ends every live grant in its scope, whatever it was interrupted by.
    let locked = grants.end_for_lockdowns(&actor).await?;
    let mut repaired = locked.revoked + locked.cancelled;
    // Revocations are the reaper's alone: it retries those a target refused on their backoff and
    // takes over any left `revoking` with no schedule (a crash, a stopped replica). A second
    // attempt from here could race it, and drop the privilege unrecorded after it gave up.
    let open = grants
        .in_states(&[
            StateKind::Approved,
            StateKind::Activating,
            StateKind::Active,
        ])
        .await?;
    let mut disabled: BTreeMap<String, bool> = BTreeMap::new();
    for sg in open {
        let id = sg.grant.id;
        let requester = sg.grant.requester.to_string();
        if !disabled.contains_key(&requester) {
            let gone = grants
                .store
                .principal(&requester)
                .await?
                .is_none_or(|p| p.disabled);
            disabled.insert(requester.clone(), gone);
        }
        if disabled.get(&requester) == Some(&true) {
            // A requester disabled (or removed) after the last pass, or while the broker was down
            // between recording the disable and ending the grants: end them now.
            match grants.end_one_for_disabled(sg, &actor).await {
                Ok(true) => repaired += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(grant = %id, error = %e, "could not end a disabled requester's grant; will retry")
                }
            }
            continue;
        }
        // An intent recorded moments ago is most likely being finished right now by whoever
        // recorded it (an API call, another replica): repeating the provider call alongside it
        // is safe, but a failure of the repeat must not undo the other's success. A crash
        // leaves the intent to age, and the next pass takes it over.
        let age = grants.clock.now().unix_millis() - sg.grant.updated_at.unix_millis();
        if matches!(
            sg.grant.state,
            GrantState::Approved { .. } | GrantState::Activating { .. }
        ) && age < SETTLED_MS
            && intents == Intents::Settled
        {
            continue;
        }
        let from = sg.grant.state.name();
        let res = match sg.grant.state {
            GrantState::Approved { .. } => grants.activate(sg, actor.clone()).await,
            GrantState::Activating { .. } => grants.finish_activation(sg, actor.clone()).await,
            GrantState::Active {
                credential_due: true,
                ..
            } => grants.reissue(sg, actor.clone()).await,
            GrantState::Active { expires_at, .. } => {
                check_active(grants, &sg.grant, expires_at).await;
                continue;
            }
            _ => continue,
        };
        repaired += 1;
        match res {
            Ok(after) => {
                tracing::info!(grant = %id, from, to = after.grant.state.name(), "reconciled open intent")
            }
            Err(e) if e.is_conflict() => {}
            Err(e) => tracing::warn!(grant = %id, error = %e, "could not reconcile; will retry"),
        }
    }
    match sweep_orphans(grants).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(removed = n, "orphaned privileges removed at targets"),
        Err(e) => tracing::warn!(error = %e, "orphan sweep incomplete; will retry"),
    }
    Ok(repaired)
}

/// Reports an active grant whose privilege the target no longer has before its end.
async fn check_active(grants: &Grants, g: &breakglass_core::Grant, expires_at: Timestamp) {
    let Some(handle) = g.handle() else { return };
    let now = grants.clock.now();
    match grants
        .providers
        .for_target(&g.target)
        .check(handle, now)
        .await
    {
        // Targets keep time in whole seconds; allow for the rounding at the very end.
        Ok(Presence::Absent)
            if now.saturating_add(breakglass_core::Duration::from_secs(1)) < expires_at =>
        {
            tracing::warn!(grant = %g.id, "privilege missing at the target before the grant's end");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(grant = %g.id, error = %e, "could not check the target"),
    }
}

/// The sweep of the targets: every privilege this installation created that no live grant stands
/// behind is removed and audited (`target.orphan_removed`). The targets are listed before the
/// grants are read, so a privilege whose grant was still being activated is seen with its grant;
/// one whose grant ended only moments ago is left for the next sweep, since its own revocation may
/// still be finishing.
pub async fn sweep_orphans(grants: &Grants) -> Result<usize, ServiceError> {
    let roles = grants.catalog.roles();
    // Each place a provider lists once, however many roles point at it.
    let targets: BTreeMap<String, &Target> = roles
        .iter()
        .map(|r| {
            (
                grants.providers.for_target(&r.target).list_key(&r.target),
                &r.target,
            )
        })
        .collect();
    let mut found = Vec::new();
    for t in targets.into_values() {
        match grants.providers.for_target(t).list(t).await {
            Ok(handles) => found.extend(handles.into_iter().map(|h| (t, h))),
            Err(e) => {
                tracing::warn!(target = t.kind(), error = %e, "could not list the target's privileges; will retry")
            }
        }
    }
    if found.is_empty() {
        return Ok(0);
    }
    let live: HashSet<String> = grants
        .in_states(&[
            StateKind::Activating,
            StateKind::Active,
            StateKind::Revoking,
        ])
        .await?
        .into_iter()
        .filter_map(|sg| sg.grant.handle().map(str::to_owned))
        .collect();
    let mut removed = 0;
    for (t, handle) in found {
        if live.contains(&handle) {
            continue;
        }
        let provider = grants.providers.for_target(t);
        let mut for_grant = None;
        if let Some(id) = provider.grant_of(&handle)
            && let Some(sg) = grants.store.grant(id).await?
        {
            let age = grants.clock.now().unix_millis() - sg.grant.updated_at.unix_millis();
            if !sg.grant.state.is_ended() || age < SETTLED_MS {
                continue;
            }
            for_grant = Some(id);
        }
        if let Err(e) = provider.revoke(&handle).await {
            tracing::warn!(%handle, error = %e, "could not remove an orphaned privilege; will retry");
            continue;
        }
        grants
            .record_removed(
                Actor::System("reconciler"),
                provider.kind(),
                &handle,
                for_grant,
            )
            .await?;
        tracing::warn!(%handle, target = provider.kind(), "removed an orphaned privilege at the target");
        removed += 1;
    }
    Ok(removed)
}
