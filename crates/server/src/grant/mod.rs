//! Grants: the commands people give about them ([`commands`]) and their life at the targets
//! ([`lifecycle`]): activation and revocation, intent first (invariant 3).
//!
//! Each command loads the grant, lets the core decide, writes the decision with its audit events,
//! and only then talks to the provider. A concurrent change to the same grant makes the write
//! fail; the command reloads and decides again. The reaper and the reconciler (in `workers/`)
//! drive the same lifecycle on their own schedule. Every grant written tells the workers that
//! sleep until their next due item about the work it brings ([`Grants::wake_for`]).

mod commands;
mod lifecycle;

use std::sync::Arc;

use breakglass_core::{
    Clock, DomainError, Grant, GrantId, GrantState, PolicyAction, Principal, RoleSet, StateKind,
    Target, Timestamp, Transition,
};
use breakglass_providers::{PostgresProvider, Provider, Secret, TokenProvider};
use breakglass_store::{NewCredential, Store, StoreError, StoredGrant};

use crate::alert::Alerting;
use crate::audit::checkpoint::Checkpointer;
use crate::error::ServiceError;
use crate::metrics::Metrics;
use crate::policy::{Access, Catalog, Policies, Query};
use crate::startup::sealing::Sealer;
use crate::workers::wake::Alarms;

pub(crate) use lifecycle::{RetrySchedule, credential_context};

/// How many times a command re-decides after losing a race on the same grant.
const MAX_ATTEMPTS: usize = 8;
/// The most grants one `grants list` returns.
pub(crate) const LIST_LIMIT: u32 = 500;
/// A grant left `revoking` (or just ended) this long is no longer in anyone's hands: the reaper
/// takes over its revocation, and the orphan sweep may clean up after it.
pub(crate) const SETTLED_MS: i64 = 10_000;

/// A credential handed to its holder, with the end it carries.
#[derive(Debug)]
pub struct Delivered {
    pub credential: Secret,
    pub kind: &'static str,
    pub expires_at: Option<Timestamp>,
}

/// The provider for each kind of target.
#[derive(Debug)]
pub struct Providers {
    pub tokens: Arc<TokenProvider>,
    pub postgres: Arc<PostgresProvider>,
}

impl Providers {
    pub fn new(tokens: Arc<TokenProvider>) -> Self {
        // The marker names this installation in what it leaves at targets, so the orphan sweep
        // never touches what another installation (or anyone else) created. The token key id is
        // the same on every replica (the key is in the shared store) and differs between
        // installations.
        let postgres = Arc::new(PostgresProvider::new(&format!(
            "breakglass:{}",
            tokens.kid()
        )));
        Self { tokens, postgres }
    }

    pub fn for_target(&self, target: &Target) -> Arc<dyn Provider> {
        match target {
            Target::Token { .. } => self.tokens.clone(),
            Target::Postgres { .. } => self.postgres.clone(),
        }
    }
}

/// The grant service.
pub struct Grants {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) access: Arc<Access>,
    pub(crate) providers: Providers,
    pub(crate) sealer: Arc<Sealer>,
    pub(crate) checkpoints: Arc<Checkpointer>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) retries: RetrySchedule,
    /// The workers to wake when a write brings work due earlier than they expect.
    pub(crate) alarms: Arc<Alarms>,
    /// The alert rules in force, for `[alerts] expiring_soon` (how long before a grant's end its
    /// holder is warned), which a config reload may change.
    alerting: Arc<Alerting>,
}

/// What the grant service is built from.
pub struct GrantsParts {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub catalog: Arc<Catalog>,
    pub access: Arc<Access>,
    pub providers: Providers,
    pub sealer: Arc<Sealer>,
    pub checkpoints: Arc<Checkpointer>,
    pub metrics: Arc<Metrics>,
    /// How long a refused revocation is retried before the grant is marked `failed`.
    pub revoke_give_up: std::time::Duration,
    pub alarms: Arc<Alarms>,
    pub alerting: Arc<Alerting>,
}

impl Grants {
    pub fn new(p: GrantsParts) -> Self {
        Self {
            store: p.store,
            clock: p.clock,
            catalog: p.catalog,
            access: p.access,
            providers: p.providers,
            sealer: p.sealer,
            checkpoints: p.checkpoints,
            metrics: p.metrics,
            retries: RetrySchedule::new(p.revoke_give_up),
            alarms: p.alarms,
            alerting: p.alerting,
        }
    }

