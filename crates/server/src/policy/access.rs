//! Who may do what: the checks every action goes through (the token's scope, the Cedar policy, a
//! fresh second factor), each from the action's own requirements in the core, and the refusals
//! about who the caller is and what their session allows. Each refusal says what went wrong and
//! what to do; none contains a password, a code or a token secret.

use std::sync::Arc;

use breakglass_core::stepup::{self, StepUpRefusal};
use breakglass_core::{
    Action, Clock, Duration, PolicyAction, Principal, PrincipalKind, Role, Scope, Timestamp,
};

use super::{Catalog, Query};
use crate::signin::Caller;

/// Decides access for every service: scopes, policy and step-up, from the action.
#[derive(Debug)]
pub struct Access {
    catalog: Arc<Catalog>,
    clock: Arc<dyn Clock>,
    /// How recently a second factor must have been verified where an action needs one.
    step_up_window: Duration,
}

impl Access {
    pub fn new(catalog: Arc<Catalog>, clock: Arc<dyn Clock>, step_up_window: Duration) -> Self {
        Self {
            catalog,
            clock,
            step_up_window,
        }
    }

    pub fn step_up_window(&self) -> Duration {
        self.step_up_window
    }

    /// Everything `action` needs of the caller: its scope, policy's permission (on `role`, `own`
    /// if the grant or token is the caller's) and a fresh second factor.
    pub fn check(
        &self,
        caller: &Caller,
        action: Action,
        role: Option<&Role>,
        own: bool,
    ) -> Result<(), AccessError> {
        self.scope(caller, action)?;
        self.policy(caller, action, role.map(|r| r.id.as_str()), own)?;
        self.step_up(caller, action, role)
    }

