//! Locks after repeated sign-in failures, per account and per source address. The lock rule is
//! the core's ([`ThrottlePolicy`]), applied by the store in the transaction that counts a failure;
//! this decides what counts as one and audits it.

use breakglass_core::ThrottlePolicy;
use breakglass_core::text::shown;
use breakglass_core::{Actor, EventDraft, EventKind};

use super::SignIn;
use crate::error::ServiceError;
use crate::policy::AccessError;

/// Account lock: 5 free failures, then 1 s doubling to 15 min.
pub const ACCOUNT_THROTTLE: ThrottlePolicy = ThrottlePolicy {
    free: 5,
    base_ms: 1_000,
    cap_ms: 900_000,
};
/// Source lock: 20 free failures (several people behind one address), then the same backoff.
pub const SOURCE_THROTTLE: ThrottlePolicy = ThrottlePolicy {
    free: 20,
    base_ms: 1_000,
    cap_ms: 900_000,
};

/// The throttle subject of an account name as typed (cut, so any input makes a bounded key).
pub(crate) fn account(user: &str) -> String {
    format!("account {}", user.chars().take(80).collect::<String>())
}

pub(crate) fn source(addr: &str) -> String {
    format!("source {addr}")
}

impl SignIn {
    /// Refuses while the account or the source is locked.
    pub(crate) async fn check_locks(&self, subjects: &[String]) -> Result<(), ServiceError> {
        let now = self.clock.now();
        let locked = self
            .store
            .throttles(subjects)
            .await?
            .into_iter()
            .filter_map(|t| t.locked_until)
            .filter(|until| *until > now)
            .max();
        match locked {
            Some(until) => Err(AccessError::Locked { until }.into()),
            None => Ok(()),
        }
    }

    /// Counts a failure against the account (if named) and the source and audits it
    /// (`auth.failed`, and `auth.locked` when this one locks), then returns `err` for the caller.
    pub(crate) async fn failed(
        &self,
        user: Option<&str>,
        source_addr: &str,
        reason: &str,
        err: AccessError,
    ) -> ServiceError {
        let mut subjects = vec![(source(source_addr), SOURCE_THROTTLE)];
        if let Some(u) = user {
            subjects.insert(0, (account(u), ACCOUNT_THROTTLE));
        }
        let event = EventDraft::new(
            Actor::System("auth"),
            None,
            EventKind::AuthFailed {
                // INVARIANT(6): a token pasted as a user name is cut down to its id.
                principal: user.map(|u| shown(u, 80)),
                source: source_addr.to_owned(),
                reason: reason.to_owned(),
            },
        );
        match self
            .store
            .record_auth_failure(&subjects, &[event], self.clock.now())
            .await
        {
            Ok(_) => err.into(),
            Err(e) => e.into(),
        }
    }
}
