//! Local sign-in (invariant 5: it depends on nothing outside the broker): passwords, TOTP,
//! recovery codes, sessions, step-up, and the administrator's account commands.
//!
//! A principal's factors are one JSON record in the store ([`Factors`]), replaced by
//! compare-and-set: accepting a TOTP code writes its step in the same compare-and-set, so a code
//! is accepted once however many requests race with it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use breakglass_core::{
    Actor, Duration, EventDraft, EventKind, Name, Principal, PrincipalKind, Role, Timestamp,
};
use breakglass_providers::Secret;
use breakglass_store::{StoreError, StoredLogin, ThrottlePolicy, TokenKind};
use serde::{Deserialize, Serialize};

use crate::access::AccessError;
use crate::apitoken::{self, NewToken};
use crate::auth::{password, recovery, totp};
use crate::broker::{Broker, BrokerError, Caller};

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
/// How many recovery codes are issued at once.
const RECOVERY_CODES: usize = 10;
/// The issuer an authenticator app shows next to the account.
const TOTP_ISSUER: &str = "breakglass";

/// A principal's sign-in factors as stored (the store keeps this JSON opaque).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Factors {
    /// Argon2id PHC string.
    #[serde(default)]
    password: Option<String>,
    /// Set by an administrator: the owner must pick a new password at the next sign-in.
    #[serde(default)]
    must_change: bool,
    #[serde(default)]
    totp: Option<TotpFactor>,
    /// An enrolment started and not yet confirmed (sealed secret, base64).
    #[serde(default)]
    pending_totp: Option<String>,
    /// SHA-256 (hex) of each unused recovery code.
    #[serde(default)]
    recovery: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TotpFactor {
    /// The secret sealed under the store's key (base64).
    secret: String,
    /// The last accepted time step: no code at or before it is accepted again.
    last_step: Option<u64>,
}

/// What signing in asks for.
pub struct SignIn {
    pub user: String,
    pub password: Secret,
    pub code: Option<Secret>,
    pub new_password: Option<Secret>,
    /// The peer address, for throttling and the audit trail.
    pub source: String,
}

/// A session just made: its token (shown once) and what the client should tell the user.
pub struct Session {
    pub token: NewToken,
    pub method: &'static str,
    pub totp_enrolled: bool,
}

/// An enrolment started: the secret for the authenticator app (shown once).
pub struct Enrolment {
    pub secret_base32: Secret,
    pub uri: Secret,
}

fn totp_context(user: &str) -> String {
    format!("totp:{user}")
}

fn now_secs(now: Timestamp) -> u64 {
    u64::try_from(now.unix_millis() / 1000).unwrap_or(0)
}

impl Broker {
    async fn factors(&self, user: &str) -> Result<Option<(Factors, i64)>, BrokerError> {
        let Some(StoredLogin { body, version }) = self.store.login(user).await? else {
            return Ok(None);
        };
        let f: Factors = serde_json::from_str(&body)
            .map_err(|e| StoreError::Corrupt(format!("sign-in record of `{user}`: {e}")))?;
        Ok(Some((f, version)))
    }

    async fn put_factors(
        &self,
        user: &str,
        f: &Factors,
        expected: Option<i64>,
        revoke_sessions: bool,
        events: &[EventDraft],
    ) -> Result<(), BrokerError> {
        let body = serde_json::to_string(f)
            .map_err(|e| StoreError::Corrupt(format!("sign-in record: {e}")))?;
        self.store
            .put_login(
                user,
                &body,
                expected,
                revoke_sessions,
                events,
                self.clock.now(),
            )
            .await?;
        Ok(())
    }

    fn open_totp(&self, user: &str, sealed_b64: &str) -> Result<Vec<u8>, BrokerError> {
        let sealed = B64
            .decode(sealed_b64)
            .map_err(|e| StoreError::Corrupt(format!("sealed TOTP secret of `{user}`: {e}")))?;
        Ok(self.sealer().open(&sealed, &totp_context(user))?)
    }

