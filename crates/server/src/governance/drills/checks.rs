//! Moving open drills on: each pass looks at every open drill's grant, and where the core says the
//! drill can move, does the IO its next step needs (the broker trying the credential, the revoke,
//! the refusal check, reading the alert deliveries) and writes what the core decided. A drill's
//! state is in the store, so a restart (or another replica) picks it up where it was.
//!
//! The credential is opened in memory for the exercise, the revoke and the refusal check, and
//! never leaves this process: it is not logged, not stored again, and not shown. After a restart
//! between the revoke and the refusal check it is gone (its sealed copy is erased when the grant
//! starts revoking, invariant 6), so the refusal is checked without it: for a token, from the
//! grant record that introspection answers from; for PostgreSQL, by the provider's check that the
//! login role is gone. The check's detail says which.

use breakglass_core::drill::{DRILL_ACTOR, Drill, DrillStage, Probe, drill_due, overdue_alert};
use breakglass_core::{Actor, Grant, GrantState, Target, Timestamp};
use breakglass_providers::{Presence, Secret, probe};
use breakglass_store::{StoreError, StoredDrill, StoredGrant};

use super::{DrillOutcome, completed};
use crate::app::App;
use crate::error::ServiceError;
use crate::grant::credential_context;

/// How often an open drill that waits on the target or the channels is looked at again.
const POLL_MS: i64 = 1000;
/// The most steps one drill moves in one pass (it has five stages).
const MAX_STEPS: usize = 8;

/// One pass: moves every open drill on as far as it can go now, then records `drill.overdue` for
/// each role whose drill is overdue and not yet alerted for this due date. Returns when the worker
/// must look again at the latest (`None`: only when told).
pub async fn pass(app: &App) -> Result<Option<Timestamp>, ServiceError> {
    let mut next: Option<Timestamp> = None;
    let mut first_error = None;
    for sd in app.store.open_drills().await? {
        let id = sd.drill.id;
        match advance(app, sd).await {
            Ok(at) => next = earliest(next, at),
            Err(e) => {
                tracing::warn!(drill = %id, error = %e, "could not move the drill on; retrying shortly");
                first_error.get_or_insert(e);
            }
        }
    }
    next = earliest(next, overdue(app).await?);
    match first_error {
        Some(e) => Err(e),
        None => Ok(next),
    }
}

/// When the worker next has work without being told: the earliest overdue date not yet alerted,
/// or soon while a drill waits on a target or the channels.
pub async fn next_due(app: &App) -> Result<Option<Timestamp>, ServiceError> {
    let now = app.clock.now();
    let mut next = None;
    for sd in app.store.open_drills().await? {
        let at = match sd.drill.stage {
            DrillStage::AwaitingGrant => None,
            _ => Some(later(now, POLL_MS)),
        };
        next = earliest(next, at);
    }
    let roles = app.catalog.roles();
    let ids: Vec<String> = roles.iter().map(|r| r.id.to_string()).collect();
    for s in app.store.drill_schedule(&ids, now).await? {
        let Some(role) = roles.get(&s.role) else {
            continue;
        };
        let due = drill_due(role, s.last_passed, s.first_seen);
        if s.alerted_due != Some(due) {
            next = earliest(next, Some(due));
        }
    }
    Ok(next)
}

/// Records `drill.overdue` for every role loaded whose drill is due and not yet alerted for that
/// due date (once, across replicas). Returns the earliest due date still ahead.
async fn overdue(app: &App) -> Result<Option<Timestamp>, ServiceError> {
    let roles = app.catalog.roles();
    let ids: Vec<String> = roles.iter().map(|r| r.id.to_string()).collect();
    let now = app.clock.now();
    let mut next = None;
    for s in app.store.drill_schedule(&ids, now).await? {
        let Some(role) = roles.get(&s.role) else {
            continue;
        };
        let due = drill_due(role, s.last_passed, s.first_seen);
        let Some(event) = overdue_alert(role, due, s.last_passed, s.alerted_due, now) else {
            if now < due {
                next = earliest(next, Some(due));
            }
            continue;
        };
        if app
            .store
            .record_drill_overdue(&s.role, due, &[event], now)
            .await?
        {
            tracing::warn!(role = %s.role, due = %due, "role is overdue for a drill");
        }
    }
    Ok(next)
}

