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
use breakglass_core::{
    Actor, GrantId, GrantState, Lockdown, LockdownScope, Name, StateKind, Timestamp,
};
use breakglass_store::{GrantUpdate, StoreError, StoredGrant};
use futures_util::StreamExt as _;

use crate::app::App;
use crate::error::ServiceError;
use crate::grant::{Grants, SETTLED_MS};
use crate::signin::Caller;
use crate::startup::sealing::SealError;

/// How many revocations a lockdown has in flight at once: enough to keep the targets busy, few
/// enough not to crowd out everything else the broker asks of them.
const CONCURRENCY: usize = 16;
/// How many grants a lockdown writes in one transaction (their intents, then their outcomes):
/// the audit head's lock and the commit are paid once per batch, and a batch is small enough
/// that its intents do not wait long for their outcomes.
const BATCH: usize = 100;
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
    /// The sweep stopped part-way (the store went away): the reconciler's next pass finishes it.
    pub interrupted: bool,
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
        let ended = match self
            .grants
            .end_for_lockdown(&l, &Actor::User(caller.principal.name.clone()))
            .await
        {
            Ok(ended) => ended,
            // The lockdown is committed and in force: say so, and let the reconciler finish.
            Err(e) => {
                tracing::error!(lockdown = %l.id, error = %e, "the lockdown sweep stopped part-way; the reconciler will finish it");
                Ended {
                    interrupted: true,
                    ..Ended::default()
                }
            }
        };
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

    /// Ends every live grant in `l`'s scope, [`BATCH`] grants at a time: the batch's intents
    /// (a grant's `revoking`, or a request's cancellation) are written in one transaction, then
    /// the batch is revoked at its targets [`CONCURRENCY`] at a time, then the outcomes are
    /// written in one transaction. A grant that moved on meanwhile is decided again on its own.
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
        let mut ended = Ended::default();
        for chunk in in_scope.chunks(BATCH) {
            let (done, stale) = self.end_batch(chunk, l, actor).await?;
            for o in done {
                ended = ended.add(o);
            }
            for id in stale {
                let o = match self.load(id).await {
                    Ok(sg) => self.end_one_for_lockdown(sg, l, actor).await,
                    Err(e) => Err(e),
                };
                ended = ended.add(o.unwrap_or_else(|e| {
                    // The lockdown is committed; the reconciler's next pass ends this one.
                    tracing::warn!(grant = %id, error = %e, "could not end a grant for the lockdown; the reconciler will retry");
                    Outcome::Retrying
                }));
            }
        }
        Ok(ended)
    }

    /// One batch: intents, revocations at the targets, outcomes. Returns what became of each
    /// grant it ended, and the grants that moved on before their intent was written.
    async fn end_batch(
        &self,
        chunk: &[StoredGrant],
        l: &Lockdown,
        actor: &Actor,
    ) -> Result<(Vec<Outcome>, Vec<GrantId>), ServiceError> {
        let now = self.clock.now();
        let intents: Vec<GrantUpdate> = chunk
            .iter()
            .filter_map(|sg| {
                sg.grant
                    .end_for_lockdown(l, actor, now)
                    .map(|tr| GrantUpdate {
                        grant: tr.grant,
                        expected_version: sg.version,
                        events: tr.events,
                    })
            })
            .collect();
        // INVARIANT(3): every intent to revoke is durable before its target is touched; and if
        // the broker dies now, the reaper finishes each of them.
        let written = self.store.update_grants(&intents, now).await?;
        let mut outcomes = Vec::new();
        let mut stale = Vec::new();
        let mut revoking = Vec::new();
        for (u, w) in intents.iter().zip(written) {
            match w {
                None => stale.push(u.grant.id),
                Some(s) if matches!(s.grant.state, GrantState::Revoking { .. }) => {
                    let at = s.grant.updated_at.unix_millis().saturating_add(SETTLED_MS);
                    self.alarms.reaper.due_at(Timestamp::from_unix_millis(at));
                    revoking.push(s);
                }
                Some(_) => outcomes.push(Outcome::Cancelled),
            }
        }
        let revoked: Vec<(StoredGrant, bool)> = futures_util::stream::iter(revoking)
            .map(|sg| async move {
                let res = match sg.grant.handle() {
                    // No handle: the activation intent was never recorded, nothing is there.
                    None => Ok(()),
                    Some(h) => self.providers.for_target(&sg.grant.target).revoke(h).await,
                };
                if let Err(e) = &res {
                    // Left `revoking`: the reaper retries it with backoff, as any revocation.
                    tracing::warn!(grant = %sg.grant.id, error = %e, "provider could not revoke for the lockdown; the reaper will retry");
                }
                (sg, res.is_ok())
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let now = self.clock.now();
        let mut finished = Vec::new();
        for (sg, ok) in &revoked {
            if !ok {
                outcomes.push(Outcome::Retrying);
                continue;
            }
            let tr = sg.grant.finish_revoke(actor.clone(), now)?;
            finished.push((
                sg,
                GrantUpdate {
                    grant: tr.grant,
                    expected_version: sg.version,
                    events: tr.events,
                },
            ));
        }
        let batch: Vec<GrantUpdate> = finished.iter().map(|(_, u)| u.clone()).collect();
        let written = self.store.update_grants(&batch, now).await?;
        for ((sg, _), w) in finished.iter().zip(written) {
            match w {
                Some(s) => {
                    self.metrics.ended(&s.grant.state);
                    outcomes.push(Outcome::Revoked);
                }
                // The reaper finished it meanwhile, or gave up on it: the privilege is gone
                // either way; if the grant says `failed`, the log must say it is gone.
                None => {
                    let now_g = self.load(sg.grant.id).await?.grant;
                    if let (GrantState::Failed { .. }, Some(h)) = (&now_g.state, sg.grant.handle())
                    {
                        self.record_removed(
                            actor.clone(),
                            sg.grant.target.kind(),
                            h,
                            Some(sg.grant.id),
                        )
                        .await?;
                    }
                    outcomes.push(Outcome::Revoked);
                }
            }
        }
        Ok((outcomes, stale))
    }

    /// Ends one grant for lockdown `l` on its own, re-deciding while it keeps moving on.
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
