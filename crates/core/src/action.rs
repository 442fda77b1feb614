//! Every action a caller can ask of the broker, and what each one needs: the token scope, whether
//! a fresh second factor (step-up), the Cedar action that decides it, and the name it is audited
//! under (`auth.denied`'s `action`).
//!
//! All of it comes from exhaustive `match`es: an action added without its scope, step-up rule,
//! policy action and audit name does not compile. Strings exist only at the edges: the scope names
//! stored with a token, the Cedar action ids, the audit names.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What an API token may be used for. A token without scopes (a session, or a person's own token
/// made without `--scopes`) may do everything its principal may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// See roles, grants one may see, the audit trail where policy allows.
    Read,
    /// Request, extend and cancel grants.
    Request,
    /// Collect a grant's credential.
    Credential,
    /// Approve and deny requests.
    Approve,
    /// Revoke grants.
    Revoke,
    /// Administer users and tokens.
    Admin,
    /// Change one's own sign-in factors (password, authenticator) and revoke one's own other
    /// tokens. Never held by a service principal's token: only by sessions and a person's tokens.
    Factors,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::Read,
        Scope::Request,
        Scope::Credential,
        Scope::Approve,
        Scope::Revoke,
        Scope::Admin,
        Scope::Factors,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Request => "request",
            Self::Credential => "credential",
            Self::Approve => "approve",
            Self::Revoke => "revoke",
            Self::Admin => "admin",
            Self::Factors => "factors",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Whether a service principal's token may hold this scope. A workload has no sign-in factors
    /// to change.
    pub fn allowed_for_services(self) -> bool {
        !matches!(self, Self::Factors)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The actions Cedar policies decide (`Breakglass::Action::"<id>"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyAction {
    Request,
    Emergency,
    Approve,
    Revoke,
    Review,
    Read,
    ReadAudit,
    Administer,
}

impl PolicyAction {
    pub const ALL: [PolicyAction; 8] = [
        PolicyAction::Request,
        PolicyAction::Emergency,
        PolicyAction::Approve,
        PolicyAction::Revoke,
        PolicyAction::Review,
        PolicyAction::Read,
        PolicyAction::ReadAudit,
        PolicyAction::Administer,
    ];

    /// The Cedar action id.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Emergency => "emergency",
            Self::Approve => "approve",
            Self::Revoke => "revoke",
            Self::Review => "review",
            Self::Read => "read",
            Self::ReadAudit => "read_audit",
            Self::Administer => "administer",
        }
    }

    pub fn parse(s: &str) -> Option<PolicyAction> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Whether the resource is a role (otherwise it is the installation).
    pub fn is_about_a_role(self) -> bool {
        match self {
            Self::Request
            | Self::Emergency
            | Self::Approve
            | Self::Revoke
            | Self::Review
            | Self::Read => true,
            Self::ReadAudit | Self::Administer => false,
        }
    }

    /// The position in [`PolicyAction::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One thing a caller asks the broker to do. A route names exactly one; a few become a stronger
/// action once the broker knows more (someone else's grant or token, a factor that already
/// exists, an emergency): those are separate variants, so each keeps fixed requirements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    WhoAmI,
    Logout,
    StepUp,
    /// Enrol a first authenticator.
    TotpEnroll,
    /// Start replacing an authenticator that exists (proved by a fresh step-up with it).
    TotpReplace,
    TotpConfirm,
    PasswordChange,
    RoleList,
    RoleShow,
    GrantList,
    GrantShow,
    GrantRequest,
    /// A request with `emergency: true`: self-activation with no approver.
    GrantEmergency,
    GrantApprove,
    GrantDeny,
    /// Cancel one's own request.
    GrantCancel,
    /// Cancel someone else's request (an administrator).
    GrantCancelOther,
    /// End one's own grant early.
    GrantRevoke,
    /// End someone else's grant.
    GrantRevokeOther,
    GrantExtend,
    CredentialReveal,
    Introspect,
    TokenList,
    /// A person makes a token for themself.
    TokenCreate,
    /// An administrator makes a token for a service principal.
    TokenCreateService,
    /// Revoke one of one's own tokens.
    TokenRevoke,
    /// Revoke someone else's token (an administrator).
    TokenRevokeOther,
    UserList,
    UserAdd,
    UserPasswordReset,
    UserTotpReset,
    UserDisable,
    UserEnable,
    PolicyExplain,
    AuditTail,
    AuditKey,
    AuditCheckpoint,
    AuditProve,
    AuditConsistency,
    AuditExport,
    // Lockdown.
    /// Engage a lockdown of one role or of every role.
    LockdownEngage,
    /// Lift a lockdown.
    LockdownLift,
    /// See the lockdowns in force.
    LockdownStatus,
    // Owner attestation (issue 13, item 2).
    /// A member of a role's owner group re-confirms the role (the core's owner rule decides).
    RoleAttest,
    // Drills (issue 13, item 3).
    /// Start a drill of a role (an owner or reviewer of it).
    DrillStart,
    DrillList,
    DrillShow,
    // Post-use reviews.
    /// List reviews owed and recorded.
    ReviewList,
    /// See a grant's review evidence.
    ReviewShow,
    /// Record a review of someone else's use.
    ReviewRecord,
}

impl Action {
    pub const ALL: [Action; 50] = [
        Action::WhoAmI,
        Action::Logout,
        Action::StepUp,
        Action::TotpEnroll,
        Action::TotpReplace,
        Action::TotpConfirm,
        Action::PasswordChange,
        Action::RoleList,
        Action::RoleShow,
        Action::GrantList,
        Action::GrantShow,
        Action::GrantRequest,
        Action::GrantEmergency,
        Action::GrantApprove,
        Action::GrantDeny,
        Action::GrantCancel,
        Action::GrantCancelOther,
        Action::GrantRevoke,
        Action::GrantRevokeOther,
        Action::GrantExtend,
        Action::CredentialReveal,
        Action::Introspect,
        Action::TokenList,
        Action::TokenCreate,
        Action::TokenCreateService,
        Action::TokenRevoke,
        Action::TokenRevokeOther,
        Action::UserList,
        Action::UserAdd,
        Action::UserPasswordReset,
        Action::UserTotpReset,
        Action::UserDisable,
        Action::UserEnable,
        Action::PolicyExplain,
        Action::AuditTail,
        Action::AuditKey,
        Action::AuditCheckpoint,
        Action::AuditProve,
        Action::AuditConsistency,
        Action::AuditExport,
        Action::LockdownEngage,
        Action::LockdownLift,
        Action::LockdownStatus,
        Action::RoleAttest,
        Action::DrillStart,
        Action::DrillList,
        Action::DrillShow,
        Action::ReviewList,
        Action::ReviewShow,
        Action::ReviewRecord,
    ];

    /// The scope a scoped token needs; `None` for what any token may do about itself (who am I,
    /// sign out, step up).
    pub fn scope(self) -> Option<Scope> {
        Some(match self {
            Self::WhoAmI | Self::Logout | Self::StepUp => return None,
            Self::TotpEnroll
            | Self::TotpReplace
            | Self::TotpConfirm
            | Self::PasswordChange
            | Self::TokenRevoke => Scope::Factors,
            Self::RoleList
            | Self::RoleShow
            | Self::GrantList
            | Self::GrantShow
            | Self::Introspect
            | Self::TokenList
            | Self::UserList
            | Self::PolicyExplain
            | Self::AuditTail
            | Self::AuditKey
            | Self::AuditCheckpoint
            | Self::AuditProve
            | Self::AuditConsistency
            | Self::AuditExport
            | Self::LockdownStatus
            | Self::DrillList
            | Self::DrillShow
            | Self::ReviewList
            | Self::ReviewShow => Scope::Read,
            Self::GrantRequest
            | Self::GrantEmergency
            | Self::GrantCancel
            | Self::GrantCancelOther
            | Self::GrantExtend
            | Self::DrillStart => Scope::Request,
            // Deciding on someone else's use: approving it, or reviewing it afterwards.
            Self::GrantApprove | Self::GrantDeny | Self::ReviewRecord => Scope::Approve,
            // Deciding that a role may go on, like deciding that a request may.
            Self::RoleAttest => Scope::Approve,
            Self::GrantRevoke | Self::GrantRevokeOther => Scope::Revoke,
            Self::CredentialReveal => Scope::Credential,
            Self::TokenCreate
            | Self::TokenCreateService
            | Self::TokenRevokeOther
            | Self::UserAdd
            | Self::UserPasswordReset
            | Self::UserTotpReset
            | Self::UserDisable
            | Self::UserEnable
            | Self::LockdownEngage
            | Self::LockdownLift => Scope::Admin,
        })
    }

    /// Whether it needs a second factor verified within the step-up window.
    pub fn needs_step_up(self) -> bool {
        match self {
            Self::TotpReplace
            | Self::PasswordChange
            | Self::GrantEmergency
            | Self::GrantApprove
            | Self::GrantDeny
            | Self::GrantCancelOther
            | Self::GrantRevokeOther
            | Self::GrantExtend
            | Self::CredentialReveal
            | Self::TokenCreate
            | Self::TokenCreateService
            | Self::TokenRevokeOther
            | Self::UserAdd
            | Self::UserPasswordReset
            | Self::UserTotpReset
            | Self::UserDisable
            | Self::UserEnable
            | Self::LockdownEngage
            | Self::LockdownLift
            | Self::RoleAttest
            | Self::DrillStart
            | Self::ReviewRecord => true,
            Self::WhoAmI
            | Self::Logout
            | Self::StepUp
            | Self::TotpEnroll
            | Self::TotpConfirm
            | Self::RoleList
            | Self::RoleShow
            | Self::GrantList
            | Self::GrantShow
            | Self::GrantRequest
            | Self::GrantCancel
            | Self::GrantRevoke
            | Self::Introspect
            | Self::TokenList
            | Self::TokenRevoke
            | Self::UserList
            | Self::PolicyExplain
            | Self::AuditTail
            | Self::AuditKey
            | Self::AuditCheckpoint
            | Self::AuditProve
            | Self::AuditConsistency
            | Self::AuditExport
            | Self::LockdownStatus
            | Self::DrillList
            | Self::DrillShow
            | Self::ReviewList
            | Self::ReviewShow => false,
        }
    }

    /// The Cedar action that decides it, if policy has a say. `None` where the core's own rules
    /// decide alone (only the requester collects a credential or cancels their request; everyone
    /// may see the roles and manage their own sign-in).
    pub fn policy(self) -> Option<PolicyAction> {
        match self {
            Self::GrantRequest | Self::GrantExtend => Some(PolicyAction::Request),
            Self::GrantEmergency => Some(PolicyAction::Emergency),
            Self::GrantApprove | Self::GrantDeny => Some(PolicyAction::Approve),
            Self::GrantRevoke | Self::GrantRevokeOther => Some(PolicyAction::Revoke),
            Self::GrantList | Self::GrantShow => Some(PolicyAction::Read),
            Self::ReviewRecord => Some(PolicyAction::Review),
            Self::UserList
            | Self::PolicyExplain
            | Self::AuditTail
            | Self::AuditKey
            | Self::AuditCheckpoint
            | Self::AuditProve
            | Self::AuditConsistency
            | Self::AuditExport => Some(PolicyAction::ReadAudit),
            Self::TokenCreateService
            | Self::TokenRevokeOther
            | Self::UserAdd
            | Self::UserPasswordReset
            | Self::UserTotpReset
            | Self::UserDisable
            | Self::UserEnable
            | Self::LockdownEngage
            | Self::LockdownLift => Some(PolicyAction::Administer),
            Self::WhoAmI
            | Self::Logout
            | Self::StepUp
            | Self::TotpEnroll
            | Self::TotpReplace
            | Self::TotpConfirm
            | Self::PasswordChange
            | Self::RoleList
            | Self::RoleShow
            | Self::GrantCancel
            | Self::GrantCancelOther
            | Self::CredentialReveal
            | Self::Introspect
            | Self::TokenList
            | Self::TokenCreate
            | Self::TokenRevoke
            | Self::LockdownStatus
            | Self::RoleAttest
            // The core's rule decides drills: `Role::may_drill`, and who may see them.
            | Self::DrillStart
            | Self::DrillList
            | Self::DrillShow
            // Who sees reviews and their evidence is the core's rule per grant (its requester,
            // approvers, owner and reviewers, admins and auditors), as for `grants list`.
            | Self::ReviewList
            | Self::ReviewShow => None,
        }
    }

    /// The name written as `action` in `auth.denied`. Variants that are one action seen from two
    /// sides (own or someone else's) share it; these names are part of the audit format.
    pub fn audit_name(self) -> &'static str {
        match self {
            Self::WhoAmI => "auth.whoami",
            Self::Logout => "auth.logout",
            Self::StepUp => "auth.step_up",
            Self::TotpEnroll | Self::TotpReplace => "totp.enroll",
            Self::TotpConfirm => "totp.confirm",
            Self::PasswordChange => "user.password",
            Self::RoleList => "role.list",
            Self::RoleShow => "role.show",
            Self::GrantList => "grant.list",
            Self::GrantShow => "grant.show",
            Self::GrantRequest | Self::GrantEmergency => "grant.request",
            Self::GrantApprove => "grant.approve",
            Self::GrantDeny => "grant.deny",
            Self::GrantCancel | Self::GrantCancelOther => "grant.cancel",
            Self::GrantRevoke | Self::GrantRevokeOther => "grant.revoke",
            Self::GrantExtend => "grant.extend",
            Self::CredentialReveal => "credential.reveal",
            Self::Introspect => "token.introspect",
            Self::TokenList => "token.list",
            Self::TokenCreate | Self::TokenCreateService => "token.create",
            Self::TokenRevoke | Self::TokenRevokeOther => "token.revoke",
            Self::UserList => "user.list",
            Self::UserAdd => "user.add",
            Self::UserPasswordReset => "user.password_reset",
            Self::UserTotpReset => "user.totp_reset",
            Self::UserDisable => "user.disable",
            Self::UserEnable => "user.enable",
            Self::PolicyExplain => "policy.explain",
            Self::AuditTail => "audit.read",
            Self::AuditKey => "audit.key",
            Self::AuditCheckpoint => "audit.checkpoint",
            Self::AuditProve => "audit.prove",
            Self::AuditConsistency => "audit.consistency",
            Self::AuditExport => "audit.export",
            Self::LockdownEngage => "lockdown.engage",
            Self::LockdownLift => "lockdown.lift",
            Self::LockdownStatus => "lockdown.status",
            Self::RoleAttest => "role.attest",
            Self::DrillStart => "drill.start",
            Self::DrillList => "drill.list",
            Self::DrillShow => "drill.show",
            Self::ReviewList => "review.list",
            Self::ReviewShow => "review.show",
            Self::ReviewRecord => "review.record",
        }
    }

    /// What the person typed, for messages (`` `approve` needs a second factor … ``).
    pub fn command(self) -> &'static str {
        match self {
            Self::WhoAmI => "whoami",
            Self::Logout => "logout",
            Self::StepUp => "step-up",
            Self::TotpEnroll => "totp enroll",
            Self::TotpReplace => "totp enroll (replacing an authenticator)",
            Self::TotpConfirm => "totp confirm",
            Self::PasswordChange => "passwd",
            Self::RoleList => "roles list",
            Self::RoleShow => "roles show",
            Self::GrantList => "grants list",
            Self::GrantShow => "grants show",
            Self::GrantRequest => "request",
            Self::GrantEmergency => "request --emergency",
            Self::GrantApprove => "approve",
            Self::GrantDeny => "deny",
            Self::GrantCancel | Self::GrantCancelOther => "cancel",
            Self::GrantRevoke | Self::GrantRevokeOther => "revoke",
            Self::GrantExtend => "extend",
            Self::CredentialReveal => "credential",
            Self::Introspect => "introspect",
            Self::TokenList => "tokens list",
            Self::TokenCreate | Self::TokenCreateService => "tokens create",
            Self::TokenRevoke | Self::TokenRevokeOther => "tokens revoke",
            Self::UserList => "users list",
            Self::UserAdd => "users add",
            Self::UserPasswordReset => "users reset-password",
            Self::UserTotpReset => "users reset-totp",
            Self::UserDisable => "users disable",
            Self::UserEnable => "users enable",
            Self::PolicyExplain => "policy explain",
            Self::AuditTail => "audit tail",
            Self::AuditKey => "audit key",
            Self::AuditCheckpoint => "audit checkpoint",
            Self::AuditProve => "audit prove",
            Self::AuditConsistency => "audit consistency",
            Self::AuditExport => "audit export",
            Self::LockdownEngage => "lockdown",
            Self::LockdownLift => "lockdown lift",
            Self::LockdownStatus => "lockdown status",
            Self::RoleAttest => "roles attest",
            Self::DrillStart => "drill",
            Self::DrillList => "drills",
            Self::DrillShow => "drills show",
            Self::ReviewList => "reviews",
            Self::ReviewShow => "review",
            Self::ReviewRecord => "review --outcome",
        }
    }
}

