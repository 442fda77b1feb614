//! The lockdown switch: revoke everything in scope now and refuse every new request, emergency
//! ones included, until it is lifted. For the day the break-glass path itself is suspected.
//!
//! Engaging commits the lockdown and its `lockdown.engaged` event first; from that moment every
//! request, emergency request, approval and extension in scope is refused (`locked_down`). Then
//! every live grant in scope is ended through the grants' own intent path: each gets its
//! `revoking` intent (cause `lockdown`) written, then is revoked at its target (PostgreSQL
//! sessions terminated, as any revoke does), a bounded number at a time; a waiting request is
//! cancelled. A crash part-way loses nothing: the reconciler's pass ends any live grant it finds
//! in the scope of a lockdown in force ([`Grants::end_for_lockdowns`]), and the reaper finishes
//! any revocation left `revoking`, as it does for every revocation.

use breakglass_core::lockdown::{self, Refused};
use breakglass_core::{Actor, GrantId, GrantState, Lockdown, LockdownScope, Name, StateKind};
use breakglass_store::{StoreError, StoredGrant};
use futures_util::StreamExt as _;

use crate::app::App;
use crate::error::ServiceError;
use crate::grant::Grants;
use crate::signin::Caller;
use crate::startup::sealing::SealError;

/// How many grants a lockdown ends at once: enough to keep a target and the store busy, few
/// enough not to exhaust a target's connections (each PostgreSQL revoke opens one).
const CONCURRENCY: usize = 16;
/// How many times a change re-decides after losing a race.
const MAX_ATTEMPTS: usize = 8;
/// The states in which a grant holds, or may come to hold, privilege.
const LIVE: [StateKind; 4] = [
    StateKind::Requested,
    StateKind::Approved,
    StateKind::Activating,
    StateKind::Active,
];

/// What a lockdown did to the grants in its scope.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ended {
    /// Privilege revoked at its target.
    pub revoked: usize,
    /// Requests withdrawn before they were activated.
    pub cancelled: usize,
    /// Revocations the target refused for now: left `revoking`, retried by the reaper with
    /// backoff (the target's own expiry still ends them).
    pub retrying: usize,
}

impl Ended {
    fn add(mut self, o: Outcome) -> Self {
        match o {
            Outcome::Revoked => self.revoked += 1,
            Outcome::Cancelled => self.cancelled += 1,
            Outcome::Retrying => self.retrying += 1,
            Outcome::Untouched => {}
        }
        self
    }
}

/// What ending one grant came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Revoked,
    Cancelled,
    Retrying,
    /// Out of scope, already ending, or ended meanwhile by someone else.
    Untouched,
}

impl App {
    /// An administrator engages a lockdown of `role` (or, with `None`, of every role) because of
    /// `reason`; needs the `admin` scope, policy's `administer` and a fresh step-up. Returns the
    /// lockdown and what it did to the grants in scope.
    pub async fn engage_lockdown(
        &self,
        caller: &Caller,
        role: Option<&str>,
        reason: &str,
    ) -> Result<(Lockdown, Ended), ServiceError> {
        let roles = self.catalog.roles();
        let scope = match role {
            None => LockdownScope::All,
            Some(r) => LockdownScope::Role(roles.require(r)?.id.clone()),
        };
        let mut checked = false;
        let mut engaged = None;
        for _ in 0..MAX_ATTEMPTS {
            let in_force = self.store.lockdowns().await?;
            let now = self.clock.now();
            let (l, event) = lockdown::engage(
                &in_force,
                &roles,
                &caller.principal,
                scope.clone(),
                reason,
                new_id()?,
                now,
            )?;
            // The core's refusal (not an administrator, a bad reason) says most precisely what is
            // wrong; then policy and the step-up have their say.
            if !checked {
                self.access.check(caller, caller.action, None, false)?;
                checked = true;
            }
            // INVARIANT(2): the lockdown and its event commit together, before any grant is
            // touched; from here on, every request in scope is refused.
            if self.store.engage_lockdown(&l, &[event], now).await? {
                engaged = Some(l);
                break;
            }
        }
        let l = engaged.ok_or(ServiceError::Busy)?;
        tracing::warn!(lockdown = %l.id, scope = %l.scope.as_string(), by = %l.engaged_by, "lockdown engaged");
        let ended = self
            .grants
            .end_for_lockdown(&l, &Actor::User(caller.principal.name.clone()))
            .await?;
        tracing::warn!(lockdown = %l.id, revoked = ended.revoked, cancelled = ended.cancelled, retrying = ended.retrying, "lockdown enforced");
        Ok((l, ended))
    }

