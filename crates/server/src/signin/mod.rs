//! Local sign-in (invariant 5: it depends on nothing outside the broker): passwords, TOTP,
//! recovery codes, sessions, API tokens, throttling, step-up, and the administrator's account
//! commands.
//!
//! - [`session`]: signing in and out, step-up, and authenticating a presented token;
//! - [`factors`]: a person's own factors (enrolling an authenticator, changing the password);
//! - [`accounts`]: what administrators do to accounts (add, reset, disable);
//! - [`tokens`]: API tokens, their format and their lifecycle;
//! - [`throttle`]: locks after repeated failures;
//! - [`certificate`]: client certificates that stand for service principals (mutual TLS);
//! - [`crypto`]: the primitives (Argon2id, TOTP, recovery codes), with no database.
//!
//! A principal's factors are one JSON record in the store, replaced by compare-and-set: accepting
//! a TOTP code writes its step in the same compare-and-set, so a code is accepted once however many
//! requests race with it.

pub mod accounts;
pub mod certificate;
pub mod crypto;
pub mod factors;
pub mod session;
pub mod throttle;
pub mod tokens;

use std::sync::Arc;

use breakglass_core::{Action, Clock, Duration, Principal, Scope, Timestamp};
use breakglass_store::{Store, TokenKind};

use crate::error::ServiceError;
use crate::policy::Access;
use crate::startup::sealing::Sealer;

pub use session::{Session, SignInRequest};
pub use tokens::NewToken;

/// Sign-in settings.
#[derive(Clone, Copy, Debug)]
pub struct AuthSettings {
    /// How long a session from `login` lasts.
    pub session_ttl: Duration,
    /// How recently a second factor must have been verified for the actions that need one
    /// (approve, deny, reveal, revoke of another's grant, extend, emergency requests,
    /// administration).
    pub step_up_window: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            session_ttl: Duration::from_secs(8 * 3600),
            step_up_window: Duration::from_secs(300),
        }
    }
}

/// An authenticated caller, and the action the route it called performs.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Principal,
    pub token_id: String,
    pub token_kind: TokenKind,
    /// What the token may be used for; `None` means everything the principal may do.
    pub scopes: Option<Vec<Scope>>,
    /// When a second factor was last verified for this token.
    pub stepped_up_at: Option<Timestamp>,
    /// What the route being served does: the route named it, and every check reads it here.
    pub action: Action,
}

/// The sign-in service: sessions, factors, accounts and tokens.
pub struct SignIn {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    sealer: Arc<Sealer>,
    access: Arc<Access>,
    settings: AuthSettings,
    /// Signalled when a lock window gets its first refusal: the throttle sweep has work at its
    /// end.
    pub(crate) throttled: tokio::sync::Notify,
}

impl SignIn {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        sealer: Arc<Sealer>,
        access: Arc<Access>,
        settings: AuthSettings,
    ) -> Self {
        Self {
            store,
            clock,
            sealer,
            access,
            settings,
            throttled: tokio::sync::Notify::new(),
        }
    }

    pub fn settings(&self) -> AuthSettings {
        self.settings
    }
}

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(e.to_string())
}
