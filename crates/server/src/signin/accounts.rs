//! What administrators do to accounts: add people and services, reset a forgotten password or a
//! lost authenticator, disable and enable. Each needs the `admin` scope, policy's `administer`
//! and a fresh step-up (the caller's action says so), and each reset ends every token the person
//! holds, API tokens included.

use breakglass_core::text::shown;
use breakglass_core::{Actor, DomainError, EventDraft, EventKind, Name, Principal, PrincipalKind};
use breakglass_providers::Secret;

use super::crypto::password;
use super::factors::split;
use super::{Caller, SignIn, internal};
use crate::error::ServiceError;
use crate::policy::AccessError;

impl SignIn {
    /// Adds a principal. A person gets a one-time password (returned, shown once) to change at
    /// first sign-in; a service principal signs in only with scoped tokens.
    pub async fn add_user(
        &self,
        caller: &Caller,
        name: &str,
        kind: PrincipalKind,
        groups: &[String],
    ) -> Result<(Principal, Option<Secret>), ServiceError> {
        self.access.check(caller, caller.action, None, false)?;
        let name: Name = name.parse()?;
        if breakglass_core::review::is_reserved_name(name.as_str()) {
            return Err(DomainError::ReservedName {
                name: name.to_string(),
            }
            .into());
        }
        let groups = groups
            .iter()
            .map(|g| g.parse::<Name>())
            .collect::<Result<_, _>>()?;
        let now = self.clock.now();
        let p = Principal {
            name,
            kind,
            groups,
            disabled: false,
            created_at: now,
        };
        let event = EventDraft::new(
            Actor::User(caller.principal.name.clone()),
            None,
            EventKind::PrincipalCreated {
                name: p.name.to_string(),
                kind: match kind {
                    PrincipalKind::Human => "human".into(),
                    PrincipalKind::Service => "service".into(),
                },
                groups: p.groups.iter().map(ToString::to_string).collect(),
            },
        );
        self.store.create_principal(&p, &[event], now).await?;
        let initial = match kind {
            PrincipalKind::Human => Some(self.set_initial_password(caller, &p).await?),
            PrincipalKind::Service => None,
        };
        Ok((p, initial))
    }

    /// Every principal; what policy's `read_audit` allows.
    pub async fn users(&self, caller: &Caller) -> Result<Vec<Principal>, ServiceError> {
        self.access.check(caller, caller.action, None, false)?;
        Ok(self.store.principals().await?)
    }

    /// An administrator sets a one-time password for a person (new, or locked out): shown once,
    /// to be changed at the next sign-in. Every token they hold ends.
    pub async fn reset_password(
        &self,
        caller: &Caller,
        user: &str,
    ) -> Result<Secret, ServiceError> {
        self.access.check(caller, caller.action, None, false)?;
        let p = self.person(user).await?;
        self.set_initial_password(caller, &p).await
    }

    async fn set_initial_password(
        &self,
        caller: &Caller,
        p: &Principal,
    ) -> Result<Secret, ServiceError> {
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
        // INVARIANT(6): a reset ends every token the person holds, so a stolen one cannot
        // outlive it and enrol its holder's own authenticator.
        self.put_factors(p.name.as_str(), &f, version, true, &[event])
            .await?;
        Ok(initial)
    }

    /// An administrator removes a person's authenticator (lost phone); they enrol again. Every
    /// token they hold ends.
    pub async fn reset_totp(&self, caller: &Caller, user: &str) -> Result<(), ServiceError> {
        self.access.check(caller, caller.action, None, false)?;
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
    /// (Its grants are ended by the grant service: see `Grants::end_for_disabled`.)
    pub async fn set_disabled(
        &self,
        caller: &Caller,
        user: &str,
        disabled: bool,
    ) -> Result<Principal, ServiceError> {
        self.access.check(caller, caller.action, None, false)?;
        let p = self.principal(user).await?;
        if disabled && p.name == caller.principal.name {
            return Err(DomainError::InvalidField {
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
        Ok(self.store.principal(p.name.as_str()).await?.unwrap_or(p))
    }

    /// The principal named `user`, or a refusal naming it.
    pub async fn principal(&self, user: &str) -> Result<Principal, ServiceError> {
        Ok(self
            .store
            .principal(user)
            .await?
            .ok_or_else(|| DomainError::UnknownPrincipal {
                name: shown(user, 80),
            })?)
    }

    async fn person(&self, user: &str) -> Result<Principal, ServiceError> {
        let p = self.principal(user).await?;
        if p.kind == PrincipalKind::Service {
            return Err(DomainError::InvalidField {
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
}