    /// Refuses while the account or the source is locked.
    async fn check_locks(&self, subjects: &[String]) -> Result<(), BrokerError> {
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

    /// Counts a failure against the subjects and audits it (`auth.failed`, and `auth.locked`
    /// when this one locks), then returns `err` for the caller.
    async fn sign_in_failed(
        &self,
        user: Option<&str>,
        source: &str,
        reason: &str,
        err: AccessError,
    ) -> BrokerError {
        let mut subjects = vec![(format!("source {source}"), SOURCE_THROTTLE)];
        if let Some(u) = user {
            subjects.insert(0, (format!("account {u}"), ACCOUNT_THROTTLE));
        }
        let event = EventDraft::new(
            Actor::System("auth"),
            None,
            EventKind::AuthFailed {
                principal: user.map(|u| u.chars().take(80).collect()),
                source: source.to_owned(),
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

    /// Checks `code` (a TOTP code or a recovery code) against `f` and returns the factors with
    /// the code used up, and the method name.
    fn accept_code(&self, p: &Principal, f: &Factors, code: &str) -> Result<Accepted, AccessError> {
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
    async fn use_code(
        &self,
        user: &str,
        next: &Factors,
        version: i64,
        events: &[EventDraft],
    ) -> Result<bool, BrokerError> {
        match self
            .put_factors(user, next, Some(version), false, events)
            .await
        {
            Ok(()) => Ok(true),
            Err(BrokerError::Store(StoreError::Conflict)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `breakglass login`: user + password (+ code) for a session token.
    pub async fn sign_in(&self, req: SignIn) -> Result<Session, BrokerError> {
        let source = req.source.clone();
        let user_subject = format!("account {}", req.user.chars().take(80).collect::<String>());
        self.check_locks(&[user_subject, format!("source {source}")])
            .await?;
        let principal = match req.user.parse::<Name>() {
            Ok(n) => self.store.principal(n.as_str()).await?,
            Err(_) => None,
        };
        let known = match principal {
            Some(p) => self
                .factors(p.name.as_str())
                .await?
                .and_then(|(f, v)| f.password.clone().map(|phc| (p, f, v, phc))),
            None => None,
        };
        let Some((p, f, version, phc)) = known else {
            // As slow as a wrong password, so the answer does not tell which names exist.
            password::verify_dummy(&req.password).await;
            return Err(self
                .sign_in_failed(
                    Some(&req.user),
                    &source,
                    "no such user, or no password set",
                    AccessError::SignInFailed,
                )
                .await);
        };
        let user = p.name.to_string();
        if !password::verify(&req.password, &phc).await {
            return Err(self
                .sign_in_failed(
                    Some(&user),
                    &source,
                    "wrong password",
                    AccessError::SignInFailed,
                )
                .await);
        }
        if p.disabled {
            return Err(self
                .sign_in_failed(
                    Some(&user),
                    &source,
                    "account disabled",
                    AccessError::SignInFailed,
                )
                .await);
        }
        let mut next = f.clone();
        let mut method = "password";
        let mut events = Vec::new();
        if f.totp.is_some() {
            let Some(code) = &req.code else {
                return Err(AccessError::CodeRequired.into());
            };
            match self.accept_code(&p, &f, code.expose()) {
                Ok(a) => {
                    method = if a.method == "recovery_code" {
                        "password+recovery_code"
                    } else {
                        "password+totp"
                    };
                    events = a.events;
                    next = a.factors;
                }
                Err(e) => {
                    let reason = match &e {
                        AccessError::CodeRejected { why } => format!("code rejected: {why}"),
                        other => other.to_string(),
                    };
                    return Err(self.sign_in_failed(Some(&user), &source, &reason, e).await);
                }
            }
        }
        if f.must_change {
            let Some(new) = &req.new_password else {
                return Err(AccessError::PasswordChangeRequired { user }.into());
            };
            password::check_new(new.expose(), &user).map_err(AccessError::WeakPassword)?;
            if password::verify(new, &phc).await {
                return Err(AccessError::WeakPassword(
                    "it is the password an administrator set; pick your own".into(),
                )
                .into());
            }
            next.password = Some(password::hash(new).await.map_err(internal)?);
            next.must_change = false;
            events.push(EventDraft::new(
                Actor::User(p.name.clone()),
                None,
                EventKind::UserPasswordSet {
                    principal: user.clone(),
                    must_change: false,
                },
            ));
        }
        let now = self.clock.now();
        let stepped_up = method != "password";
        let mut token =
            apitoken::issue(&user, TokenKind::Session, None, self.auth.session_ttl, now)?;
        if stepped_up {
            token.record.stepped_up_at = Some(now);
        }
        // The code is used up (and the password changed) before the session exists: a race
        // with the same code loses here with a conflict.
        if (!events.is_empty() || stepped_up)
            && !self.use_code(&user, &next, version, &events).await?
        {
            return Err(self
                .sign_in_failed(
                    Some(&user),
                    &source,
                    "code rejected: used by a concurrent sign-in",
                    AccessError::CodeRejected {
                        why: "it was already used",
                    },
                )
                .await);
        }
        let event = EventDraft::new(
            Actor::User(p.name.clone()),
            None,
            EventKind::AuthLogin {
                principal: user.clone(),
                token_id: token.record.id.clone(),
                method: method.to_owned(),
                source: source.clone(),
            },
        );
        self.store
            .create_token(&token.record, &[event], now)
            .await?;
        self.store
            .clear_auth_failures(&format!("account {user}"))
            .await?;
        Ok(Session {
            token,
            method,
            totp_enrolled: next.totp.is_some(),
        })
    }

    /// `breakglass logout`: the caller's own session or token stops working.
    pub async fn sign_out(&self, caller: &Caller) -> Result<(), BrokerError> {
        let event = EventDraft::new(
            Actor::User(caller.principal.name.clone()),
            None,
            EventKind::AuthLogout {
                principal: caller.principal.name.to_string(),
                token_id: caller.token_id.clone(),
            },
        );
        self.store
            .revoke_token(&caller.token_id, &[event], self.clock.now())
            .await?;
        Ok(())
    }

    /// `breakglass step-up`: verifies a second factor for the caller's session or token.
    pub async fn step_up(
        &self,
        caller: &Caller,
        code: &Secret,
        source: &str,
    ) -> Result<Timestamp, BrokerError> {
        let user = caller.principal.name.to_string();
        if caller.principal.kind == PrincipalKind::Service {
            return Err(AccessError::ServiceCannotStepUp {
                action: "step-up".into(),
            }
            .into());
        }
        self.check_locks(&[format!("account {user}"), format!("source {source}")])
            .await?;
        let Some((f, version)) = self.factors(&user).await? else {
            return Err(AccessError::TotpNotEnrolled { user }.into());
        };
        let a = match self.accept_code(&caller.principal, &f, code.expose()) {
            Ok(a) => a,
            Err(e @ AccessError::TotpNotEnrolled { .. }) => return Err(e.into()),
            Err(e) => {
                let reason = format!("step-up: {e}");
                return Err(self.sign_in_failed(Some(&user), source, &reason, e).await);
            }
        };
        if !self.use_code(&user, &a.factors, version, &a.events).await? {
            return Err(AccessError::CodeRejected {
                why: "it was already used",
            }
            .into());
        }
        self.mark_stepped_up(caller, a.method).await
    }

    async fn mark_stepped_up(&self, caller: &Caller, how: &str) -> Result<Timestamp, BrokerError> {
        let now = self.clock.now();
        let event = EventDraft::new(
            Actor::User(caller.principal.name.clone()),
            None,
            EventKind::AuthSteppedUp {
                principal: caller.principal.name.to_string(),
                token_id: caller.token_id.clone(),
                method: how.to_owned(),
            },
        );
        self.store.step_up(&caller.token_id, &[event], now).await?;
        Ok(now)
    }

    /// `breakglass totp enroll`: a new authenticator secret, waiting for confirmation.
    pub async fn totp_enroll(&self, caller: &Caller) -> Result<Enrolment, BrokerError> {
        let user = caller.principal.name.to_string();
        if caller.principal.kind == PrincipalKind::Service {
            return Err(AccessError::ServiceCannotStepUp {
                action: "totp enroll".into(),
            }
            .into());
        }
        let existing = self.factors(&user).await?;
        if existing.as_ref().is_some_and(|(f, _)| f.totp.is_some()) {
            return Err(AccessError::TotpAlreadyEnrolled { user }.into());
        }
        let secret = totp::new_secret().map_err(internal)?;
        let sealed = self.sealer().seal(&secret, &totp_context(&user))?;
        let (mut f, version) = split(existing);
        f.pending_totp = Some(B64.encode(sealed));
        self.put_factors(&user, &f, version, false, &[]).await?;
        Ok(Enrolment {
            secret_base32: Secret::new(totp::base32(&secret)),
            uri: Secret::new(totp::uri(&secret, &user, TOTP_ISSUER)),
        })
    }

    /// `breakglass totp confirm CODE`: the first code proves the app has the secret. Issues the
    /// recovery codes (shown once) and counts as a step-up for this session.
    pub async fn totp_confirm(
        &self,
        caller: &Caller,
        code: &Secret,
    ) -> Result<Vec<Secret>, BrokerError> {
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

    /// `breakglass passwd`: the owner changes their password, proving the current one.
    pub async fn change_password(
        &self,
        caller: &Caller,
        current: &Secret,
        new: &Secret,
    ) -> Result<(), BrokerError> {
        let user = caller.principal.name.to_string();
        let Some((f, version)) = self.factors(&user).await? else {
            return Err(AccessError::SignInFailed.into());
        };
        let ok = match &f.password {
            Some(phc) => password::verify(current, phc).await,
            None => false,
        };
        if !ok {
            return Err(AccessError::SignInFailed.into());
        }
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
            .await
    }

    /// An administrator sets a one-time password for a person (new, or locked out): shown once,
    /// to be changed at the next sign-in. Every session they hold ends.
    pub async fn reset_password(&self, caller: &Caller, user: &str) -> Result<Secret, BrokerError> {
        let p = self.person(user).await?;
        let initial = password::generate_initial().map_err(internal)?;
        let phc = password::hash(&initial).await.map_err(internal)?;
        let (mut f, version) = split(self.factors(p.name.as_str()).await?);
        f.password = Some(phc);
        f.must_change = true;
        let event = EventDraft::new(
            Actor::User(caller.principal.name.clone()),
            None,
            EventKind::UserPasswordSet {
                principal: p.name.to_string(),
                must_change: true,
            },
        );
        self.put_factors(p.name.as_str(), &f, version, true, &[event])
            .await?;
        Ok(initial)
    }

    /// An administrator removes a person's authenticator (lost phone); they enrol again.
    pub async fn reset_totp(&self, caller: &Caller, user: &str) -> Result<(), BrokerError> {
        let p = self.person(user).await?;
        let Some((mut f, version)) = self.factors(p.name.as_str()).await? else {
            return Err(AccessError::TotpNotEnrolled {
                user: p.name.to_string(),
            }
            .into());
        };
        if f.totp.is_none() && f.pending_totp.is_none() {
            return Err(AccessError::TotpNotEnrolled {
                user: p.name.to_string(),
            }
            .into());
        }
        f.totp = None;
        f.pending_totp = None;
        f.recovery.clear();
        let event = EventDraft::new(
            Actor::User(caller.principal.name.clone()),
            None,
            EventKind::UserTotpReset {
                principal: p.name.to_string(),
            },
        );
        self.put_factors(p.name.as_str(), &f, Some(version), true, &[event])
            .await
    }

    /// Disables (or re-enables) a principal; disabling ends every token and session it holds.
    pub async fn set_disabled(
        &self,
        caller: &Caller,
        user: &str,
        disabled: bool,
    ) -> Result<Principal, BrokerError> {
        let p = self.principal(user).await?;
        if disabled && p.name == caller.principal.name {
            return Err(breakglass_core::DomainError::InvalidField {
                field: "user",
                problem: "you cannot disable yourself; another administrator can".into(),
            }
            .into());
        }
        let event = EventDraft::new(
            Actor::User(caller.principal.name.clone()),
            None,
            EventKind::UserDisabled {
                principal: p.name.to_string(),
                disabled,
            },
        );
        self.store
            .set_disabled(p.name.as_str(), disabled, &[event], self.clock.now())
            .await?;
        Ok(self.store.principal(user).await?.unwrap_or(p))
    }

    /// The principal named `user`, or a refusal naming it.
    pub async fn principal(&self, user: &str) -> Result<Principal, BrokerError> {
        Ok(self.store.principal(user).await?.ok_or_else(|| {
            breakglass_core::DomainError::UnknownPrincipal {
                name: user.chars().take(80).collect(),
            }
        })?)
    }

    async fn person(&self, user: &str) -> Result<Principal, BrokerError> {
        let p = self.principal(user).await?;
        if p.kind == PrincipalKind::Service {
            return Err(breakglass_core::DomainError::InvalidField {
                field: "user",
                problem: format!(
                    "`{}` is a service principal: it signs in with scoped tokens, not a password",
                    p.name
                ),
            }
            .into());
        }
        Ok(p)
    }

    /// Refuses `action` unless the caller verified a second factor within the step-up window.
    /// Service principals cannot step up: they pass only where `role` exempts them.
    pub(crate) fn require_step_up(
        &self,
        caller: &Caller,
        action: &str,
        role: Option<&Role>,
    ) -> Result<(), AccessError> {
        if caller.principal.kind == PrincipalKind::Service {
            return match role {
                Some(r) if r.step_up_exempt_services => Ok(()),
                Some(r) => Err(AccessError::ServiceStepUp {
                    principal: caller.principal.name.to_string(),
                    role: r.id.to_string(),
                    action: action.to_owned(),
                }),
                None => Err(AccessError::ServiceCannotStepUp {
                    action: action.to_owned(),
                }),
            };
        }
        let now = self.clock.now();
        let window = self.auth.step_up_window.as_secs().saturating_mul(1000);
        let fresh = caller
            .stepped_up_at
            .is_some_and(|at| now.unix_millis().saturating_sub(at.unix_millis()) <= window);
        if fresh {
            Ok(())
        } else {
            Err(AccessError::StepUpRequired {
                action: action.to_owned(),
                window: self.auth.step_up_window.to_string(),
            })
        }
    }
}

/// A code accepted: the factors with it used up, how (`totp`, `recovery_code`), and the events
/// that owes (a recovery code's use).
struct Accepted {
    factors: Factors,
    method: &'static str,
    events: Vec<EventDraft>,
}

/// Stored factors and their version, or fresh ones to insert.
fn split(stored: Option<(Factors, i64)>) -> (Factors, Option<i64>) {
    stored.map_or((Factors::default(), None), |(f, v)| (f, Some(v)))
}

fn internal(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Internal(e.to_string())
}

/// Sign-in settings (`[auth]` in the config file).
#[derive(Clone, Copy, Debug)]
pub struct AuthSettings {
    /// How long a session from `login` lasts.
    pub session_ttl: Duration,
    /// How recently a second factor must have been verified for approve, reveal, revoke of
    /// another's grant, extend, emergency requests and administration.
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