/// Moves one drill on as far as it goes now. Returns when to look again (`None`: when its grant
/// changes).
async fn advance(app: &App, mut sd: StoredDrill) -> Result<Option<Timestamp>, ServiceError> {
    for _ in 0..MAX_STEPS {
        let now = app.clock.now();
        let sg = app.grants.load(sd.drill.grant).await?;
        let d = &sd.drill;
        let decided = match &d.stage {
            DrillStage::AwaitingGrant => match d.grant_seen(&sg.grant, now) {
                Some(tr) => tr,
                None => return Ok(None),
            },
            DrillStage::Exercising => {
                return exercise_and_revoke(app, sd, sg).await;
            }
            DrillStage::Revoking { .. } => {
                // The revoke intent may not have been written before a restart: write it now. A
                // grant already revoking is the reaper's to retry, on its own schedule.
                let sg = match sg.grant.state {
                    GrantState::Active { .. } | GrantState::Activating { .. } => {
                        revoke(app, sg, d).await?
                    }
                    _ => sg,
                };
                if !sg.grant.state.is_ended() {
                    return Ok(Some(later(now, POLL_MS)));
                }
                let refusal = refused(app, &sg.grant, None).await;
                match d.revoked(&sg.grant, &refusal, app.clock.now()) {
                    Some(tr) => tr,
                    None => return Ok(Some(later(now, POLL_MS))),
                }
            }
            DrillStage::AwaitingAlerts { deadline } => {
                let deliveries = app.store.drill_deliveries(d.grant).await?;
                match d.alerts_seen(deliveries.as_deref(), now) {
                    Some(tr) => tr,
                    None => return Ok(Some((*deadline).min(later(now, POLL_MS)))),
                }
            }
            DrillStage::Completed { .. } => return Ok(None),
        };
        sd = match write(app, &sd, decided.drill, &decided.events).await? {
            Some(next) => next,
            // Another replica moved it on: look again soon.
            None => return Ok(Some(later(now, POLL_MS))),
        };
        if let Some(outcome) = DrillOutcome::of(&sd.drill) {
            completed(app, &outcome).await;
            return Ok(None);
        }
    }
    Ok(Some(later(app.clock.now(), POLL_MS)))
}

/// The grant is active: the broker opens the credential in memory, tries it at the target,
/// records that, revokes through the normal revoke path, and checks the target refuses the same
/// credential now.
async fn exercise_and_revoke(
    app: &App,
    sd: StoredDrill,
    sg: StoredGrant,
) -> Result<Option<Timestamp>, ServiceError> {
    let credential = open_credential(app, &sg.grant).await?;
    let started_at = app.clock.now();
    let outcome = match &credential {
        Some(c) => accepted(app, &sg.grant, c).await,
        None => Err(format!(
            "the credential is not available: the grant is `{}`",
            sg.grant.state.name()
        )),
    };
    let probe = Probe {
        started_at,
        finished_at: app.clock.now(),
        outcome,
    };
    let now = app.clock.now();
    let Some(tr) = sd.drill.exercised(&probe, now) else {
        return Ok(None);
    };
    // INVARIANT(3): the drill says it is revoking before the grant's revoke intent is written, so
    // a restart in between finds the drill revoking and writes the intent then.
    let Some(sd) = write(app, &sd, tr.drill, &tr.events).await? else {
        return Ok(Some(later(now, POLL_MS)));
    };
    let sg = revoke(app, sg, &sd.drill).await?;
    if !sg.grant.state.is_ended() {
        // The target refused the revoke: the reaper retries it, and the next pass checks again.
        return Ok(Some(later(now, POLL_MS)));
    }
    let refusal = refused(app, &sg.grant, credential.as_ref()).await;
    let Some(tr) = sd.drill.revoked(&sg.grant, &refusal, app.clock.now()) else {
        return Ok(Some(later(now, POLL_MS)));
    };
    let Some(sd) = write(app, &sd, tr.drill, &tr.events).await? else {
        return Ok(Some(later(now, POLL_MS)));
    };
    // The alerts are checked on the next step, which the caller's next pass (or this one's
    // caller, at once) takes.
    Box::pin(advance(app, sd)).await
}

