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
pub(crate) async fn clear<C: Conn>(tx: &mut C, subject: &str) -> Result<()> {
    tx.execute(Stmt::new(C::AUTH.clear).text(subject)).await?;
    Ok(())
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