    /// An administrator lifts the lockdown of `role`, or (with `None`) every lockdown in force;
    /// the same needs as engaging. Returns the lockdowns lifted.
    pub async fn lift_lockdown(
        &self,
        caller: &Caller,
        role: Option<&str>,
        reason: Option<&str>,
    ) -> Result<Vec<Lockdown>, ServiceError> {
        // A role removed since it was locked down can still be lifted: the name need not be loaded.
        let scope = role
            .map(|r| r.parse::<Name>().map(LockdownScope::Role))
            .transpose()?;
        let mut checked = false;
        for _ in 0..MAX_ATTEMPTS {
            let in_force = self.store.lockdowns().await?;
            let (lifted, events) =
                lockdown::lift(&in_force, &caller.principal, scope.as_ref(), reason)?;
            if !checked {
                self.access.check(caller, caller.action, None, false)?;
                checked = true;
            }
            let ids: Vec<String> = lifted.iter().map(|l| l.id.clone()).collect();
            match self
                .store
                .lift_lockdowns(
                    &ids,
                    caller.principal.name.as_str(),
                    &events,
                    self.clock.now(),
                )
                .await
            {
                Ok(()) => {
                    tracing::warn!(lifted = ?ids, by = %caller.principal.name, "lockdown lifted");
                    return Ok(lifted);
                }
                // Someone lifted one of them meanwhile: decide again on what is in force now.
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Busy)
    }

    /// The lockdowns in force; anyone signed in may see them (a requester refused wants to know
    /// why, and until when).
    pub async fn lockdowns(&self, caller: &Caller) -> Result<Vec<Lockdown>, ServiceError> {
        self.access.check(caller, caller.action, None, false)?;
        Ok(self.store.lockdowns().await?)
    }
}

impl Grants {
    /// Refuses `what` for `role` while a lockdown covers it (`locked_down`).
    pub(crate) async fn refuse_if_locked_down(
        &self,
        role: &str,
        what: Refused,
    ) -> Result<(), ServiceError> {
        let in_force = self.store.lockdowns().await?;
        Ok(lockdown::refusal(&in_force, role, what)?)
    }

    /// Ends every live grant in the scope of a lockdown in force, as `actor`: what the
    /// reconciler runs each pass, so that a lockdown interrupted by a crash (or a request that
    /// slipped in while one was being engaged) is finished.
    pub(crate) async fn end_for_lockdowns(&self, actor: &Actor) -> Result<Ended, ServiceError> {
        let mut total = Ended::default();
        for l in self.store.lockdowns().await? {
            let e = self.end_for_lockdown(&l, actor).await?;
            total.revoked += e.revoked;
            total.cancelled += e.cancelled;
            total.retrying += e.retrying;
        }
        Ok(total)
    }

    /// Ends every live grant in `l`'s scope, [`CONCURRENCY`] at a time.
    pub(crate) async fn end_for_lockdown(
        &self,
        l: &Lockdown,
        actor: &Actor,
    ) -> Result<Ended, ServiceError> {
        let in_scope: Vec<StoredGrant> = self
            .in_states(&LIVE)
            .await?
            .into_iter()
            .filter(|sg| l.scope.covers(sg.grant.role.as_str()))
            .collect();
        let ended = futures_util::stream::iter(in_scope)
            .map(|sg| async move {
                let id = sg.grant.id;
                match self.end_one_for_lockdown(sg, l, actor).await {
                    Ok(o) => o,
                    Err(e) => {
                        // The lockdown is committed; the reconciler's next pass ends this one.
                        tracing::warn!(grant = %id, error = %e, "could not end a grant for the lockdown; the reconciler will retry");
                        Outcome::Retrying
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .fold(Ended::default(), |acc, o| async move { acc.add(o) })
            .await;
        Ok(ended)
    }

    async fn end_one_for_lockdown(
        &self,
        mut sg: StoredGrant,
        l: &Lockdown,
        actor: &Actor,
    ) -> Result<Outcome, ServiceError> {
        let id: GrantId = sg.grant.id;
        for _ in 0..MAX_ATTEMPTS {
            let now = self.clock.now();
            let Some(tr) = sg.grant.end_for_lockdown(l, actor, now) else {
                return Ok(Outcome::Untouched);
            };
            // INVARIANT(3): the intent to revoke is durable before the target is touched.
            let stored = match self.write(&sg, tr, None, now).await {
                Ok(s) => s,
                // It moved on meanwhile (activated, ended): decide again on it as it is now.
                Err(StoreError::Conflict) => {
                    sg = self.load(id).await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if !matches!(stored.grant.state, GrantState::Revoking { .. }) {
                return Ok(Outcome::Cancelled);
            }
            let after = match self.finish_revoking(stored, actor.clone()).await {
                Ok(after) => after.grant,
                // The reaper carried it on meanwhile.
                Err(e) if e.is_conflict() => self.load(id).await?.grant,
                Err(e) => return Err(e),
            };
            return Ok(match after.state {
                GrantState::Revoking { .. } => Outcome::Retrying,
                _ => Outcome::Revoked,
            });
        }
        Err(ServiceError::Busy)
    }
}

fn new_id() -> Result<String, ServiceError> {
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).map_err(|_| SealError::Random)?;
    Ok(id.iter().map(|b| format!("{b:02x}")).collect())
}
