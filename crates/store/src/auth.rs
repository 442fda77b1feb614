//! Sign-in state: a principal's factors, replaced only by compare-and-set, and the failed-attempt
//! counters that throttle guessing, each lock recorded as `auth.locked`. Each backend supplies the
//! SQL ([`AuthSql`]); reading several subjects' counters is its own ([`Throttles`]).

use std::future::Future;

use breakglass_core::{Actor, EventDraft, EventKind, Timestamp};

use crate::sql::{Conn, Row, Stmt};
use crate::{Result, StoreError, StoredLogin, ThrottlePolicy, ThrottleState, tokens};

/// The SQL of sign-in state. Parameters, in order, after each field's name.
pub(crate) struct AuthSql {
    /// `principal, body, now`: the principal's first factors at version 1, unless it has some.
    pub(crate) insert_login: &'static str,
    /// `body, now, principal, version`: the factors replaced and moved to the next version, if
    /// still at `version`.
    pub(crate) replace_login: &'static str,
    /// `principal`: `body` and `version`.
    pub(crate) login: &'static str,
    /// `subject, now, forget_after_ms`: one more failure counted (the first again if the last
    /// was longer than `forget_after_ms` ago), returning `failures`.
    pub(crate) count_failure: &'static str,
    /// `locked_until, subject`.
    pub(crate) lock: &'static str,
    /// `subject`: its failures forgotten.
    pub(crate) clear: &'static str,
    /// `subject, now`: one more refusal counted, if the subject is locked at `now`, returning the
    /// new `refused`.
    pub(crate) refuse: &'static str,
    /// `subject`: `refused` and `locked_until` of the subject, if it has a counter.
    pub(crate) refusals_of: &'static str,
    /// `now`: `subject`, `refused` and `locked_until` of every subject whose lock window ended
    /// at or before `now` with refusals counted in it.
    pub(crate) ended_windows: &'static str,
    /// `subject`: its refusals forgotten (they were recorded).
    pub(crate) reset_refused: &'static str,
    /// `forget_before, now`: the counters last failed at or before `forget_before`, not locked at
    /// `now`, with no refusals owed.
    pub(crate) prune: &'static str,
    /// `t`: the earliest end of a lock window with refusals counted in it.
    pub(crate) next_window_end: &'static str,
    /// `t`: the earliest last failure of any counter.
    pub(crate) oldest_failure: &'static str,
}

/// Reads the throttle state of several subjects, the way each backend asks for a list.
pub(crate) trait Throttles {
    /// See [`crate::Store::throttles`].
    fn throttles_in(
        &self,
        subjects: &[String],
    ) -> impl Future<Output = Result<Vec<ThrottleState>>> + Send;
}

/// See [`crate::Store::login`].
pub(crate) async fn login<C: Conn>(c: &mut C, principal: &str) -> Result<Option<StoredLogin>> {
    let row = c.optional(Stmt::new(C::AUTH.login).text(principal)).await?;
    row.map(|r| {
        Ok(StoredLogin {
            body: r.text("body")?,
            version: r.int("version")?,
        })
    })
    .transpose()
}

/// See [`crate::Store::put_login`].
pub(crate) async fn put_login<C: Conn>(
    tx: &mut C,
    principal: &str,
    body: &str,
    expected: Option<i64>,
    revoke_sessions: bool,
    events: &[EventDraft],
    now: Timestamp,
) -> Result<()> {
    let put = match expected {
        None => Stmt::new(C::AUTH.insert_login)
            .text(principal)
            .text(body)
            .time(now),
        Some(v) => Stmt::new(C::AUTH.replace_login)
            .text(body)
            .time(now)
            .text(principal)
            .int(v),
    };
    if tx.execute(put).await? == 0 {
        return Err(StoreError::Conflict);
    }
    if revoke_sessions {
        tokens::revoke_all_of(tx, principal, now).await?;
    }
    tx.append(events, now).await
}

/// See [`crate::Store::record_auth_failure`].
pub(crate) async fn record_failure<C: Conn>(
    tx: &mut C,
    subjects: &[(String, ThrottlePolicy)],
    events: &[EventDraft],
    now: Timestamp,
) -> Result<Vec<ThrottleState>> {
    let mut states = Vec::new();
    let mut all = events.to_vec();
    for (subject, policy) in subjects {
        // A window that ended with refusals in it is recorded before a new one can start.
        if let Some(r) = tx
            .optional(Stmt::new(C::AUTH.refusals_of).text(subject))
            .await?
        {
            let refused = failures(r.int("refused")?);
            if let Some(until) = r
                .opt_time("locked_until")?
                .filter(|u| *u <= now && refused > 0)
            {
                all.push(refusals_event(subject, refused, until));
                tx.execute(Stmt::new(C::AUTH.reset_refused).text(subject))
                    .await?;
            }
        }
        let count = Stmt::new(C::AUTH.count_failure)
            .text(subject)
            .time(now)
            .int(ThrottlePolicy::FORGET_AFTER_MS);
        let failures = failures(tx.one(count).await?.int("failures")?);
        let locked_until = policy
            .lock_ms(failures)
            .map(|ms| Timestamp::from_unix_millis(now.unix_millis().saturating_add(ms)));
        if let Some(until) = locked_until {
            tx.execute(Stmt::new(C::AUTH.lock).time(until).text(subject))
                .await?;
        }
        let st = ThrottleState {
            subject: subject.clone(),
            failures,
            locked_until,
        };
        all.extend(locked_event(&st));
        states.push(st);
    }
    tx.append(&all, now).await?;
    Ok(states)
}

