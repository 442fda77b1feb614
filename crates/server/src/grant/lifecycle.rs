//! A grant's life at its target: activation and revocation, each with its intent recorded before
//! the target is touched (invariant 3), every provider call idempotent (invariant 8), and
//! revocations the target refuses retried with backoff until they succeed or give up.

use std::collections::HashMap;
use std::sync::Mutex;

use breakglass_core::{
    Actor, DomainError, EventDraft, EventKind, Grant, GrantId, GrantState, Timestamp, Transition,
};
use breakglass_providers::GrantSpec;
use breakglass_store::{NewCredential, StoreError, StoredGrant};

use super::Grants;
use crate::error::ServiceError;

/// The longest wait between two attempts at a revocation the target refused.
const RETRY_CAP_MS: i64 = 60_000;

pub(crate) fn credential_context(id: GrantId) -> String {
    format!("credential:{id}")
}

/// This process's retry schedule for revocations a target refused: attempts so far and when to
/// try next. Kept in memory: after a restart, or on another replica, the first retry is
/// immediate, which is what a broker that has just come up should do anyway.
#[derive(Debug)]
pub(crate) struct RetrySchedule {
    retries: Mutex<HashMap<GrantId, RetryState>>,
    /// How long a refused revocation is retried before the grant is marked `failed`.
    give_up: std::time::Duration,
}

/// Where a grant is in its revocation retry schedule.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RetryState {
    pub(crate) attempts: u32,
    pub(crate) next_at: Timestamp,
}

impl RetrySchedule {
    pub(crate) fn new(give_up: std::time::Duration) -> Self {
        Self {
            retries: Mutex::new(HashMap::new()),
            give_up,
        }
    }

    pub(crate) fn get(&self, id: GrantId) -> Option<RetryState> {
        self.retries.lock().ok().and_then(|m| m.get(&id).copied())
    }

    fn forget(&self, id: GrantId) {
        if let Ok(mut m) = self.retries.lock() {
            m.remove(&id);
        }
    }

    /// Records one more failed attempt and when to try next: exponential from 1 s, capped at
    /// 60 s, with up to 25% random jitter so replicas and grants do not retry in lockstep.
    fn schedule(&self, id: GrantId, now: Timestamp) -> RetryState {
        let mut map = match self.retries.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let attempts = map.get(&id).map_or(0, |r| r.attempts) + 1;
        let delay = crate::backoff::delay_ms(attempts, 1000, RETRY_CAP_MS);
        let state = RetryState {
            attempts,
            next_at: Timestamp::from_unix_millis(now.unix_millis() + delay),
        };
        map.insert(id, state);
        state
    }
}

