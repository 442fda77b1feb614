//! Grant operations: each loads the grant, asks the core to decide, writes the decision with its
//! audit events, and only then talks to the provider (intent first, invariant 3). A concurrent
//! change to the same grant makes the write fail; the operation reloads and decides again.

use breakglass_core::grant::RequestInput;
use breakglass_core::{
    Actor, DomainError, Duration, EventDraft, EventKind, Grant, GrantId, GrantState, Principal,
    RoleSet, Timestamp, Transition,
};
use breakglass_providers::{GrantSpec, Secret};
use breakglass_store::{NewCredential, StoreError, StoredGrant};

use crate::access::AccessError;
use crate::broker::{Broker, BrokerError, Caller, RetryState};
use crate::policy::{Action, Policies, Query};

/// A grant left `revoking` this long with no retry scheduled in this process is taken over.
const STUCK_REVOKING_MS: i64 = 10_000;
/// How many grants one reaper pass ends at the same time.
const REAP_CONCURRENCY: usize = 16;
/// The longest wait between two attempts at a revocation the target refused.
const RETRY_CAP_MS: i64 = 60_000;

/// How many times an operation re-decides after losing a race on the same grant.
const MAX_ATTEMPTS: usize = 8;
/// The most grants one `grants list` returns.
pub(crate) const LIST_LIMIT: u32 = 500;

/// The core's visibility rule, narrowed by policy (a `forbid` on `read` hides grants).
fn visible(g: &Grant, roles: &RoleSet, policies: &Policies, p: &Principal) -> bool {
    g.visible_to(roles.get(g.role.as_str()), p)
        && policies.is_allowed(&Query {
            principal: p,
            action: Action::Read,
            role: Some(g.role.as_str()),
            own: g.requester == p.name,
        })
}

/// A credential handed to its holder, with the end it carries.
#[derive(Debug)]
pub struct Delivered {
    pub credential: Secret,
    pub kind: &'static str,
    pub expires_at: Option<Timestamp>,
}

fn credential_context(id: GrantId) -> String {
    format!("credential:{id}")
}