/// The drill grant's revoke intent, through the normal path (`grant.revoking` by the drill, the
/// provider's revoke, `grant.revoked`); a revoke the target refuses is retried by the reaper like
/// any other. Returns the grant as it is now.
async fn revoke(app: &App, sg: StoredGrant, d: &Drill) -> Result<StoredGrant, ServiceError> {
    let now = app.clock.now();
    let id = sg.grant.id;
    let revoking = match sg.grant.end_drill(d.id, now) {
        Some(tr) => match app.grants.write(&sg, tr, None, now).await {
            Ok(s) => s,
            Err(StoreError::Conflict) => app.grants.load(id).await?,
            Err(e) => return Err(e.into()),
        },
        None => sg,
    };
    if !matches!(revoking.grant.state, GrantState::Revoking { .. }) {
        return Ok(revoking);
    }
    match app
        .grants
        .finish_revoking(revoking, Actor::System(DRILL_ACTOR))
        .await
    {
        Ok(s) => Ok(s),
        Err(e) if e.is_conflict() => app.grants.load(id).await,
        Err(e) => {
            tracing::warn!(grant = %id, error = %e, "drill revoke did not complete; the reaper retries it");
            app.grants.load(id).await
        }
    }
}

/// The drill grant's sealed credential, opened in memory. `None` once it is gone (the grant is
/// revoking or ended).
async fn open_credential(app: &App, g: &Grant) -> Result<Option<Secret>, ServiceError> {
    let Some(sealed) = app.store.drill_credential(g.id).await? else {
        return Ok(None);
    };
    let plain = app.grants.sealer.open(&sealed, &credential_context(g.id))?;
    let text = String::from_utf8(plain).map_err(|_| crate::startup::sealing::SealError::Open)?;
    Ok(Some(Secret::new(text)))
}

/// Tries the credential as its target would take it: `Ok` with what was seen.
async fn accepted(app: &App, g: &Grant, credential: &Secret) -> Result<String, String> {
    match &g.target {
        Target::Token { .. } => {
            let now = app.clock.now();
            let claims = probe::verify_with_key_set(
                credential,
                &app.tokens.jwks(),
                app.tokens.issuer(),
                now,
            )?;
            if claims.jti != g.id.to_string() {
                return Err(format!("the token names grant `{}`", claims.jti));
            }
            match crate::api::active_claims(app, credential.expose()).await {
                Ok(Some(c)) => Ok(format!(
                    "signature verified with key `{}` of the published key set; introspection says active for `{}` (audience `{}`)",
                    app.tokens.kid(),
                    c.sub,
                    c.aud
                )),
                Ok(None) => Err("introspection says inactive".into()),
                Err(e) => Err(format!("introspection failed: {e}")),
            }
        }
        Target::Postgres { .. } => probe::postgres_login(credential).await,
    }
}

/// After the revoke: whether the target now refuses the credential (`Ok` with what was seen).
/// Without the credential (after a restart), from what is left of the privilege instead.
async fn refused(app: &App, g: &Grant, credential: Option<&Secret>) -> Probe {
    let started_at = app.clock.now();
    let outcome = match (&g.target, credential) {
        (Target::Token { .. }, Some(c)) => match crate::api::active_claims(app, c.expose()).await {
            Ok(None) => Ok("introspection says inactive".to_owned()),
            Ok(Some(_)) => Err("introspection still says active".to_owned()),
            Err(e) => Err(format!("introspection failed: {e}")),
        },
        (Target::Token { .. }, None) => match g.state {
            GrantState::Active { .. } => Err("the grant is still active".to_owned()),
            _ => Ok(format!(
                "introspection answers inactive for every token of a `{}` grant (the credential was not held across a restart)",
                g.state.name()
            )),
        },
        (Target::Postgres { .. }, Some(c)) => match probe::postgres_login(c).await {
            Ok(seen) => Err(seen),
            Err(why) => Ok(format!("the login is refused: {why}")),
        },
        (Target::Postgres { .. }, None) => {
            let provider = app.grants.providers().for_target(&g.target);
            match g.handle() {
                Some(h) => match provider.check(h, started_at).await {
                    Ok(Presence::Absent) => Ok(
                        "the login role is gone from the target (the credential was not held across a restart)"
                            .to_owned(),
                    ),
                    Ok(Presence::Present) => Err("the login role is still at the target".into()),
                    Err(e) => Err(format!("could not check the target: {e}")),
                },
                None => Ok("nothing reached the target".to_owned()),
            }
        }
    };
    Probe {
        started_at,
        finished_at: app.clock.now(),
        outcome,
    }
}

/// Writes a drill decided from `from`; `None` if it moved on meanwhile.
async fn write(
    app: &App,
    from: &StoredDrill,
    d: Drill,
    events: &[breakglass_core::EventDraft],
) -> Result<Option<StoredDrill>, ServiceError> {
    match app
        .store
        .update_drill(&d, from.version, events, app.clock.now())
        .await
    {
        Ok(s) => Ok(Some(s)),
        Err(StoreError::Conflict) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn later(now: Timestamp, ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(now.unix_millis().saturating_add(ms))
}

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
