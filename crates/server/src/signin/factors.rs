//! A person's own sign-in factors: the stored record, accepting a code, enrolling (or replacing)
//! an authenticator, and changing the password. Changing a factor needs the `factors` scope, which
//! read-only and service tokens never have; replacing one that exists needs a fresh proof with it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use breakglass_core::{Actor, EventDraft, EventKind, Principal, PrincipalKind, Timestamp};
use breakglass_providers::Secret;
use breakglass_store::{StoreError, StoredLogin};
use serde::{Deserialize, Serialize};

use super::crypto::{password, recovery, totp};
use super::{Caller, SignIn, internal, throttle};
use crate::error::ServiceError;
use crate::policy::AccessError;

/// How many recovery codes are issued at once.
const RECOVERY_CODES: usize = 10;
/// The issuer an authenticator app shows next to the account.
const TOTP_ISSUER: &str = "breakglass";

/// A principal's sign-in factors as stored (the store keeps this JSON opaque).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Factors {
    /// Argon2id PHC string.
    #[serde(default)]
    pub(crate) password: Option<String>,
    /// Set by an administrator: the owner must pick a new password at the next sign-in.
    #[serde(default)]
    pub(crate) must_change: bool,
    #[serde(default)]
    pub(crate) totp: Option<TotpFactor>,
    /// An enrolment started and not yet confirmed (sealed secret, base64).
    #[serde(default)]
    pub(crate) pending_totp: Option<String>,
    /// SHA-256 (hex) of each unused recovery code.
    #[serde(default)]
    pub(crate) recovery: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TotpFactor {
    /// The secret sealed under the store's key (base64).
    secret: String,
    /// The last accepted time step: no code at or before it is accepted again.
    last_step: Option<u64>,
}

/// An enrolment started: the secret for the authenticator app (shown once).
pub struct Enrolment {
    pub secret_base32: Secret,
    pub uri: Secret,
}

/// A code accepted: the factors with it used up, how (`totp`, `recovery_code`), and the events
/// that owes (a recovery code's use).
pub(crate) struct Accepted {
    pub(crate) factors: Factors,
    pub(crate) method: &'static str,
    pub(crate) events: Vec<EventDraft>,
}

fn totp_context(user: &str) -> String {
    format!("totp:{user}")
}

pub(crate) fn now_secs(now: Timestamp) -> u64 {
    u64::try_from(now.unix_millis() / 1000).unwrap_or(0)
}

/// Stored factors and their version, or fresh ones to insert.
pub(crate) fn split(stored: Option<(Factors, i64)>) -> (Factors, Option<i64>) {
    stored.map_or((Factors::default(), None), |(f, v)| (f, Some(v)))
}

impl SignIn {
    pub(crate) async fn factors(&self, user: &str) -> Result<Option<(Factors, i64)>, ServiceError> {
        let Some(StoredLogin { body, version }) = self.store.login(user).await? else {
            return Ok(None);
        };
        let f: Factors = serde_json::from_str(&body)
            .map_err(|e| StoreError::Corrupt(format!("sign-in record of `{user}`: {e}")))?;
        Ok(Some((f, version)))
    }

    /// Writes `f` over `expected` (insert when `None`); with `revoke_tokens` every token the
    /// principal holds ends in the same transaction (a reset).
    pub(crate) async fn put_factors(
        &self,
        user: &str,
        f: &Factors,
        expected: Option<i64>,
        revoke_tokens: bool,
        events: &[EventDraft],
    ) -> Result<(), ServiceError> {
        let body = serde_json::to_string(f)
            .map_err(|e| StoreError::Corrupt(format!("sign-in record: {e}")))?;
        self.store
            .put_login(
                user,
                &body,
                expected,
                revoke_tokens,
                events,
                self.clock.now(),
            )
            .await?;
        Ok(())
    }

    fn open_totp(&self, user: &str, sealed_b64: &str) -> Result<Vec<u8>, ServiceError> {
        let sealed = B64
            .decode(sealed_b64)
            .map_err(|e| StoreError::Corrupt(format!("sealed TOTP secret of `{user}`: {e}")))?;
        Ok(self.sealer.open(&sealed, &totp_context(user))?)
    }

    /// Checks `code` (a TOTP code or a recovery code) against `f` and returns the factors with
    /// the code used up, and the method name.
    pub(crate) fn accept_code(
        &self,
        p: &Principal,
        f: &Factors,
        code: &str,
    ) -> Result<Accepted, AccessError> {
        let user = p.name.as_str();
        let Some(t) = &f.totp else {
            return Err(AccessError::TotpNotEnrolled {
                user: user.to_owned(),
            });
        };
        let mut next = f.clone();
        if recovery::looks_like(code) {
            let Some(i) = recovery::find(code, &f.recovery) else {
                return Err(AccessError::CodeRejected {
                    why: "it is not one of this account's unused recovery codes",
                });
            };
            next.recovery.remove(i);
            let used = EventDraft::new(
                Actor::User(p.name.clone()),
                None,
                EventKind::UserRecoveryCodeUsed {
                    principal: user.to_owned(),
                    remaining: u32::try_from(next.recovery.len()).unwrap_or(0),
                },
            );
            return Ok(Accepted {
                factors: next,
                method: "recovery_code",
                events: vec![used],
            });
        }
        let secret = self
            .open_totp(user, &t.secret)
            .map_err(|_| AccessError::CodeRejected {
                why: "the stored authenticator secret cannot be opened",
            })?;
        let step =
            totp::verify(&secret, code, t.last_step, now_secs(self.clock.now())).map_err(|e| {
                AccessError::CodeRejected {
                    why: match e {
                        totp::TotpError::Malformed => "a code is 6 digits",
                        totp::TotpError::Replayed => "it was already used",
                        totp::TotpError::Wrong => "it is wrong or too old",
                    },
                }
            })?;
        next.totp = Some(TotpFactor {
            secret: t.secret.clone(),
            last_step: Some(step),
        });
        Ok(Accepted {
            factors: next,
            method: "totp",
            events: Vec::new(),
        })
    }