    pub fn providers(&self) -> &Providers {
        &self.providers
    }

    pub(crate) async fn load(&self, id: GrantId) -> Result<StoredGrant, ServiceError> {
        self.store.grant(id).await?.ok_or_else(|| {
            DomainError::UnknownGrant {
                grant: id.to_string(),
            }
            .into()
        })
    }

    /// Every grant in one of `states`, oldest first.
    pub(crate) async fn in_states(
        &self,
        states: &[StateKind],
    ) -> Result<Vec<StoredGrant>, ServiceError> {
        Ok(self.store.grants_in_states(states).await?)
    }

    /// Writes a decision over the version it was made from: the grant as stored now.
    pub(crate) async fn write(
        &self,
        from: &StoredGrant,
        tr: Transition,
        credential: Option<&NewCredential>,
        now: Timestamp,
    ) -> Result<StoredGrant, StoreError> {
        let stored = self
            .store
            .update_grant(&tr.grant, from.version, credential, &tr.events, now)
            .await?;
        self.wake_for(&stored.grant);
        Ok(stored)
    }

    /// Adds a new grant.
    pub(crate) async fn insert(&self, tr: &Transition, now: Timestamp) -> Result<(), StoreError> {
        self.store.insert_grant(&tr.grant, &tr.events, now).await?;
        self.wake_for(&tr.grant);
        Ok(())
    }

    /// Tells the workers about the work `g`, just committed, brings: its end (to the reaper, and
    /// the warning before it to the alert dispatcher), its request's time-out, or, while it is
    /// revoking, the moment the reaper would take the revocation over. A worker expecting
    /// earlier work anyway is left asleep.
    pub(crate) fn wake_for(&self, g: &Grant) {
        // Every change to a drill's grant may move the drill on.
        if g.drill {
            self.alarms.drills.ring();
        }
        match &g.state {
            GrantState::Requested => {
                let ttl = self.catalog.roles().request_ttl(g.role.as_str());
                self.alarms
                    .reaper
                    .due_at(g.requested_at.saturating_add(ttl));
            }
            GrantState::Active {
                expires_at,
                expiry_warned,
                ..
            } => {
                self.alarms.reaper.due_at(*expires_at);
                if let Some(window) = self.alerting.expiring_soon()
                    && *expiry_warned != Some(*expires_at)
                {
                    let at = expires_at.unix_millis().saturating_sub(window.as_millis());
                    self.alarms.alerts.due_at(Timestamp::from_unix_millis(at));
                }
            }
            GrantState::Revoking { .. } => {
                let at = g.updated_at.unix_millis().saturating_add(SETTLED_MS);
                self.alarms.reaper.due_at(Timestamp::from_unix_millis(at));
            }
            _ => {}
        }
    }

    /// Loads, decides and writes, retrying on concurrent changes.
    async fn decide(
        &self,
        id: GrantId,
        f: impl Fn(&Grant, Timestamp) -> Result<Transition, DomainError>,
    ) -> Result<StoredGrant, ServiceError> {
        for _ in 0..MAX_ATTEMPTS {
            let sg = self.load(id).await?;
            let now = self.clock.now();
            let tr = f(&sg.grant, now)?;
            match self.write(&sg, tr, None, now).await {
                Ok(stored) => return Ok(stored),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Busy)
    }

    /// After the caller's decision is committed, a conflict means the reconciler or the reaper
    /// carried the grant on meanwhile: that is success for the caller, so answer with the grant
    /// as it is now instead of an error.
    async fn settled(
        &self,
        id: GrantId,
        res: Result<StoredGrant, ServiceError>,
    ) -> Result<Grant, ServiceError> {
        match res {
            Ok(sg) => Ok(sg.grant),
            Err(e) if e.is_conflict() => Ok(self.load(id).await?.grant),
            Err(e) => Err(e),
        }
    }
}

/// The core's visibility rule, narrowed by policy (a `forbid` on `read` hides grants).
fn visible(g: &Grant, roles: &RoleSet, policies: &Policies, p: &Principal) -> bool {
    g.visible_to(roles.get(g.role.as_str()), p)
        && policies.is_allowed(&Query {
            principal: p,
            action: PolicyAction::Read,
            role: Some(g.role.as_str()),
            own: g.requester == p.name,
        })
}
