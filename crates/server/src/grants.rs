//! Grant operations: each loads the grant, asks the core to decide, writes the decision with its
//! audit events, and only then talks to the provider (intent first, invariant 3). A concurrent
//! change to the same grant makes the write fail; the operation reloads and decides again.

use breakglass_core::grant::RequestInput;
use breakglass_core::{
    Actor, DomainError, Duration, EventKind, Grant, GrantId, GrantState, Timestamp, Transition,
};
use breakglass_providers::{GrantSpec, Secret};
use breakglass_store::{NewCredential, StoreError, StoredGrant};

use crate::broker::{Broker, BrokerError, Caller};

/// How many times an operation re-decides after losing a race on the same grant.
const MAX_ATTEMPTS: usize = 8;
/// The most grants one `grants list` returns.
pub(crate) const LIST_LIMIT: u32 = 500;

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
        let tr = Grant::request(GrantId::from_bytes(id), role, &caller.principal, input, now)?;
        self.store.insert_grant(&tr.grant, &tr.events, now).await?;
        tracing::info!(grant = %tr.grant.id, role = %role.id, requester = %caller.principal.name, "grant requested");
        Ok(tr.grant)
    }

    /// Approves a request (activating it once the quorum is reached) or a pending extension
    /// (re-issuing the credential with the new end once approved).
    pub async fn approve(
        &self,
        caller: &Caller,
        id: GrantId,
        comment: Option<String>,
    ) -> Result<Grant, BrokerError> {
        let roles = self.roles();
        let actor = Actor::User(caller.principal.name.clone());
        let (sg, tr) = self
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
                    let next = tr.grant.begin_activation(actor.clone(), now)?;
                    tr.events.extend(next.events);
                    tr.grant = next.grant;
                }
                Ok(tr)
            })
            .await?;
        if matches!(sg.grant.state, GrantState::Activating { .. }) {
            return Ok(self.finish_activation(sg, actor).await?.grant);
        }
        if tr
            .events
            .iter()
            .any(|e| matches!(e.kind, EventKind::GrantExtended { .. }))
        {
            return Ok(self.reissue(sg, actor).await?.grant);
        }
        Ok(sg.grant)
    }

    pub async fn deny(
        &self,
        caller: &Caller,
        id: GrantId,
        reason: &str,
    ) -> Result<Grant, BrokerError> {
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
        let roles = self.roles();
        let (sg, _) = self
            .decide(id, |g, now| {
                g.begin_revoke(roles.get(g.role.as_str()), &caller.principal, reason, now)
            })
            .await?;
        tracing::info!(grant = %id, by = %caller.principal.name, "grant revoking");
        Ok(self
            .finish_revoking(sg, Actor::User(caller.principal.name.clone()))
            .await?
            .grant)
    }

    pub async fn extend(
        &self,
        caller: &Caller,
        id: GrantId,
        duration: Duration,
        reason: &str,
    ) -> Result<Grant, BrokerError> {
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

    /// Hands the credential to its holder, once (invariant 6).
    pub async fn reveal(&self, caller: &Caller, id: GrantId) -> Result<Secret, BrokerError> {
        let sg = self.load(id).await?;
        sg.grant.check_reveal(&caller.principal)?;
        let sealed = self
            .store
            .deliver_credential(id, caller.principal.name.as_str(), self.clock.now())
            .await?;
        let plain = self
            .sealer()
            .open(&sealed.ciphertext, &credential_context(id))?;
        let text = String::from_utf8(plain).map_err(|_| crate::sealing::SealError::Open)?;
        tracing::info!(grant = %id, fingerprint = %sealed.fingerprint, "credential delivered");
        Ok(Secret::new(text))
    }

    pub async fn grant_for(&self, caller: &Caller, id: GrantId) -> Result<Grant, BrokerError> {
        let sg = self.load(id).await?;
        let roles = self.roles();
        if !sg
            .grant
            .visible_to(roles.get(sg.grant.role.as_str()), &caller.principal)
        {
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
        if let Some(s) = state
            && !GrantState::NAMES.contains(&s)
        {
            return Err(DomainError::InvalidField {
                field: "state",
                problem: format!(
                    "`{}` is not one of {}",
                    s.chars().take(40).collect::<String>(),
                    GrantState::NAMES.join(", ")
                ),
            }
            .into());
        }
        let roles = self.roles();
        Ok(self
            .store
            .grants(state, LIST_LIMIT)
            .await?
            .into_iter()
            .map(|sg| sg.grant)
            .filter(|g| g.visible_to(roles.get(g.role.as_str()), &caller.principal))
            .collect())
    }

    /// The reaper's pass: expire every active grant whose window has closed, and time out
    /// requests nobody approved in time.
    pub async fn reap(&self) -> Result<(), BrokerError> {
        let now = self.clock.now();
        for sg in self.store.due_for_expiry(now).await? {
            let Some(tr) = sg.grant.begin_expiry(now) else {
                continue;
            };
            match self
                .store
                .update_grant(&tr.grant, sg.version, None, &tr.events, now)
                .await
            {
                Ok(()) => {}
                // Someone else (a revoke, another pass) got there first.
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
            self.finish_revoking(
                StoredGrant {
                    grant: tr.grant,
                    version: sg.version + 1,
                },
                Actor::System("reaper"),
            )
            .await?;
        }
        let roles = self.roles();
        for sg in self.store.grants_in_states(&["requested"]).await? {
            let ttl = roles
                .get(sg.grant.role.as_str())
                .map_or(Duration::from_secs(3600), |r| r.request_ttl);
            let Some(tr) = sg.grant.time_out(ttl, now) else {
                continue;
            };
            match self
                .store
                .update_grant(&tr.grant, sg.version, None, &tr.events, now)
                .await
            {
                Ok(()) | Err(StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The reconciler's pass: finish or undo every intent left open (invariant 3), for example by
    /// a broker killed between recording an intent and hearing back from the provider.
    pub async fn reconcile(&self) -> Result<usize, BrokerError> {
        let actor = Actor::System("reconciler");
        let open = self
            .store
            .grants_in_states(&["approved", "activating", "revoking"])
            .await?;
        let n = open.len();
        for sg in open {
            let id = sg.grant.id;
            let state = sg.grant.state.name();
            let res = match sg.grant.state {
                GrantState::Approved { .. } => self.activate(sg, actor.clone()).await,
                GrantState::Activating { .. } => self.finish_activation(sg, actor.clone()).await,
                _ => self.finish_revoking(sg, actor.clone()).await,
            };
            match res {
                Ok(after) => {
                    tracing::info!(grant = %id, from = state, to = after.grant.state.name(), "reconciled open intent")
                }
                Err(BrokerError::Store(StoreError::Conflict)) => {}
                Err(e) => {
                    tracing::warn!(grant = %id, error = %e, "could not reconcile; will retry")
                }
            }
        }
        Ok(n)
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

    /// `approved` → `activating` (intent committed) → provider → `active`.
    async fn activate(&self, sg: StoredGrant, actor: Actor) -> Result<StoredGrant, BrokerError> {
        let now = self.clock.now();
        let tr = sg.grant.begin_activation(actor.clone(), now)?;
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
        let spec = GrantSpec {
            grant: g.id,
            principal: g.requester.as_str(),
            target: &g.target,
            not_before: started_at,
            expires_at,
        };
        let now = self.clock.now();
        if now >= expires_at {
            // The window closed before activation completed: leave nothing behind and fail.
            if let Ok(issued) = provider.grant(&spec).await {
                provider.revoke(&issued.handle).await?;
            }
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
                tracing::info!(grant = %g.id, fingerprint = %issued.fingerprint, expires_at = %expires_at, "grant active");
                Ok(StoredGrant {
                    grant: tr.grant,
                    version: sg.version + 1,
                })
            }
            Err(e) => {
                tracing::warn!(grant = %g.id, error = %e, "provider could not grant");
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

    /// Completes a `revoking` grant. If the provider fails, the grant stays `revoking` and the
    /// reconciler tries again; the target's own expiry still bounds the privilege (invariant 1).
    async fn finish_revoking(
        &self,
        sg: StoredGrant,
        actor: Actor,
    ) -> Result<StoredGrant, BrokerError> {
        let GrantState::Revoking { expires_at, .. } = sg.grant.state else {
            return Ok(sg);
        };
        let g = &sg.grant;
        let provider = self.provider(&g.target);
        let handle = match &g.handle {
            Some(h) => h.clone(),
            None => {
                let not_before = Timestamp::from_unix_millis(
                    expires_at.unix_millis() - g.total_duration().as_millis(),
                );
                let spec = GrantSpec {
                    grant: g.id,
                    principal: g.requester.as_str(),
                    target: &g.target,
                    not_before,
                    expires_at,
                };
                provider.grant(&spec).await?.handle
            }
        };
        if let Err(e) = provider.revoke(&handle).await {
            tracing::warn!(grant = %g.id, error = %e, "provider could not revoke; will retry");
            return Ok(sg);
        }
        let now = self.clock.now();
        let tr = g.finish_revoke(actor, now)?;
        self.store
            .update_grant(&tr.grant, sg.version, None, &tr.events, now)
            .await?;
        tracing::info!(grant = %g.id, state = tr.grant.state.name(), "grant ended");
        Ok(StoredGrant {
            grant: tr.grant,
            version: sg.version + 1,
        })
    }

    /// After an approved extension: a fresh credential valid to the new end, shown once again.
    async fn reissue(&self, sg: StoredGrant, actor: Actor) -> Result<StoredGrant, BrokerError> {
        let GrantState::Active { expires_at, .. } = sg.grant.state else {
            return Ok(sg);
        };
        let now = self.clock.now();
        let mut g = sg.grant.clone();
        let provider = self.provider(&g.target);
        let spec = GrantSpec {
            grant: g.id,
            principal: g.requester.as_str(),
            target: &g.target,
            not_before: now,
            expires_at,
        };
        let issued = provider.grant(&spec).await?;
        let ciphertext = self.sealer().seal(
            issued.credential.expose().as_bytes(),
            &credential_context(g.id),
        )?;
        let event = g.credential_issued(actor, &issued.fingerprint, expires_at);
        g.handle = Some(issued.handle.clone());
        g.updated_at = now;
        let cred = NewCredential {
            fingerprint: issued.fingerprint,
            ciphertext,
        };
        self.store
            .update_grant(&g, sg.version, Some(&cred), &[event], now)
            .await?;
        Ok(StoredGrant {
            grant: g,
            version: sg.version + 1,
        })
    }
}