    /// Writes the factors with a code used up over `version`: `false` if a concurrent request
    /// used the same code first (the compare-and-set that makes a code work once).
    pub(crate) async fn use_code(
        &self,
        user: &str,
        next: &Factors,
        version: i64,
        events: &[EventDraft],
    ) -> Result<bool, ServiceError> {
        match self
            .put_factors(user, next, Some(version), false, events)
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `breakglass totp enroll`: a new authenticator secret, waiting for confirmation. Replacing
    /// an authenticator that exists needs a fresh step-up with it first.
    pub async fn totp_enroll(&self, caller: &Caller) -> Result<Enrolment, ServiceError> {
        let user = caller.principal.name.to_string();
        if caller.principal.kind == PrincipalKind::Service {
            return Err(AccessError::ServiceCannotStepUp {
                action: caller.action.command().into(),
            }
            .into());
        }
        let existing = self.factors(&user).await?;
        if existing.as_ref().is_some_and(|(f, _)| f.totp.is_some()) {
            // Whoever holds only a token must not swap the authenticator for their own.
            self.access
                .check(caller, caller.action.replacing(), None, true)?;
        }
        let secret = totp::new_secret().map_err(internal)?;
        let sealed = self.sealer.seal(&secret, &totp_context(&user))?;
        let (mut f, version) = split(existing);
        f.pending_totp = Some(B64.encode(sealed));
        self.put_factors(&user, &f, version, false, &[]).await?;
        Ok(Enrolment {
            secret_base32: Secret::new(totp::base32(&secret)),
            uri: Secret::new(totp::uri(&secret, &user, TOTP_ISSUER)),
        })
    }

    /// `breakglass totp confirm CODE`: the first code proves the app has the secret. Issues the
    /// recovery codes (shown once; any earlier ones stop working) and counts as a step-up for
    /// this session.
    pub async fn totp_confirm(
        &self,
        caller: &Caller,
        code: &Secret,
    ) -> Result<Vec<Secret>, ServiceError> {
        let user = caller.principal.name.to_string();
        let Some((f, version)) = self.factors(&user).await? else {
            return Err(AccessError::NoPendingEnrolment { user }.into());
        };
        let Some(pending) = f.pending_totp.clone() else {
            return Err(AccessError::NoPendingEnrolment { user }.into());
        };
        let secret = self.open_totp(&user, &pending)?;
        let step = totp::verify(&secret, code.expose(), None, now_secs(self.clock.now()))
            .map_err(|_| AccessError::CodeRejected {
                why: "it does not match the new secret; check the app's clock and enter the current code",
            })?;
        let (codes, hashes) = recovery::generate(RECOVERY_CODES).map_err(internal)?;
        let mut next = f;
        next.totp = Some(TotpFactor {
            secret: pending,
            last_step: Some(step),
        });
        next.pending_totp = None;
        next.recovery = hashes;
        let actor = Actor::User(caller.principal.name.clone());
        let events = [
            EventDraft::new(
                actor.clone(),
                None,
                EventKind::UserTotpEnrolled {
                    principal: user.clone(),
                },
            ),
            EventDraft::new(
                actor,
                None,
                EventKind::UserRecoveryCodesIssued {
                    principal: user.clone(),
                    count: u32::try_from(codes.len()).unwrap_or(0),
                },
            ),
        ];
        self.put_factors(&user, &next, Some(version), false, &events)
            .await?;
        self.mark_stepped_up(caller, "totp").await?;
        Ok(codes)
    }

    /// `breakglass passwd`: the owner changes their password, proving the current one. A wrong
    /// current password is a failed sign-in: it counts toward the lock and is audited as
    /// `auth.failed`. A person with an authenticator also needs a fresh step-up (someone holding
    /// only their session cannot lock them out of their own account).
    pub async fn change_password(
        &self,
        caller: &Caller,
        current: &Secret,
        new: &Secret,
        source: &str,
    ) -> Result<(), ServiceError> {
        let user = caller.principal.name.to_string();
        self.check_locks(&throttle::sign_in_subjects(&user, source))
            .await?;
        let stored = self.factors(&user).await?;
        if stored.as_ref().is_some_and(|(f, _)| f.totp.is_some()) {
            self.access.step_up(caller, caller.action, None)?;
        }
        let ok = match stored.as_ref().and_then(|(f, _)| f.password.as_deref()) {
            Some(phc) => password::verify(current, phc).await,
            None => {
                password::verify_dummy(current).await;
                false
            }
        };
        let Some((f, version)) = stored.filter(|_| ok) else {
            return Err(self
                .failed(
                    Some(&user),
                    source,
                    "password change: wrong current password",
                    AccessError::SignInFailed,
                )
                .await);
        };
        password::check_new(new.expose(), &user).map_err(AccessError::WeakPassword)?;
        let mut next = f;
        next.password = Some(password::hash(new).await.map_err(internal)?);
        next.must_change = false;
        let event = EventDraft::new(
            Actor::User(caller.principal.name.clone()),
            None,
            EventKind::UserPasswordSet {
                principal: user.clone(),
                must_change: false,
            },
        );
        self.put_factors(&user, &next, Some(version), false, &[event])
            .await?;
        self.succeeded(&user, source).await?;
        Ok(())
    }
}
