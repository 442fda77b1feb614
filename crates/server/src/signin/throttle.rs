//! Locks after repeated failures, shaped so that nobody can lock the real person out of the
//! emergency path:
//!
//! - failures count per (account, source address): failures from one source never block sign-in
//!   from another ([`PAIR_THROTTLE`]);
//! - a source that fails for many accounts is slowed on its own ([`SOURCE_THROTTLE`]): that only
//!   ever blocks the source;
//! - an account-wide safeguard, after NIST SP 800-63B §5.2.2: at most 100 consecutive failures
//!   across all sources, then the account locks, with a high-severity alert
//!   ([`ACCOUNT_SAFEGUARD`]);
//! - a session's step-up is never blocked by any of these: wrong codes count against that
//!   session only, and the fifth ends it ([`STEP_UP_TRIES`]).
//!
//! The lock rule is the core's ([`ThrottlePolicy`]), applied by the store in the transaction that
//! counts a failure; this decides what counts as one and audits it. A refusal while locked is not
//! an attempt (nothing is checked): it is counted on the lock, and recorded once per lock window
//! by the sweep (`workers/throttle.rs`).

use breakglass_core::text::shown;
use breakglass_core::{Actor, EventDraft, EventKind, ThrottlePolicy};

use super::SignIn;
use crate::error::ServiceError;
use crate::policy::AccessError;

/// One account from one source: 5 free failures, then 1 s doubling to 15 min.
pub const PAIR_THROTTLE: ThrottlePolicy = ThrottlePolicy {
    free: 5,
    base_ms: 1_000,
    cap_ms: 900_000,
};
/// One source, whatever the accounts: 20 free failures (several people behind one address), then
/// the same backoff. It only ever blocks that source.
pub const SOURCE_THROTTLE: ThrottlePolicy = ThrottlePolicy {
    free: 20,
    base_ms: 1_000,
    cap_ms: 900_000,
};
/// One account, whatever the sources: the 100th consecutive failure locks it for 15 minutes,
/// doubling to an hour while failures go on.
pub const ACCOUNT_SAFEGUARD: ThrottlePolicy = ThrottlePolicy {
    free: 99,
    base_ms: 900_000,
    cap_ms: 3_600_000,
};
/// Wrong step-up codes a session may give: the next one ends it.
pub const STEP_UP_TRIES: u32 = 5;
/// Counting a session's wrong codes: never a lock (the session ends instead).
const SESSION_COUNT: ThrottlePolicy = ThrottlePolicy {
    free: STEP_UP_TRIES,
    base_ms: 0,
    cap_ms: 0,
};

/// An account name as typed, cut, so any input makes a bounded key.
fn name(user: &str) -> String {
    user.chars().take(80).collect()
}

/// The account-wide subject.
pub(crate) fn account(user: &str) -> String {
    format!("account {}", name(user))
}

/// One account from one source.
pub(crate) fn pair(user: &str, source: &str) -> String {
    format!("account {} from {source}", name(user))
}

pub(crate) fn source(addr: &str) -> String {
    format!("source {addr}")
}

fn session(token_id: &str) -> String {
    format!("session {token_id}")
}

/// The subjects a sign-in (or a password check) by `user` from `addr` is counted against.
pub(crate) fn sign_in_subjects(user: &str, addr: &str) -> [String; 3] {
    [pair(user, addr), account(user), source(addr)]
}

impl SignIn {
    /// Refuses while any of `subjects` is locked, counting the refusal on the lock.
    pub(crate) async fn check_locks(&self, subjects: &[String]) -> Result<(), ServiceError> {
        let now = self.clock.now();
        let locked: Vec<_> = self
            .store
            .throttles(subjects)
            .await?
            .into_iter()
            .filter(|t| t.locked_until.is_some_and(|until| until > now))
            .collect();
        let Some(until) = locked.iter().filter_map(|t| t.locked_until).max() else {
            return Ok(());
        };
        let names: Vec<String> = locked.into_iter().map(|t| t.subject).collect();
        match self.store.record_auth_refusal(&names, now).await {
            Ok(true) => self.throttled.notify_one(),
            Ok(false) => {}
            // The caller is refused either way; the count is best effort.
            Err(e) => tracing::warn!(error = %e, "could not count a refusal while locked"),
        }
        Err(AccessError::Locked { until }.into())
    }

    /// Counts a failure of `user` (if named) from `addr`, and audits it (`auth.failed`, and
    /// `auth.locked` for each subject this one locks), then returns `err` for the caller.
    pub(crate) async fn failed(
        &self,
        user: Option<&str>,
        addr: &str,
        reason: &str,
        err: AccessError,
    ) -> ServiceError {
        let subjects: Vec<(String, ThrottlePolicy)> = match user {
            Some(u) => vec![
                (pair(u, addr), PAIR_THROTTLE),
                (account(u), ACCOUNT_SAFEGUARD),
                (source(addr), SOURCE_THROTTLE),
            ],
            None => vec![(source(addr), SOURCE_THROTTLE)],
        };
        let event = failed_event(user, addr, reason);
        match self
            .store
            .record_auth_failure(&subjects, &[event], self.clock.now())
            .await
        {
            Ok(_) => err.into(),
            Err(e) => e.into(),
        }
    }

    /// A successful sign-in: the account's failures (from this source and overall) are forgotten.
    pub(crate) async fn succeeded(&self, user: &str, addr: &str) -> Result<(), ServiceError> {
        let now = self.clock.now();
        for subject in [pair(user, addr), account(user)] {
            self.store.clear_auth_failures(&subject, now).await?;
        }
        Ok(())
    }

    /// Counts a wrong step-up code against the session `token_id` only, audits it, and ends the
    /// session at the fifth. Returns the error for the caller.
    pub(crate) async fn step_up_failed(
        &self,
        user: &str,
        token_id: &str,
        addr: &str,
        reason: &str,
        err: AccessError,
    ) -> ServiceError {
        let now = self.clock.now();
        let event = failed_event(Some(user), addr, &format!("step-up: {reason}"));
        let counted = self
            .store
            .record_auth_failure(&[(session(token_id), SESSION_COUNT)], &[event], now)
            .await;
        let failures = match counted {
            Ok(states) => states.first().map_or(0, |s| s.failures),
            Err(e) => return e.into(),
        };
        if failures < STEP_UP_TRIES {
            return err.into();
        }
        let ended = EventDraft::new(
            Actor::System("auth"),
            None,
            EventKind::TokenRevoked {
                token_id: token_id.to_owned(),
                principal: user.to_owned(),
            },
        );
        if let Err(e) = self.store.revoke_token(token_id, &[ended], now).await {
            return e.into();
        }
        if let Err(e) = self
            .store
            .clear_auth_failures(&session(token_id), now)
            .await
        {
            tracing::warn!(error = %e, "could not forget an ended session's count");
        }
        AccessError::SessionEnded {
            tries: STEP_UP_TRIES,
        }
        .into()
    }

    /// A successful step-up: the session's wrong codes are forgotten.
    pub(crate) async fn step_up_succeeded(&self, token_id: &str) -> Result<(), ServiceError> {
        self.store
            .clear_auth_failures(&session(token_id), self.clock.now())
            .await?;
        Ok(())
    }
}

fn failed_event(user: Option<&str>, addr: &str, reason: &str) -> EventDraft {
    EventDraft::new(
        Actor::System("auth"),
        None,
        EventKind::AuthFailed {
            // INVARIANT(6): a token pasted as a user name is cut down to its id.
            principal: user.map(|u| shown(u, 80)),
            source: addr.to_owned(),
            reason: reason.to_owned(),
        },
    )
}