impl Action {
    /// The stronger action this one becomes on someone else's grant or token, where that needs
    /// more (a step-up, administration); itself otherwise.
    pub fn on_others(self) -> Action {
        match self {
            Self::GrantCancel => Self::GrantCancelOther,
            Self::GrantRevoke => Self::GrantRevokeOther,
            Self::TokenRevoke => Self::TokenRevokeOther,
            Self::TokenCreate => Self::TokenCreateService,
            // Every other action is the same whoever's grant or token it is about.
            other => other,
        }
    }

    /// The stronger action this one becomes when it replaces a factor that exists; itself
    /// otherwise.
    pub fn replacing(self) -> Action {
        match self {
            Self::TotpEnroll => Self::TotpReplace,
            other => other,
        }
    }

    /// The emergency form of a request; itself otherwise.
    pub fn emergency(self) -> Action {
        match self {
            Self::GrantRequest => Self::GrantEmergency,
            other => other,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.audit_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for a in Action::ALL {
            assert!(seen.insert(a), "{a:?} listed twice");
        }
    }

    #[test]
    fn scopes_and_policy_actions_round_trip_their_names() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        for a in PolicyAction::ALL {
            assert_eq!(PolicyAction::parse(a.as_str()), Some(a));
            assert_eq!(PolicyAction::ALL.get(a.index()), Some(&a));
        }
        assert_eq!(Scope::parse("nuke"), None);
        assert!(!Scope::Factors.allowed_for_services());
    }

    #[test]
    fn collecting_a_credential_needs_the_credential_scope_and_a_step_up() {
        assert_eq!(Action::CredentialReveal.scope(), Some(Scope::Credential));
        assert!(Action::CredentialReveal.needs_step_up());
    }

    #[test]
    fn changing_a_factor_needs_its_own_scope() {
        for a in [
            Action::TotpEnroll,
            Action::TotpReplace,
            Action::TotpConfirm,
            Action::PasswordChange,
            Action::TokenRevoke,
        ] {
            assert_eq!(a.scope(), Some(Scope::Factors), "{a:?}");
        }
        assert!(Action::TotpReplace.needs_step_up());
        assert!(Action::PasswordChange.needs_step_up());
    }

    #[test]
    fn deciding_on_someone_elses_request_needs_a_step_up() {
        for a in [
            Action::GrantApprove,
            Action::GrantDeny,
            Action::GrantCancelOther,
            Action::GrantRevokeOther,
        ] {
            assert!(a.needs_step_up(), "{a:?}");
        }
        assert!(!Action::GrantCancel.needs_step_up());
        assert!(!Action::GrantRevoke.needs_step_up());
    }
}