impl Grants {
    /// What to ask the provider for on behalf of `g`.
    fn spec<'a>(g: &'a Grant, not_before: Timestamp, expires_at: Timestamp) -> GrantSpec<'a> {
        GrantSpec {
            grant: g.id,
            principal: g.requester.as_str(),
            target: &g.target,
            not_before,
            expires_at,
        }
    }

    /// The core's activation intent, with the provider's handle recorded in it.
    pub(crate) fn begin_activation(
        &self,
        g: &Grant,
        actor: Actor,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        let (started_at, expires_at) = g.activation_window(now);
        let handle = self
            .providers
            .for_target(&g.target)
            .handle(&Self::spec(g, started_at, expires_at));
        g.begin_activation(actor, handle, now)
    }

    /// `approved` → `activating` (intent committed) → provider → `active`.
    pub(crate) async fn activate(
        &self,
        sg: StoredGrant,
        actor: Actor,
    ) -> Result<StoredGrant, ServiceError> {
        let now = self.clock.now();
        let tr = self.begin_activation(&sg.grant, actor.clone(), now)?;
        // INVARIANT(3): the intent is durable before the target is touched.
        let intent = self.write(&sg, tr, None, now).await?;
        self.finish_activation(intent, actor).await
    }

    /// Completes an `activating` grant. Safe to repeat: providers' `grant` is idempotent.
    pub(crate) async fn finish_activation(
        &self,
        sg: StoredGrant,
        actor: Actor,
    ) -> Result<StoredGrant, ServiceError> {
        let GrantState::Activating {
            started_at,
            expires_at,
            ..
        } = sg.grant.state
        else {
            return Ok(sg);
        };
        let g = &sg.grant;
        let provider = self.providers.for_target(&g.target);
        let spec = Self::spec(g, started_at, expires_at);
        let now = self.clock.now();
        if now >= expires_at {
            // The window closed before activation completed: leave nothing behind and fail.
            let handle = g
                .handle()
                .map_or_else(|| provider.handle(&spec), str::to_owned);
            provider.revoke(&handle).await?;
            let tr = g.fail(
                actor,
                "activation was interrupted and its window ended before it completed",
                now,
            )?;
            return Ok(self.write(&sg, tr, None, now).await?);
        }
        match provider.grant(&spec).await {
            Ok(issued) => {
                let ciphertext = self.sealer.seal(
                    issued.credential.expose().as_bytes(),
                    &credential_context(g.id),
                )?;
                let now = self.clock.now();
                let tr = g.activated(actor, &issued.handle, &issued.fingerprint, now)?;
                let cred = NewCredential {
                    fingerprint: issued.fingerprint.clone(),
                    ciphertext,
                };
                let active = self.write(&sg, tr, Some(&cred), now).await?;
                self.metrics.activated();
                tracing::info!(grant = %g.id, fingerprint = %issued.fingerprint, expires_at = %expires_at, "grant active");
                // Every break-glass activation is sealed into a signed, published checkpoint.
                if let Err(e) = self
                    .checkpoints
                    .latest(self.store.as_ref(), self.clock.now())
                    .await
                {
                    tracing::error!(grant = %g.id, error = %e, "could not sign the audit checkpoint after activation");
                }
                Ok(active)
            }
            Err(e) => {
                // Fail closed: the grant is `failed` with the reason (provider errors hold no
                // secret), and anything the provider may have half-done is revoked. Unless the
                // grant has moved on meanwhile: then another attempt finished (or ended) it, and
                // what is at the target is that attempt's to keep or to revoke.
                tracing::warn!(grant = %g.id, error = %e, "provider could not grant");
                if self
                    .store
                    .grant(g.id)
                    .await?
                    .is_none_or(|now_g| now_g.version != sg.version)
                {
                    return Err(StoreError::Conflict.into());
                }
                let handle = g
                    .handle()
                    .map_or_else(|| provider.handle(&spec), str::to_owned);
                if let Err(re) = provider.revoke(&handle).await {
                    tracing::warn!(grant = %g.id, error = %re, "could not clean up after the failed grant");
                }
                let tr = g.fail(
                    actor,
                    &format!("provider `{}` could not grant: {e}", provider.kind()),
                    now,
                )?;
                Ok(self.write(&sg, tr, None, now).await?)
            }
        }
    }

    /// Completes a `revoking` grant. If the provider fails, the grant stays `revoking` and is
    /// retried with backoff (by the reaper, and by the reconciler on any replica); the target's
    /// own expiry still bounds the privilege (invariant 1). A revocation that keeps failing past
    /// `revoke_give_up` marks the grant `failed` with the reason, and the orphan sweep keeps
    /// trying to remove what is left at the target.
    pub(crate) async fn finish_revoking(
        &self,
        sg: StoredGrant,
        actor: Actor,
    ) -> Result<StoredGrant, ServiceError> {
        let GrantState::Revoking { expires_at, .. } = sg.grant.state else {
            return Ok(sg);
        };
        let g = &sg.grant;
        let mut report = None;
        // No handle means the activation intent was never recorded: nothing reached the target.
        if let Some(handle) = g.handle() {
            match self
                .providers
                .for_target(&g.target)
                .revoke_reporting(handle)
                .await
            {
                Ok(r) => report = r.sessions_ended.map(|n| (handle, n)),
                Err(e) => return self.revoke_refused(sg, actor, expires_at, e).await,
            }
        }
        self.retries.forget(g.id);
        let now = self.clock.now();
        let mut tr = g.finish_revoke(actor.clone(), now)?;
        // What the target reported, recorded with the end it belongs to (a review's evidence).
        if let Some((handle, sessions)) = report {
            tr.events.push(
                EventDraft::new(
                    actor.clone(),
                    Some(g.id),
                    EventKind::TargetSessionsEnded {
                        target: g.target.kind().to_owned(),
                        handle: handle.to_owned(),
                        sessions,
                    },
                )
                .flagged(g.emergency.is_some()),
            );
        }
        let ended = match self.write(&sg, tr, None, now).await {
            Ok(ended) => ended,
            Err(StoreError::Conflict) => {
                self.record_late_removal(&sg.grant, actor).await?;
                return Err(StoreError::Conflict.into());
            }
            Err(e) => return Err(e.into()),
        };
        self.metrics.ended(&ended.grant.state);
        tracing::info!(grant = %g.id, state = ended.grant.state.name(), "grant ended");
        Ok(ended)
    }

    /// The target refused a revocation: retried with backoff, until `revoke_give_up` marks the
    /// grant `failed`.
    async fn revoke_refused(
        &self,
        sg: StoredGrant,
        actor: Actor,
        expires_at: Timestamp,
        e: breakglass_providers::ProviderError,
    ) -> Result<StoredGrant, ServiceError> {
        let g = &sg.grant;
        let now = self.clock.now();
        let since = now.unix_millis().saturating_sub(g.updated_at.unix_millis());
        let give_up = i64::try_from(self.retries.give_up.as_millis()).unwrap_or(i64::MAX);
        if since >= give_up {
            self.retries.forget(g.id);
            tracing::error!(grant = %g.id, error = %e, "revocation kept failing; marking the grant failed");
            let tr = g.fail(
                actor,
                &format!(
                    "revocation at the target kept failing for {}s: {e}; the target still ends access on its own at {expires_at}, and the reconciler keeps trying to remove what is left",
                    since / 1000
                ),
                now,
            )?;
            return Ok(self.write(&sg, tr, None, now).await?);
        }
        let retry = self.retries.schedule(g.id, now);
        self.alarms.reaper.due_at(retry.next_at);
        self.metrics.revoke_retry_scheduled();
        tracing::warn!(grant = %g.id, error = %e, attempts = retry.attempts, next_attempt_at = %retry.next_at, "provider could not revoke; will retry");
        Ok(sg)
    }

    /// A revocation that reached the target after someone else had already ended the grant, for
    /// example after another attempt gave up and marked it `failed`: the privilege is gone now, and
    /// the log must say so, or it would claim a privilege is left that no longer exists.
    async fn record_late_removal(&self, g: &Grant, actor: Actor) -> Result<(), ServiceError> {
        let Some(handle) = g.handle() else {
            return Ok(());
        };
        let Some(now_g) = self.store.grant(g.id).await? else {
            return Ok(());
        };
        // A grant revoked by the other attempt already says the privilege is gone.
        if !matches!(now_g.grant.state, GrantState::Failed { .. }) {
            return Ok(());
        }
        self.record_removed(actor, g.target.kind(), handle, Some(g.id))
            .await?;
        tracing::warn!(grant = %g.id, %handle, "a late revocation removed the privilege of a grant already marked failed");
        Ok(())
    }

    /// Audits that the privilege `handle` (made for `for_grant`, if any) is gone from a `target`
    /// with no live grant behind it (`target.orphan_removed`).
    pub(crate) async fn record_removed(
        &self,
        actor: Actor,
        target: &str,
        handle: &str,
        for_grant: Option<GrantId>,
    ) -> Result<(), ServiceError> {
        let event = EventDraft::new(
            actor,
            for_grant,
            EventKind::TargetOrphanRemoved {
                target: target.to_owned(),
                handle: handle.to_owned(),
                for_grant: for_grant.map(|g| g.to_string()),
            },
        );
        self.store.append(&[event], self.clock.now()).await?;
        Ok(())
    }

    /// After an approved extension: a fresh credential valid to the new end, shown once again.
    pub(crate) async fn reissue(
        &self,
        sg: StoredGrant,
        actor: Actor,
    ) -> Result<StoredGrant, ServiceError> {
        let GrantState::Active { expires_at, .. } = sg.grant.state else {
            return Ok(sg);
        };
        let now = self.clock.now();
        let g = &sg.grant;
        let issued = self
            .providers
            .for_target(&g.target)
            .grant(&Self::spec(g, now, expires_at))
            .await?;
        let ciphertext = self.sealer.seal(
            issued.credential.expose().as_bytes(),
            &credential_context(g.id),
        )?;
        let tr = g.credential_reissued(actor, &issued.handle, &issued.fingerprint, now)?;
        let cred = NewCredential {
            fingerprint: issued.fingerprint,
            ciphertext,
        };
        Ok(self.write(&sg, tr, Some(&cred), now).await?)
    }
}