/// See [`crate::Store::clear_auth_failures`].
pub(crate) async fn clear<C: Conn>(tx: &mut C, subject: &str, now: Timestamp) -> Result<()> {
    let row = tx
        .optional(Stmt::new(C::AUTH.refusals_of).text(subject))
        .await?;
    if let Some(r) = row {
        let refused = failures(r.int("refused")?);
        if let (Some(until), true) = (r.opt_time("locked_until")?, refused > 0) {
            tx.append(&[refusals_event(subject, refused, until)], now)
                .await?;
        }
    }
    tx.execute(Stmt::new(C::AUTH.clear).text(subject)).await?;
    Ok(())
}

/// See [`crate::Store::record_auth_refusal`].
pub(crate) async fn refuse<C: Conn>(
    tx: &mut C,
    subjects: &[String],
    now: Timestamp,
) -> Result<bool> {
    let mut first = false;
    for subject in subjects {
        let counted = tx
            .optional(Stmt::new(C::AUTH.refuse).text(subject).time(now))
            .await?;
        if let Some(r) = counted {
            first |= r.int("refused")? == 1;
        }
    }
    Ok(first)
}

/// See [`crate::Store::sweep_throttles`].
pub(crate) async fn sweep<C: Conn>(tx: &mut C, now: Timestamp) -> Result<Option<Timestamp>> {
    // INVARIANT(2): each window's event is written in the transaction that forgets its count.
    let ended = tx
        .all(Stmt::new(C::AUTH.ended_windows).time(now))
        .await?
        .iter()
        .map(|r| {
            let subject = r.text("subject")?;
            let refused = failures(r.int("refused")?);
            let until = r.opt_time("locked_until")?.ok_or_else(|| {
                StoreError::Corrupt(format!("throttle `{subject}`: refusals with no lock"))
            })?;
            Ok((subject, refused, until))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut events = Vec::with_capacity(ended.len());
    for (subject, refused, until) in &ended {
        events.push(refusals_event(subject, *refused, *until));
        tx.execute(Stmt::new(C::AUTH.reset_refused).text(subject))
            .await?;
    }
    tx.append(&events, now).await?;
    let forget_before =
        Timestamp::from_unix_millis(now.unix_millis() - ThrottlePolicy::FORGET_AFTER_MS);
    tx.execute(Stmt::new(C::AUTH.prune).time(forget_before).time(now))
        .await?;
    let window = tx
        .one(Stmt::new(C::AUTH.next_window_end))
        .await?
        .opt_time("t")?;
    let oldest = tx
        .one(Stmt::new(C::AUTH.oldest_failure))
        .await?
        .opt_time("t")?;
    let forget = oldest.map(|t| {
        Timestamp::from_unix_millis(
            t.unix_millis()
                .saturating_add(ThrottlePolicy::FORGET_AFTER_MS),
        )
    });
    Ok(match (window, forget) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// The one event for a lock window's refusals.
fn refusals_event(subject: &str, refused: u32, until: Timestamp) -> EventDraft {
    EventDraft::new(
        Actor::System("auth"),
        None,
        EventKind::AuthRefusedWhileLocked {
            subject: subject.to_owned(),
            refused,
            until,
        },
    )
}

/// The `auth.locked` event for a subject a failure just locked.
fn locked_event(st: &ThrottleState) -> Option<EventDraft> {
    let until = st.locked_until?;
    Some(EventDraft::new(
        Actor::System("auth"),
        None,
        EventKind::AuthLocked {
            subject: st.subject.clone(),
            failures: st.failures,
            until,
        },
    ))
}

/// A failure count as stored; past `u32::MAX` it stays there.
fn failures(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A row of `auth_throttle` (`subject`, `failures`, `locked_until`).
pub(crate) fn throttle(r: &impl Row) -> Result<ThrottleState> {
    Ok(ThrottleState {
        subject: r.text("subject")?,
        failures: failures(r.int("failures")?),
        locked_until: r.opt_time("locked_until")?,
    })
}