    /// Refuses a scoped token an action outside its scopes.
    pub fn scope(&self, caller: &Caller, action: Action) -> Result<(), AccessError> {
        let (Some(scopes), Some(needed)) = (&caller.scopes, action.scope()) else {
            return Ok(());
        };
        if scopes.contains(&needed) {
            return Ok(());
        }
        Err(AccessError::ScopeMissing {
            token: caller.token_id.clone(),
            scope: needed.as_str(),
            scopes: scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Refuses unless policy lets the caller do what `action` needs policy for (nothing, for an
    /// action policy has no say in).
    pub fn policy(
        &self,
        caller: &Caller,
        action: Action,
        role: Option<&str>,
        own: bool,
    ) -> Result<(), AccessError> {
        let Some(policy) = action.policy() else {
            return Ok(());
        };
        if self.allowed(&caller.principal, policy, role, own) {
            return Ok(());
        }
        Err(AccessError::PolicyDenied {
            principal: caller.principal.name.to_string(),
            action: policy.as_str(),
            on: role.map_or_else(
                || "on this installation".to_owned(),
                |r| format!("on role `{r}`"),
            ),
        })
    }

    /// Whether policy lets `principal` do `action` (on `role`; `own` if the grant is theirs).
    pub fn allowed(
        &self,
        principal: &Principal,
        action: PolicyAction,
        role: Option<&str>,
        own: bool,
    ) -> bool {
        self.catalog.policies().is_allowed(&Query {
            principal,
            action,
            role,
            own,
        })
    }

    /// Refuses `action`, where it needs one, unless the caller verified a second factor within
    /// the step-up window (the core's rule). Service principals cannot step up: they pass only
    /// where `role` exempts them.
    pub fn step_up(
        &self,
        caller: &Caller,
        action: Action,
        role: Option<&Role>,
    ) -> Result<(), AccessError> {
        if !action.needs_step_up() {
            return Ok(());
        }
        let now = self.clock.now();
        stepup::check(
            &caller.principal,
            caller.stepped_up_at,
            self.step_up_window,
            role,
            now,
        )
        .map_err(|refusal| match refusal {
            StepUpRefusal::Required => AccessError::StepUpRequired {
                action: action.command().to_owned(),
                window: self.step_up_window.to_string(),
            },
            StepUpRefusal::ServiceNotExempt { role } => AccessError::ServiceStepUp {
                principal: caller.principal.name.to_string(),
                role,
                action: action.command().to_owned(),
            },
            StepUpRefusal::ServiceCannot => AccessError::ServiceCannotStepUp {
                action: action.command().to_owned(),
            },
        })
    }
}

/// Parses the scopes of a token to create for a principal of `kind`: known, allowed for it,
/// deduplicated (in the order given), at least one.
pub fn parse_scopes(kind: PrincipalKind, scopes: &[String]) -> Result<Vec<Scope>, AccessError> {
    let mut out: Vec<Scope> = Vec::new();
    for s in scopes {
        let s = s.trim();
        let Some(scope) = Scope::parse(s) else {
            return Err(AccessError::InvalidScopes(format!(
                "unknown scope `{}`",
                breakglass_core::text::shown(s, 40)
            )));
        };
        if kind == PrincipalKind::Service && !scope.allowed_for_services() {
            return Err(AccessError::InvalidScopes(format!(
                "a service token cannot have scope `{scope}`: a workload has no sign-in factors"
            )));
        }
        if !out.contains(&scope) {
            out.push(scope);
        }
    }
    if out.is_empty() {
        return Err(AccessError::InvalidScopes(
            "a token with scopes needs at least one".into(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_dedup_and_keep_factors_from_services() {
        let p =
            |k, s: &[&str]| parse_scopes(k, &s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>());
        assert_eq!(
            p(PrincipalKind::Service, &["read", "read", "request"]).unwrap(),
            vec![Scope::Read, Scope::Request]
        );
        assert!(p(PrincipalKind::Service, &["nuke"]).is_err());
        assert!(p(PrincipalKind::Service, &[]).is_err());
        let e = p(PrincipalKind::Service, &["read", "factors"]).unwrap_err();
        assert!(e.to_string().contains("cannot have scope `factors`"), "{e}");
        assert_eq!(
            p(PrincipalKind::Human, &["read", "factors"]).unwrap(),
            vec![Scope::Read, Scope::Factors]
        );
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccessError {
    /// The user name, the password or both are wrong (deliberately not saying which).
    #[error("sign-in failed: wrong user name or password")]
    SignInFailed,
    #[error(
        "sign-in for this account or from this address is locked until {until} after repeated failures"
    )]
    Locked { until: Timestamp },
    #[error("this account needs a code from its authenticator app")]
    CodeRequired,
    #[error("the code was not accepted: {why}")]
    CodeRejected { why: &'static str },
    #[error(
        "the password of `{user}` was set by an administrator and must be changed before signing in"
    )]
    PasswordChangeRequired { user: String },
    #[error("the new password is not acceptable: {0}")]
    WeakPassword(String),
    #[error("`{user}` has no authenticator enrolled")]
    TotpNotEnrolled { user: String },
    #[error("`{user}` already has an authenticator enrolled")]
    TotpAlreadyEnrolled { user: String },
    #[error("there is no authenticator enrolment waiting to be confirmed for `{user}`")]
    NoPendingEnrolment { user: String },
    #[error("{tries} wrong codes in a row ended this session")]
    SessionEnded { tries: u32 },
    #[error("`{action}` needs a second factor verified within the last {window}")]
    StepUpRequired { action: String, window: String },
    #[error(
        "service principal `{principal}` cannot step up, and role `{role}` does not exempt services from step-up for `{action}`"
    )]
    ServiceStepUp {
        principal: String,
        role: String,
        action: String,
    },
    #[error("`{action}` needs a second factor, which a service principal cannot give")]
    ServiceCannotStepUp { action: String },
    #[error("token `{token}` may be used for {scopes}, not `{scope}`")]
    ScopeMissing {
        token: String,
        scope: &'static str,
        scopes: String,
    },
    #[error("policy does not allow `{principal}` to `{action}` {on}")]
    PolicyDenied {
        principal: String,
        action: &'static str,
        on: String,
    },
    #[error(
        "`{principal}` may not make tokens for `{user}`: a person's tokens are made by that person"
    )]
    TokenForAnotherPerson { principal: String, user: String },
    #[error("{0}")]
    InvalidScopes(String),
}

impl AccessError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::SignInFailed => "sign_in_failed",
            Self::Locked { .. } => "locked",
            Self::CodeRequired => "totp_required",
            Self::CodeRejected { .. } => "code_rejected",
            Self::SessionEnded { .. } => "session_ended",
            Self::PasswordChangeRequired { .. } => "password_change_required",
            Self::WeakPassword(_) => "weak_password",
            Self::TotpNotEnrolled { .. } => "totp_not_enrolled",
            Self::TotpAlreadyEnrolled { .. } => "totp_already_enrolled",
            Self::NoPendingEnrolment { .. } => "no_pending_enrolment",
            Self::StepUpRequired { .. } => "step_up_required",
            Self::ServiceStepUp { .. } | Self::ServiceCannotStepUp { .. } => "step_up_impossible",
            Self::ScopeMissing { .. } => "scope_missing",
            Self::PolicyDenied { .. } => "policy_denied",
            Self::TokenForAnotherPerson { .. } => "forbidden",
            Self::InvalidScopes(_) => "invalid",
        }
    }