impl Broker {
    pub async fn request(
        &self,
        caller: &Caller,
        role: &str,
        input: RequestInput,
    ) -> Result<Grant, BrokerError> {
        let roles = self.roles();
        let role = roles.require(role)?;
        let now = self.clock.now();
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|_| crate::sealing::SealError::Random)?;
        // The core's refusal (not a requester, a bad field) says most precisely what is wrong;
        // policy is asked about what the role file allows, and can only narrow it.
        let tr = Grant::request(GrantId::from_bytes(id), role, &caller.principal, input, now)?;
        self.authorize(caller, Action::Request, Some(role.id.as_str()), false)?;
        self.store.insert_grant(&tr.grant, &tr.events, now).await?;
        self.metrics.requested();
        tracing::info!(grant = %tr.grant.id, role = %role.id, requester = %caller.principal.name, "grant requested");
        Ok(tr.grant)
    }

    /// Emergency self-activation: no approver, straight to activation, capped at the role's
    /// emergency maximum, flagged in every event, alerted at high severity, and owing a review by
    /// someone else. Needs a fresh second factor, and is refused while an earlier emergency use of
    /// the role by the same person is overdue for review (unless the role allows repeats).
    pub async fn request_emergency(
        &self,
        caller: &Caller,
        role: &str,
        input: RequestInput,
    ) -> Result<Grant, BrokerError> {
        let roles = self.roles();
        let role = roles.require(role)?;
        self.authorize(caller, Action::Emergency, Some(role.id.as_str()), false)?;
        self.require_step_up(caller, "request --emergency", Some(role))?;
        let now = self.clock.now();
        if let Some(e) = &role.emergency
            && !e.repeat_while_review_overdue
        {
            let earlier = self
                .store
                .grants_for(role.id.as_str(), caller.principal.name.as_str())
                .await?;
            if let Some(g) = earlier
                .iter()
                .map(|sg| &sg.grant)
                .find(|g| g.review_overdue(now))
            {
                return Err(AccessError::EmergencyReviewOverdue {
                    role: role.id.to_string(),
                    principal: caller.principal.name.to_string(),
                    grant: g.id.to_string(),
                    due: g.review_due.unwrap_or(now),
                }
                .into());
            }
        }
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|_| crate::sealing::SealError::Random)?;
        let tr =
            Grant::request_emergency(GrantId::from_bytes(id), role, &caller.principal, input, now)?;
        let actor = Actor::User(caller.principal.name.clone());
        // The request and the activation intent commit together: the grant is never seen waiting.
        let next = self.begin_activation(&tr.grant, actor.clone(), now)?;
        let events: Vec<_> = tr.events.into_iter().chain(next.events).collect();
        self.store.insert_grant(&next.grant, &events, now).await?;
        self.metrics.requested();
        tracing::warn!(grant = %next.grant.id, role = %role.id, requester = %caller.principal.name, "emergency self-activation");
        let sg = StoredGrant {
            grant: next.grant,
            version: 1,
        };
        let gid = sg.grant.id;
        let res = self.finish_activation(sg, actor).await;
        self.settled(gid, res).await
    }

    /// Policy's say on an approval or denial. Someone the role file does not make an approver,
    /// and a requester deciding their own request, get the core's more precise refusal instead
    /// (policy can only narrow who approves).
    fn authorize_approver(&self, caller: &Caller, g: &Grant, own: bool) -> Result<(), AccessError> {
        let roles = self.roles();
        match roles.get(g.role.as_str()) {
            Some(role) if role.may_approve(&caller.principal) && !own => {
                self.authorize(caller, Action::Approve, Some(g.role.as_str()), own)
            }
            _ => Ok(()),
        }
    }

    /// The grant `id` and whether it is the caller's own.
    async fn grant_and_owner(
        &self,
        caller: &Caller,
        id: GrantId,
    ) -> Result<(Grant, bool), BrokerError> {
        let g = self.load(id).await?.grant;
        let own = g.requester == caller.principal.name;
        Ok((g, own))
    }

    /// Approves a request (activating it once the quorum is reached) or a pending extension
    /// (re-issuing the credential with the new end once approved).
    pub async fn approve(
        &self,
        caller: &Caller,
        id: GrantId,
        comment: Option<String>,
    ) -> Result<Grant, BrokerError> {
        let (g, own) = self.grant_and_owner(caller, id).await?;
        self.authorize_approver(caller, &g, own)?;
        self.require_step_up(caller, "approve", self.roles().get(g.role.as_str()))?;
        self.still_allowed(caller, &g).await?;
        let roles = self.roles();
        let actor = Actor::User(caller.principal.name.clone());
        let (sg, _) = self
            .decide(id, |g, now| {
                let mut tr = g.approve(
                    roles.require(g.role.as_str())?,
                    &caller.principal,
                    comment.clone(),
                    now,
                )?;
                // The approval that completes the quorum and the activation intent commit
                // together: one durable write fewer, and no window where a grant sits approved.
                if matches!(tr.grant.state, GrantState::Approved { .. }) {
                    let next = self.begin_activation(&tr.grant, actor.clone(), now)?;
                    tr.events.extend(next.events);
                    tr.grant = next.grant;
                }
                Ok(tr)
            })
            .await?;
        self.metrics.approved();
        if matches!(sg.grant.state, GrantState::Activating { .. }) {
            let res = self.finish_activation(sg, actor).await;
            return self.settled(id, res).await;
        }
        if sg.grant.credential_due {
            // The extension is approved and committed; if re-issuing fails now, the grant keeps
            // `credential_due` and the reconciler finishes it.
            return match self.reissue(sg.clone(), actor).await {
                Ok(after) => Ok(after.grant),
                Err(e) => {
                    tracing::warn!(grant = %id, error = %e, "could not re-issue the credential; the reconciler will retry");
                    Ok(sg.grant)
                }
            };
        }
        Ok(sg.grant)
    }

    pub async fn deny(
        &self,
        caller: &Caller,
        id: GrantId,
        reason: &str,
    ) -> Result<Grant, BrokerError> {
        let (g, own) = self.grant_and_owner(caller, id).await?;
        self.authorize_approver(caller, &g, own)?;
        let roles = self.roles();
        let (sg, _) = self
            .decide(id, |g, now| {
                g.deny(
                    roles.require(g.role.as_str())?,
                    &caller.principal,
                    reason,
                    now,
                )
            })
            .await?;
        Ok(sg.grant)
    }

    pub async fn cancel(&self, caller: &Caller, id: GrantId) -> Result<Grant, BrokerError> {
        let (sg, _) = self
            .decide(id, |g, now| g.cancel(&caller.principal, now))
            .await?;
        Ok(sg.grant)
    }

    pub async fn revoke(
        &self,
        caller: &Caller,
        id: GrantId,
        reason: &str,
    ) -> Result<Grant, BrokerError> {
        let (g, own) = self.grant_and_owner(caller, id).await?;
        self.authorize(caller, Action::Revoke, Some(g.role.as_str()), own)?;
        // Ending one's own grant early never waits for a second factor.
        if !own {
            self.require_step_up(caller, "revoke", self.roles().get(g.role.as_str()))?;
        }
        let roles = self.roles();
        let (sg, _) = self
            .decide(id, |g, now| {
                g.begin_revoke(roles.get(g.role.as_str()), &caller.principal, reason, now)
            })
            .await?;
        tracing::info!(grant = %id, by = %caller.principal.name, "grant revoking");
        let res = self
            .finish_revoking(sg, Actor::User(caller.principal.name.clone()))
            .await;
        self.settled(id, res).await
    }

    pub async fn extend(
        &self,
        caller: &Caller,
        id: GrantId,
        duration: Duration,
        reason: &str,
    ) -> Result<Grant, BrokerError> {
        let (g, own) = self.grant_and_owner(caller, id).await?;
        self.authorize(caller, Action::Request, Some(g.role.as_str()), own)?;
        self.require_step_up(caller, "extend", self.roles().get(g.role.as_str()))?;
        self.still_allowed(caller, &g).await?;
        let roles = self.roles();
        let (sg, _) = self
            .decide(id, |g, now| {
                g.request_extension(
                    roles.require(g.role.as_str())?,
                    &caller.principal,
                    duration,
                    reason,
                    now,
                )
            })
            .await?;
        Ok(sg.grant)
    }

    /// Hands the credential to its holder, once (invariant 6), with the grant as it was checked.
    pub async fn reveal(&self, caller: &Caller, id: GrantId) -> Result<Delivered, BrokerError> {
        let sg = self.load(id).await?;
        sg.grant.check_reveal(&caller.principal, self.clock.now())?;
        self.require_step_up(
            caller,
            "credential",
            self.roles().get(sg.grant.role.as_str()),
        )?;
        let sealed = self
            .store
            .deliver_credential(id, &caller.principal, self.clock.now())
            .await?;
        let plain = self
            .sealer()
            .open(&sealed.ciphertext, &credential_context(id))?;
        let text = String::from_utf8(plain).map_err(|_| crate::sealing::SealError::Open)?;
        tracing::info!(grant = %id, fingerprint = %sealed.fingerprint, "credential delivered");
        Ok(Delivered {
            credential: Secret::new(text),
            kind: sg.grant.target.kind(),
            expires_at: sealed.expires_at,
        })
    }

    pub async fn grant_for(&self, caller: &Caller, id: GrantId) -> Result<Grant, BrokerError> {
        let sg = self.load(id).await?;
        let roles = self.roles();
        if !visible(&sg.grant, &roles, &self.policies(), &caller.principal) {
            return Err(DomainError::NotAllowed {
                principal: caller.principal.name.to_string(),
                action: "see",
                grant: id.to_string(),
            }
            .into());
        }
        Ok(sg.grant)
    }

    pub async fn grants_for(
        &self,
        caller: &Caller,
        state: Option<&str>,
    ) -> Result<Vec<Grant>, BrokerError> {
        if let Some(s) = state {
            breakglass_core::StateKind::parse(s)?;
        }
        let (roles, policies) = (self.roles(), self.policies());
        Ok(self
            .store
            .grants(state, LIST_LIMIT)
            .await?
            .into_iter()
            .map(|sg| sg.grant)
            .filter(|g| visible(g, &roles, &policies, &caller.principal))
            .collect())
    }

    /// The reaper's pass: expire every active grant whose window has closed, and time out
    /// requests nobody approved in time. One grant's failure does not hold up the others.
    pub async fn reap(&self) -> Result<(), BrokerError> {
        use futures_util::StreamExt as _;
        let now = self.clock.now();
        let mut first_error = None;
        let due = self.store.due_for_expiry(now).await?;
        // Grants are expired several at a time: one slow or unreachable target must not hold up
        // the end of every other grant due in the same pass.
        let expiries = futures_util::stream::iter(due)
            .map(|sg| async move {
                let id = sg.grant.id;
                (id, self.expire(sg, now).await)
            })
            .buffer_unordered(REAP_CONCURRENCY)
            .collect::<Vec<_>>();
        let mut retry_error = None;
        let retries = self.retry_revocations(now, &mut retry_error);
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
        let roles = self.roles();
        // Only requests older than the shortest TTL can be due: the reaper runs every 250 ms and
        // must not read every pending request each time.
        let cutoff = Timestamp::from_unix_millis(
            now.unix_millis() - roles.shortest_request_ttl().as_millis(),
        );
        for sg in self.store.requested_before(cutoff).await? {
            let ttl = roles.request_ttl(sg.grant.role.as_str());
            let Some(tr) = sg.grant.time_out(ttl, now) else {
                continue;
            };
            match self
                .store
                .update_grant(&tr.grant, sg.version, None, &tr.events, now)
                .await
            {
                Ok(()) | Err(StoreError::Conflict) => {}
                Err(e) => {
                    first_error.get_or_insert(e.into());
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Retries the revocations a target refused, each on its own backoff schedule, plus any
    /// grant left `revoking` for a while with no schedule here (by a crash, or by another replica
    /// that stopped).
    async fn retry_revocations(&self, now: Timestamp, first_error: &mut Option<BrokerError>) {
        let revoking = match self.store.grants_in_states(&["revoking"]).await {
            Ok(r) => r,
            Err(e) => {
                first_error.get_or_insert(e.into());
                return;
            }
        };
        use futures_util::StreamExt as _;
        let due = revoking
            .into_iter()
            .filter(|sg| match self.retry_state(sg.grant.id) {
                Some(r) => r.next_at <= now,
                // A revocation in flight right now (an API call, another replica) is left to
                // finish; one untouched for a while is stuck and taken over.
                None => now.unix_millis() - sg.grant.updated_at.unix_millis() >= STUCK_REVOKING_MS,
            });
        let results = futures_util::stream::iter(due)
            .map(|sg| async move {
                let id = sg.grant.id;
                (id, self.finish_revoking(sg, Actor::System("reaper")).await)
            })
            .buffer_unordered(REAP_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        for (id, res) in results {
            match res {
                Ok(_) | Err(BrokerError::Store(StoreError::Conflict)) => {}
                Err(e) => {
                    tracing::warn!(grant = %id, error = %e, "could not finish revoking; retrying");
                    first_error.get_or_insert(e);
                }
            }
        }
    }

    fn retry_state(&self, id: GrantId) -> Option<RetryState> {
        self.revoke_retries
            .lock()
            .ok()
            .and_then(|m| m.get(&id).copied())
    }

    fn forget_retry(&self, id: GrantId) {
        if let Ok(mut m) = self.revoke_retries.lock() {
            m.remove(&id);
        }
    }

    /// Records one more failed attempt and when to try next: exponential from 1 s, capped at
    /// 60 s, with up to 25% random jitter so replicas and grants do not retry in lockstep.
    fn schedule_retry(&self, id: GrantId, now: Timestamp) -> RetryState {
        let mut map = match self.revoke_retries.lock() {
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

    /// The reconciler's sweep of the targets: every privilege this installation created that no
    /// live grant stands behind is removed and audited (`target.orphan_removed`). The targets are
    /// listed before the grants are read, so a privilege whose grant was still being activated is
    /// seen with its grant; one whose grant ended only moments ago is left for the next sweep,
    /// since its own revocation may still be finishing.
    pub async fn sweep_orphans(&self) -> Result<usize, BrokerError> {
        let roles = self.roles();
        // Each place a provider lists once, however many roles point at it.
        let targets: std::collections::BTreeMap<String, &breakglass_core::Target> = roles
            .iter()
            .map(|r| (self.provider(&r.target).list_key(&r.target), &r.target))
            .collect();
        let mut found = Vec::new();
        for t in targets.into_values() {
            match self.provider(t).list(t).await {
                Ok(handles) => found.extend(handles.into_iter().map(|h| (t, h))),
                Err(e) => {
                    tracing::warn!(target = t.kind(), error = %e, "could not list the target's privileges; will retry")
                }
            }
        }
        if found.is_empty() {
            return Ok(0);
        }
        let live: std::collections::HashSet<String> = self
            .store
            .grants_in_states(&["activating", "active", "revoking"])
            .await?
            .into_iter()
            .filter_map(|sg| sg.grant.handle)
            .collect();
        let mut removed = 0;
        for (t, handle) in found {
            if live.contains(&handle) {
                continue;
            }
            let provider = self.provider(t);
            let mut for_grant = None;
            if let Some(id) = provider.grant_of(&handle)
                && let Some(sg) = self.store.grant(id).await?
            {
                let age = self.clock.now().unix_millis() - sg.grant.updated_at.unix_millis();
                if !sg.grant.state.is_ended() || age < STUCK_REVOKING_MS {
                    continue;
                }
                for_grant = Some(id);
            }
            if let Err(e) = provider.revoke(&handle).await {
                tracing::warn!(%handle, error = %e, "could not remove an orphaned privilege; will retry");
                continue;
            }
            self.record_removed(
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

    async fn expire(&self, sg: StoredGrant, now: Timestamp) -> Result<(), BrokerError> {
        let Some(tr) = sg.grant.begin_expiry(now) else {
            return Ok(());
        };
        match self
            .store
            .update_grant(&tr.grant, sg.version, None, &tr.events, now)
            .await
        {
            Ok(()) => {}
            // Someone else (a revoke, another pass) got there first.
            Err(StoreError::Conflict) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let stored = StoredGrant {
            grant: tr.grant,
            version: sg.version + 1,
        };
        self.finish_revoking(stored, Actor::System("reaper"))
            .await?;
        Ok(())
    }

    /// The reconciler's pass: finish or undo every intent left open (invariant 3), for example by
    /// a broker killed between recording an intent and hearing back from the provider; and check
    /// that every active grant's privilege is still where the broker believes it is.
    pub async fn reconcile(&self) -> Result<usize, BrokerError> {
        let actor = Actor::System("reconciler");
        let open = self
            .store
            // Revocations are the reaper's alone: it retries those a target refused on their
            // backoff and takes over any left `revoking` with no schedule (a crash, a stopped
            // replica). A second attempt from here could race it, and drop the privilege
            // unrecorded after it gave up.
            .grants_in_states(&["approved", "activating", "active"])
            .await?;
        let mut repaired = 0;
        for sg in open {
            let id = sg.grant.id;
            let from = sg.grant.state.name();
            let res = match sg.grant.state {
                GrantState::Approved { .. } => self.activate(sg, actor.clone()).await,
                GrantState::Activating { .. } => self.finish_activation(sg, actor.clone()).await,
                GrantState::Active { .. } if sg.grant.credential_due => {
                    self.reissue(sg, actor.clone()).await
                }
                GrantState::Active { expires_at, .. } => {
                    self.check_active(&sg.grant, expires_at).await;
                    continue;
                }
                _ => continue,
            };
            repaired += 1;
            match res {
                Ok(after) => {
                    tracing::info!(grant = %id, from, to = after.grant.state.name(), "reconciled open intent")
                }
                Err(BrokerError::Store(StoreError::Conflict)) => {}
                Err(e) => {
                    tracing::warn!(grant = %id, error = %e, "could not reconcile; will retry")
                }
            }
        }
        match self.sweep_orphans().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(removed = n, "orphaned privileges removed at targets"),
            Err(e) => tracing::warn!(error = %e, "orphan sweep incomplete; will retry"),
        }
        Ok(repaired)
    }

    /// Reports an active grant whose privilege the target no longer has before its end.
    async fn check_active(&self, g: &Grant, expires_at: Timestamp) {
        let Some(handle) = &g.handle else { return };
        let now = self.clock.now();
        match self.provider(&g.target).check(handle, now).await {
            // Targets keep time in whole seconds; allow for the rounding at the very end.
            Ok(breakglass_providers::Presence::Absent)
                if now.saturating_add(Duration::from_secs(1)) < expires_at =>
            {
                tracing::warn!(grant = %g.id, "privilege missing at the target before the grant's end");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(grant = %g.id, error = %e, "could not check the target"),
        }
    }

    /// Before anything moves a grant forward (an approval, an extension): its requester must
    /// still be allowed to request the role and be enabled, and the role must still grant what it
    /// granted when the request was made.
    async fn still_allowed(&self, caller: &Caller, g: &Grant) -> Result<(), BrokerError> {
        let id = g.id;
        let roles = self.roles();
        let role = roles.require(g.role.as_str())?;
        // Only someone who could act on the grant learns why it cannot go on; everyone else, and
        // every ended grant, gets the core's own refusal.
        let involved = role.may_approve(&caller.principal) || caller.principal.name == g.requester;
        if !involved || g.state.is_ended() {
            return Ok(());
        }
        let requester = self.store.principal(g.requester.as_str()).await?;
        if !requester
            .as_ref()
            .is_some_and(|p| role.may_request(p) && !p.disabled)
        {
            return Err(DomainError::RequesterNoLongerAllowed {
                principal: g.requester.to_string(),
                role: role.id.to_string(),
                grant: id.to_string(),
            }
            .into());
        }
        if role.target != g.target {
            return Err(DomainError::RoleChangedSinceRequest {
                role: role.id.to_string(),
                grant: id.to_string(),
            }
            .into());
        }
        Ok(())
    }

    /// After the caller's decision is committed, a conflict means the reconciler or the reaper
    /// carried the grant on meanwhile: that is success for the caller, so answer with the grant
    /// as it is now instead of an error.
    async fn settled(
        &self,
        id: GrantId,
        res: Result<StoredGrant, BrokerError>,
    ) -> Result<Grant, BrokerError> {
        match res {
            Ok(sg) => Ok(sg.grant),
            Err(BrokerError::Store(StoreError::Conflict)) => Ok(self.load(id).await?.grant),
            Err(e) => Err(e),
        }
    }

    /// Loads, decides and writes, retrying on concurrent changes.
    async fn decide(
        &self,
        id: GrantId,
        f: impl Fn(&Grant, Timestamp) -> Result<Transition, DomainError>,
    ) -> Result<(StoredGrant, Transition), BrokerError> {
        for _ in 0..MAX_ATTEMPTS {
            let sg = self.load(id).await?;
            let now = self.clock.now();
            let tr = f(&sg.grant, now)?;
            match self
                .store
                .update_grant(&tr.grant, sg.version, None, &tr.events, now)
                .await
            {
                Ok(()) => {
                    let stored = StoredGrant {
                        grant: tr.grant.clone(),
                        version: sg.version + 1,
                    };
                    return Ok((stored, tr));
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(BrokerError::Busy)
    }

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
    fn begin_activation(
        &self,
        g: &Grant,
        actor: Actor,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        let mut tr = g.begin_activation(actor, now)?;
        if let GrantState::Activating {
            started_at,
            expires_at,
        } = tr.grant.state
        {
            let handle = self
                .provider(&g.target)
                .handle(&Self::spec(g, started_at, expires_at));
            tr.grant.handle = Some(handle);
        }
        Ok(tr)
    }

    /// `approved` → `activating` (intent committed) → provider → `active`.
    async fn activate(&self, sg: StoredGrant, actor: Actor) -> Result<StoredGrant, BrokerError> {
        let now = self.clock.now();
        let tr = self.begin_activation(&sg.grant, actor.clone(), now)?;
        // INVARIANT(3): the intent is durable before the target is touched.
        self.store
            .update_grant(&tr.grant, sg.version, None, &tr.events, now)
            .await?;
        self.finish_activation(
            StoredGrant {
                grant: tr.grant,
                version: sg.version + 1,
            },
            actor,
        )
        .await
    }

    /// Completes an `activating` grant. Safe to repeat: providers' `grant` is idempotent.
    async fn finish_activation(
        &self,
        sg: StoredGrant,
        actor: Actor,
    ) -> Result<StoredGrant, BrokerError> {
        let GrantState::Activating {
            started_at,
            expires_at,
        } = sg.grant.state
        else {
            return Ok(sg);
        };
        let g = &sg.grant;
        let provider = self.provider(&g.target);
        let spec = Self::spec(g, started_at, expires_at);
        let now = self.clock.now();
        if now >= expires_at {
            // The window closed before activation completed: leave nothing behind and fail.
            let handle = g.handle.clone().unwrap_or_else(|| provider.handle(&spec));
            provider.revoke(&handle).await?;
            let tr = g.fail(
                actor,
                "activation was interrupted and its window ended before it completed",
                now,
            )?;
            self.store
                .update_grant(&tr.grant, sg.version, None, &tr.events, now)
                .await?;
            return Ok(StoredGrant {
                grant: tr.grant,
                version: sg.version + 1,
            });
        }
        match provider.grant(&spec).await {
            Ok(issued) => {
                let ciphertext = self.sealer().seal(
                    issued.credential.expose().as_bytes(),
                    &credential_context(g.id),
                )?;
                let now = self.clock.now();
                let tr = g.activated(actor, &issued.handle, &issued.fingerprint, now)?;
                let cred = NewCredential {
                    fingerprint: issued.fingerprint.clone(),
                    ciphertext,
                };
                self.store
                    .update_grant(&tr.grant, sg.version, Some(&cred), &tr.events, now)
                    .await?;
                self.metrics.activated();
                tracing::info!(grant = %g.id, fingerprint = %issued.fingerprint, expires_at = %expires_at, "grant active");
                // Every break-glass activation is sealed into a signed, published checkpoint.
                if let Err(e) = self.checkpoint().await {
                    tracing::error!(grant = %g.id, error = %e, "could not sign the audit checkpoint after activation");
                }
                Ok(StoredGrant {
                    grant: tr.grant,
                    version: sg.version + 1,
                })
            }
            Err(e) => {
                // Fail closed: the grant is `failed` with the reason (provider errors hold no
                // secret), and anything the provider may have half-done is revoked.
                tracing::warn!(grant = %g.id, error = %e, "provider could not grant");
                let handle = g.handle.clone().unwrap_or_else(|| provider.handle(&spec));
                if let Err(re) = provider.revoke(&handle).await {
                    tracing::warn!(grant = %g.id, error = %re, "could not clean up after the failed grant");
                }
                let tr = g.fail(
                    actor,
                    &format!("provider `{}` could not grant: {e}", provider.kind()),
                    now,
                )?;
                self.store
                    .update_grant(&tr.grant, sg.version, None, &tr.events, now)
                    .await?;
                Ok(StoredGrant {
                    grant: tr.grant,
                    version: sg.version + 1,
                })
            }
        }
    }

    /// Completes a `revoking` grant. If the provider fails, the grant stays `revoking` and is
    /// retried with backoff (by the reaper, and by the reconciler on any replica); the target's
    /// own expiry still bounds the privilege (invariant 1). A revocation that keeps failing past
    /// `revoke_give_up` marks the grant `failed` with the reason, and the orphan sweep keeps
    /// trying to remove what is left at the target.
    async fn finish_revoking(
        &self,
        sg: StoredGrant,
        actor: Actor,
    ) -> Result<StoredGrant, BrokerError> {
        let GrantState::Revoking { expires_at, .. } = sg.grant.state else {
            return Ok(sg);
        };
        let g = &sg.grant;
        // No handle means the activation intent was never recorded: nothing reached the target.
        if let Some(handle) = &g.handle
            && let Err(e) = self.provider(&g.target).revoke(handle).await
        {
            let now = self.clock.now();
            let since = now.unix_millis().saturating_sub(g.updated_at.unix_millis());
            let give_up = i64::try_from(self.revoke_give_up.as_millis()).unwrap_or(i64::MAX);
            if since >= give_up {
                self.forget_retry(g.id);
                tracing::error!(grant = %g.id, error = %e, "revocation kept failing; marking the grant failed");
                let tr = g.fail(
                    actor,
                    &format!(
                        "revocation at the target kept failing for {}s: {e}; the target still ends access on its own at {expires_at}, and the reconciler keeps trying to remove what is left",
                        since / 1000
                    ),
                    now,
                )?;
                self.store
                    .update_grant(&tr.grant, sg.version, None, &tr.events, now)
                    .await?;
                return Ok(StoredGrant {
                    grant: tr.grant,
                    version: sg.version + 1,
                });
            }
            let retry = self.schedule_retry(g.id, now);
            self.metrics.revoke_retry_scheduled();
            tracing::warn!(grant = %g.id, error = %e, attempts = retry.attempts, next_attempt_at = %retry.next_at, "provider could not revoke; will retry");
            return Ok(sg);
        }
        self.forget_retry(g.id);
        let now = self.clock.now();
        let tr = g.finish_revoke(actor.clone(), now)?;
        match self
            .store
            .update_grant(&tr.grant, sg.version, None, &tr.events, now)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                self.record_late_removal(&sg.grant, actor).await?;
                return Err(StoreError::Conflict.into());
            }
            Err(e) => return Err(e.into()),
        }
        self.metrics.ended(&tr.grant.state);
        tracing::info!(grant = %g.id, state = tr.grant.state.name(), "grant ended");
        Ok(StoredGrant {
            grant: tr.grant,
            version: sg.version + 1,
        })
    }

    /// A revocation that reached the target after someone else had already ended the grant, for
    /// example after another attempt gave up and marked it `failed`: the privilege is gone now, and
    /// the log must say so, or it would claim a privilege is left that no longer exists.
    async fn record_late_removal(&self, g: &Grant, actor: Actor) -> Result<(), BrokerError> {
        let Some(handle) = &g.handle else {
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
    async fn record_removed(
        &self,
        actor: Actor,
        target: &str,
        handle: &str,
        for_grant: Option<GrantId>,
    ) -> Result<(), BrokerError> {
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
    async fn reissue(&self, sg: StoredGrant, actor: Actor) -> Result<StoredGrant, BrokerError> {
        let GrantState::Active { expires_at, .. } = sg.grant.state else {
            return Ok(sg);
        };
        let now = self.clock.now();
        let g = &sg.grant;
        let issued = self
            .provider(&g.target)
            .grant(&Self::spec(g, now, expires_at))
            .await?;
        let ciphertext = self.sealer().seal(
            issued.credential.expose().as_bytes(),
            &credential_context(g.id),
        )?;
        let tr = g.credential_reissued(actor, &issued.handle, &issued.fingerprint, now)?;
        let cred = NewCredential {
            fingerprint: issued.fingerprint,
            ciphertext,
        };
        self.store
            .update_grant(&tr.grant, sg.version, Some(&cred), &tr.events, now)
            .await?;
        Ok(StoredGrant {
            grant: tr.grant,
            version: sg.version + 1,
        })
    }
}
