//! Refusals about who the caller is and what their session allows: sign-in failures, locks,
//! step-up, token scopes and policy. Each says what went wrong and what to do; none contains a
//! password, a code or a token secret.

use breakglass_core::Timestamp;

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
    #[error(
        "an emergency use of role `{role}` by `{principal}` (grant {grant}) has owed a review since {due}"
    )]
    EmergencyReviewOverdue {
        role: String,
        principal: String,
        grant: String,
        due: Timestamp,
    },
}

impl AccessError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::SignInFailed => "sign_in_failed",
            Self::Locked { .. } => "locked",
            Self::CodeRequired => "totp_required",
            Self::CodeRejected { .. } => "code_rejected",
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
            Self::EmergencyReviewOverdue { .. } => "review_overdue",
        }
    }

    /// 401 for what a fresh sign-in or step-up can fix, 429 for a lock, 403 or 422 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Self::SignInFailed | Self::CodeRequired | Self::CodeRejected { .. } => 401,
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
            Self::Locked { .. } => "wait until then and try again; an administrator sees the `auth.locked` event in the audit log".into(),
            Self::CodeRequired => "run `breakglass login` at a terminal to be asked for it, or pass `--totp CODE`; a recovery code works in its place".into(),
            Self::CodeRejected { .. } => "use the current code from the authenticator app (each code works once), or a recovery code".into(),
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
            Self::InvalidScopes(_) => "scopes are: read, request, credential, approve, revoke, admin".into(),
            Self::EmergencyReviewOverdue { .. } => "ask for a review of that use first, or request the role the normal way (`breakglass request ROLE` without --emergency) so approvers decide".into(),
        }
    }
}

/// What each API token scope allows.
pub const SCOPES: [&str; 6] = [
    "read",
    "request",
    "credential",
    "approve",
    "revoke",
    "admin",
];

/// The scope an API action needs; `None` for what any token may do (who am I, sign out).
pub fn scope_of(action: &str) -> Option<&'static str> {
    Some(match action {
        "grant.request" | "grant.cancel" | "grant.extend" => "request",
        "grant.credential" => "credential",
        "grant.approve" | "grant.deny" => "approve",
        "grant.revoke" => "revoke",
        "user.add"
        | "user.password_reset"
        | "user.totp_reset"
        | "user.disable"
        | "user.enable"
        | "token.create" => "admin",
        "auth.logout" | "auth.step_up" | "totp.enroll" | "totp.confirm" | "user.password" => {
            return None;
        }
        _ => "read",
    })
}

/// Parses the scopes of a token to create: known, deduplicated, at least one.
pub fn parse_scopes(scopes: &[String]) -> Result<Vec<String>, AccessError> {
    let mut out: Vec<String> = Vec::new();
    for s in scopes {
        let s = s.trim();
        if !SCOPES.contains(&s) {
            return Err(AccessError::InvalidScopes(format!(
                "unknown scope `{}`",
                s.chars().take(40).collect::<String>()
            )));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    if out.is_empty() {
        return Err(AccessError::InvalidScopes(
            "a service token needs at least one scope".into(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_the_scope_it_needs() {
        assert_eq!(scope_of("grant.request"), Some("request"));
        assert_eq!(scope_of("grant.credential"), Some("credential"));
        assert_eq!(scope_of("grant.list"), Some("read"));
        assert_eq!(scope_of("user.add"), Some("admin"));
        assert_eq!(scope_of("auth.logout"), None);
        assert!(parse_scopes(&["nuke".into()]).is_err());
        assert!(parse_scopes(&[]).is_err());
        assert_eq!(
            parse_scopes(&["read".into(), "read".into(), "request".into()]).ok(),
            Some(vec!["read".to_owned(), "request".to_owned()])
        );
    }
}