    /// 401 for what a fresh sign-in or step-up can fix, 429 for a lock, 403 or 422 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Self::SignInFailed
            | Self::CodeRequired
            | Self::CodeRejected { .. }
            | Self::SessionEnded { .. } => 401,
            Self::StepUpRequired { .. } => 401,
            Self::Locked { .. } => 429,
            Self::WeakPassword(_) | Self::InvalidScopes(_) => 422,
            Self::TotpAlreadyEnrolled { .. } | Self::NoPendingEnrolment { .. } => 409,
            _ => 403,
        }
    }

    pub fn help(&self) -> String {
        match self {
            Self::SignInFailed => "check the user name and password; repeated failures lock the account for a while".into(),
            Self::Locked { .. } => "wait until then and try again, or sign in from your usual address: failures from one address never lock out another; an administrator sees `auth.locked` in the audit log".into(),
            Self::CodeRequired => "run `breakglass login` at a terminal to be asked for it, or pass `--totp CODE`; a recovery code works in its place".into(),
            Self::CodeRejected { .. } => "use the current code from the authenticator app (each code works once), or a recovery code".into(),
            Self::SessionEnded { .. } => "sign in again with `breakglass login`; a session allows only a few wrong codes, so a stolen one cannot guess".into(),
            Self::PasswordChangeRequired { .. } => "run `breakglass login` at a terminal to pick a new password, or pass it with `--new-password-file`".into(),
            Self::WeakPassword(_) => "choose another password".into(),
            Self::TotpNotEnrolled { .. } => "enrol an authenticator app with `breakglass totp enroll`, then confirm it with `breakglass totp confirm CODE`".into(),
            Self::TotpAlreadyEnrolled { .. } => "to replace it, ask an administrator to run `breakglass users reset-totp NAME`, then enrol again".into(),
            Self::NoPendingEnrolment { .. } => "start with `breakglass totp enroll`".into(),
            Self::StepUpRequired { .. } => "run `breakglass step-up` (or pass `--totp CODE` to this command) and try again".into(),
            Self::ServiceStepUp { .. } => "have a person do it, or set `[step_up] exempt_services = true` in the role file if this automation is meant to".into(),
            Self::ServiceCannotStepUp { .. } => "have a person do it".into(),
            Self::ScopeMissing { .. } => "create a token with the scope it needs (`breakglass tokens create --scopes ...`)".into(),
            Self::PolicyDenied { principal, action, on } => {
                let role = on.strip_prefix("on role `").and_then(|r| r.strip_suffix('`'));
                match role {
                    Some(r) => format!("see why with `breakglass policy explain --principal {principal} --action {action} --role {r}`"),
                    None => format!("see why with `breakglass policy explain --principal {principal} --action {action}`"),
                }
            }
            Self::TokenForAnotherPerson { .. } => "the person signs in with `breakglass login` and makes their own token with `breakglass tokens create`; administrators make tokens for service principals".into(),
            Self::InvalidScopes(_) => format!(
                "scopes are: {} (`factors` is for a person's own tokens only)",
                Scope::ALL.map(Scope::as_str).join(", ")
            ),
        }
    }
}
