//! What people ask of grants: request (or self-activate in an emergency), approve, deny, cancel,
//! revoke, extend, collect the credential, and read. Every check comes from the caller's action
//! (its scope was checked by the route; policy and step-up here, once the role and whose grant it
//! is are known), and the core decides the rest.

use breakglass_core::grant::{RequestInput, overdue_emergency_review};
use breakglass_core::lockdown::Refused;
use breakglass_core::{Actor, DomainError, Duration, Grant, GrantId, GrantState, StateKind};
use breakglass_providers::Secret;
use breakglass_store::StoredGrant;

use super::lifecycle::credential_context;
use super::{Delivered, Grants, LIST_LIMIT, visible};
use crate::error::ServiceError;
use crate::governance::attestations;
use crate::signin::Caller;
use crate::startup::sealing::SealError;

/// Where a disabled requester's grants still need ending.
const LIVE: [StateKind; 4] = [
    StateKind::Requested,
    StateKind::Approved,
    StateKind::Activating,
    StateKind::Active,
];

fn new_id() -> Result<GrantId, ServiceError> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|_| SealError::Random)?;
    Ok(GrantId::from_bytes(id))
}

impl Grants {
    pub async fn request(
        &self,
        caller: &Caller,
        role: &str,
        input: RequestInput,
    ) -> Result<Grant, ServiceError> {
        let roles = self.catalog.roles();
        let role = roles.require(role)?;
        self.refuse_if_locked_down(role.id.as_str(), Refused::Request)
            .await?;
        let now = self.clock.now();
        // The core's refusal (not a requester, a bad field) says most precisely what is wrong;
        // policy is asked about what the role file allows, and can only narrow it.
        let tr = Grant::request(new_id()?, role, &caller.principal, input, now)?;
        self.access
            .check(caller, caller.action, Some(role), false)?;
        // A lapsed or expired role that disables on lapse takes no new requests.
        attestations::check_request(self.store.as_ref(), role, now).await?;
        self.insert(&tr, now).await?;
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
    ) -> Result<Grant, ServiceError> {
        let roles = self.catalog.roles();
        let role = roles.require(role)?;
        self.refuse_if_locked_down(role.id.as_str(), Refused::Emergency)
            .await?;
        self.access
            .check(caller, caller.action.emergency(), Some(role), false)?;
        let now = self.clock.now();
        // Emergency ones included: the role's owner must attest it (or fix its end date) first.
        attestations::check_request(self.store.as_ref(), role, now).await?;
        if role.emergency.is_some() {
            let earlier: Vec<Grant> = self
                .store
                .grants_for(role.id.as_str(), caller.principal.name.as_str())
                .await?
                .into_iter()
                .map(|sg| sg.grant)
                .collect();
            overdue_emergency_review(role, &caller.principal, &earlier, now)?;
        }
        let tr = Grant::request_emergency(new_id()?, role, &caller.principal, input, now)?;
        let actor = Actor::User(caller.principal.name.clone());
        // The request and the activation intent commit together: the grant is never seen waiting.
        let mut next = self.begin_activation(&tr.grant, actor.clone(), now)?;
        next.events = tr.events.into_iter().chain(next.events).collect();
        self.insert(&next, now).await?;
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

    /// Policy's and the step-up's say on an approval or a denial. Someone the role file does not
    /// make an approver, and a requester deciding their own request, get the core's more precise
    /// refusal instead (policy can only narrow who approves).
    fn may_decide(&self, caller: &Caller, g: &Grant) -> Result<(), ServiceError> {
        let roles = self.catalog.roles();
        let own = g.requester == caller.principal.name;
        match roles.get(g.role.as_str()) {
            Some(role) if role.may_approve(&caller.principal) && !own => {
                Ok(self.access.check(caller, caller.action, Some(role), own)?)
            }
            _ => Ok(()),
        }
    }

    /// Before anything moves a grant forward: the core's rule, over the requester as stored now.
    async fn still_allowed(&self, caller: &Caller, g: &Grant) -> Result<(), ServiceError> {
        let roles = self.catalog.roles();
        let role = roles.require(g.role.as_str())?;
        let requester = self.store.principal(g.requester.as_str()).await?;
        Ok(g.check_still_allowed(role, &caller.principal, requester.as_ref())?)
    }

    /// Approves a request (activating it once the quorum is reached) or a pending extension
    /// (re-issuing the credential with the new end once approved).
    pub async fn approve(
        &self,
        caller: &Caller,
        id: GrantId,
        comment: Option<String>,
    ) -> Result<Grant, ServiceError> {
        let g = self.load(id).await?.grant;
        self.may_decide(caller, &g)?;
        self.still_allowed(caller, &g).await?;
        self.refuse_if_locked_down(g.role.as_str(), Refused::Approval)
            .await?;
        let roles = self.catalog.roles();
        // A request still waiting when its role lapsed is not activated either (an extension of
        // a grant already active is not a new privilege, and goes on).
        if g.state == GrantState::Requested {
            attestations::check_request(
                self.store.as_ref(),
                roles.require(g.role.as_str())?,
                self.clock.now(),
            )
            .await?;
        }
        let actor = Actor::User(caller.principal.name.clone());
        let sg = self
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
        if sg.grant.credential_due() {
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
    ) -> Result<Grant, ServiceError> {
        let g = self.load(id).await?.grant;
        self.may_decide(caller, &g)?;
        let roles = self.catalog.roles();
        let sg = self
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

    /// The requester withdraws their request; an administrator may withdraw anyone's, with a
    /// fresh step-up.
    pub async fn cancel(&self, caller: &Caller, id: GrantId) -> Result<Grant, ServiceError> {
        let g = self.load(id).await?.grant;
        if g.requester != caller.principal.name && caller.principal.is_admin() {
            let roles = self.catalog.roles();
            self.access.check(
                caller,
                caller.action.on_others(),
                roles.get(g.role.as_str()),
                false,
            )?;
        }
        let sg = self
            .decide(id, |g, now| g.cancel(&caller.principal, now))
            .await?;
        Ok(sg.grant)
    }

    /// Ends a grant early. Ending one's own never waits for a second factor; ending someone
    /// else's (as an approver, the role's owner or an administrator) needs one.
    pub async fn revoke(
        &self,
        caller: &Caller,
        id: GrantId,
        reason: &str,
    ) -> Result<Grant, ServiceError> {
        let g = self.load(id).await?.grant;
        let own = g.requester == caller.principal.name;
        let action = if own {
            caller.action
        } else {
            caller.action.on_others()
        };
        let roles = self.catalog.roles();
        let role = roles.get(g.role.as_str());
        self.access.scope(caller, action)?;
        self.access
            .policy(caller, action, Some(g.role.as_str()), own)?;
        self.access.step_up(caller, action, role)?;
        let sg = self
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
    ) -> Result<Grant, ServiceError> {
        let g = self.load(id).await?.grant;
        let own = g.requester == caller.principal.name;
        let roles = self.catalog.roles();
        self.access
            .policy(caller, caller.action, Some(g.role.as_str()), own)?;
        self.access
            .step_up(caller, caller.action, roles.get(g.role.as_str()))?;
        self.still_allowed(caller, &g).await?;
        self.refuse_if_locked_down(g.role.as_str(), Refused::Extension)
            .await?;
        let sg = self
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

    /// Hands the credential to its holder, once (invariant 6).
    pub async fn reveal(&self, caller: &Caller, id: GrantId) -> Result<Delivered, ServiceError> {
        let sg = self.load(id).await?;
        sg.grant.check_reveal(&caller.principal, self.clock.now())?;
        let roles = self.catalog.roles();
        self.access
            .step_up(caller, caller.action, roles.get(sg.grant.role.as_str()))?;
        // The store re-reads the grant under its lock and lets the core decide again there, so
        // two collections racing each other cannot both succeed.
        let sealed = self
            .store
            .deliver_credential(id, &caller.principal, self.clock.now())
            .await?;
        let plain = self
            .sealer
            .open(&sealed.ciphertext, &credential_context(id))?;
        let text = String::from_utf8(plain).map_err(|_| SealError::Open)?;
        tracing::info!(grant = %id, fingerprint = %sealed.fingerprint, "credential delivered");
        Ok(Delivered {
            credential: Secret::new(text),
            kind: sg.grant.target.kind(),
            expires_at: sealed.expires_at,
        })
    }

    pub async fn show(&self, caller: &Caller, id: GrantId) -> Result<Grant, ServiceError> {
        let sg = self.load(id).await?;
        let roles = self.catalog.roles();
        if !visible(
            &sg.grant,
            &roles,
            &self.catalog.policies(),
            &caller.principal,
        ) {
            return Err(DomainError::NotAllowed {
                principal: caller.principal.name.to_string(),
                action: "see",
                grant: id.to_string(),
            }
            .into());
        }
        Ok(sg.grant)
    }

    pub async fn list(
        &self,
        caller: &Caller,
        state: Option<&str>,
    ) -> Result<Vec<Grant>, ServiceError> {
        let state = state.map(StateKind::parse).transpose()?;
        let (roles, policies) = (self.catalog.roles(), self.catalog.policies());
        Ok(self
            .store
            .grants(state, LIST_LIMIT)
            .await?
            .into_iter()
            .map(|sg| sg.grant)
            .filter(|g| visible(g, &roles, &policies, &caller.principal))
            .collect())
    }

    /// Ends every live grant of `requester`, whose account `by` has just disabled: privilege at a
    /// target is revoked there (cause `principal_disabled`), and a request still waiting is
    /// cancelled. Returns how many grants it ended. The disable is already committed, so nothing
    /// here fails it: a grant that cannot be ended now is logged, and the reconciler ends it on its
    /// next pass (it ends any live grant of a disabled requester it finds).
    pub async fn end_for_disabled(&self, by: &Actor, requester: &str) -> usize {
        let live = match self.in_states(&LIVE).await {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!(%requester, error = %e, "could not read the grants of a disabled requester; the reconciler will end them");
                return 0;
            }
        };
        let mut ended = 0;
        for sg in live {
            if sg.grant.requester.as_str() != requester {
                continue;
            }
            let id = sg.grant.id;
            match self.end_one_for_disabled(sg, by).await {
                Ok(true) => ended += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(grant = %id, error = %e, "could not end a disabled requester's grant; the reconciler will retry");
                }
            }
        }
        ended
    }

    pub(crate) async fn end_one_for_disabled(
        &self,
        sg: StoredGrant,
        by: &Actor,
    ) -> Result<bool, ServiceError> {
        let now = self.clock.now();
        let Some(tr) = sg.grant.end_for_disabled_requester(by, now) else {
            return Ok(false);
        };
        let id = sg.grant.id;
        let stored = match self.write(&sg, tr, None, now).await {
            Ok(s) => s,
            // Someone else moved it on; the next pass looks again.
            Err(breakglass_store::StoreError::Conflict) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        tracing::warn!(grant = %id, requester = %stored.grant.requester, "ending the grant of a disabled requester");
        if matches!(stored.grant.state, GrantState::Revoking { .. }) {
            let res = self.finish_revoking(stored, by.clone()).await;
            self.settled(id, res).await?;
        }
        Ok(true)
    }
}
