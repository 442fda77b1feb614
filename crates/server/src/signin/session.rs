//! Sessions: signing in (password, then a code where an authenticator is enrolled), signing out,
//! stepping up, and authenticating the token presented with each request.

use breakglass_core::{Action, Actor, EventDraft, EventKind, Name, PrincipalKind, Timestamp};
use breakglass_providers::Secret;
use breakglass_store::TokenKind;

use super::crypto::password;
use super::factors::Factors;
use super::tokens::{self, NewToken};
use super::{Caller, SignIn, internal, throttle};
use crate::error::{AuthError, AuthFailure, ServiceError};
use crate::policy::AccessError;

/// What signing in asks for.
pub struct SignInRequest {
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

impl SignIn {
    /// Checks a presented API token, loads its principal, and says what the route does.
    pub async fn authenticate(
        &self,
        presented: &str,
        action: Action,
    ) -> Result<Caller, AuthFailure> {
        let (id, secret) = tokens::parse(presented).ok_or(AuthError::Malformed)?;
        let record = self.store.token(id).await.map_err(ServiceError::from)?;
        let Some(record) = record.filter(|r| tokens::matches(r, secret)) else {
            return Err(AuthError::Unknown(id.to_owned()).into());
        };
        if record.revoked_at.is_some() {
            return Err(AuthError::Revoked(id.to_owned()).into());
        }
        if self.clock.now() >= record.expires_at {
            return Err(AuthError::Expired(id.to_owned()).into());
        }
        let principal = self
            .store
            .principal(&record.principal)
            .await
            .map_err(ServiceError::from)?
            .ok_or_else(|| AuthError::Unknown(id.to_owned()))?;
        if principal.disabled {
            return Err(AuthError::Disabled(principal.name.to_string()).into());
        }
        Ok(Caller {
            principal,
            scopes: record.scopes,
            token_id: record.id,
            token_kind: record.kind,
            stepped_up_at: record.stepped_up_at,
            action,
        })
    }

    /// `breakglass login`: user + password (+ code) for a session token.
    pub async fn sign_in(&self, req: SignInRequest) -> Result<Session, ServiceError> {
        let source = req.source.clone();
        self.check_locks(&throttle::sign_in_subjects(&req.user, &source))
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
                .failed(
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
                .failed(
                    Some(&user),
                    &source,
                    "wrong password",
                    AccessError::SignInFailed,
                )
                .await);
        }
        if p.disabled {
            return Err(self
                .failed(
                    Some(&user),
                    &source,
                    "account disabled",
                    AccessError::SignInFailed,
                )
                .await);
        }
        let mut next: Factors = f.clone();
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
                    return Err(self.failed(Some(&user), &source, &reason, e).await);
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
        let mut token = tokens::issue(
            &user,
            TokenKind::Session,
            None,
            self.settings.session_ttl,
            now,
        )?;
        if stepped_up {
            token.record.stepped_up_at = Some(now);
        }
        // The code is used up (and the password changed) before the session exists: a race
        // with the same code loses here with a conflict.
        if (!events.is_empty() || stepped_up)
            && !self.use_code(&user, &next, version, &events).await?
        {
            return Err(self
                .failed(
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
        self.succeeded(&user, &source).await?;
        Ok(Session {
            token,
            method,
            totp_enrolled: next.totp.is_some(),
        })
    }

    /// `breakglass logout`: the caller's own session or token stops working.
    pub async fn sign_out(&self, caller: &Caller) -> Result<(), ServiceError> {
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
    ) -> Result<Timestamp, ServiceError> {
        let user = caller.principal.name.to_string();
        if caller.principal.kind == PrincipalKind::Service {
            return Err(AccessError::ServiceCannotStepUp {
                action: caller.action.command().into(),
            }
            .into());
        }
        // No lock on the account or the address blocks the step-up of a session
        // that already signed in: wrong codes count against this session alone.
        let Some((f, version)) = self.factors(&user).await? else {
            return Err(AccessError::TotpNotEnrolled { user }.into());
        };
        let a = match self.accept_code(&caller.principal, &f, code.expose()) {
            Ok(a) => a,
            Err(e @ AccessError::TotpNotEnrolled { .. }) => return Err(e.into()),
            Err(e) => {
                let reason = e.to_string();
                return Err(self
                    .step_up_failed(&user, &caller.token_id, source, &reason, e)
                    .await);
            }
        };
        if !self.use_code(&user, &a.factors, version, &a.events).await? {
            return Err(AccessError::CodeRejected {
                why: "it was already used",
            }
            .into());
        }
        self.step_up_succeeded(&caller.token_id).await?;
        self.mark_stepped_up(caller, a.method).await
    }

    pub(crate) async fn mark_stepped_up(
        &self,
        caller: &Caller,
        how: &str,
    ) -> Result<Timestamp, ServiceError> {
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
}
