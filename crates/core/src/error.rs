//! Domain errors: what the caller did that the rules refuse. Each message is lowercase, names the
//! offending input in backticks, and has a [`DomainError::help`] saying what to do next.

use thiserror::Error;

/// How an error is to be reported: the server maps these to HTTP statuses, the CLI to exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCategory {
    /// The input is malformed or breaks a rule of the role.
    Invalid,
    /// The caller is not allowed to do this.
    Forbidden,
    /// The thing named does not exist.
    NotFound,
    /// The thing exists but is in a state where this cannot happen.
    Conflict,
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DomainError {
    #[error("invalid duration `{input}`")]
    InvalidDuration { input: String },
    #[error("invalid name `{input}`")]
    InvalidName { input: String },
    #[error("invalid subject `{input}`")]
    InvalidSubject { input: String },
    #[error("invalid grant id `{input}`")]
    InvalidGrantId { input: String },
    #[error("role file `{file}` is invalid: {message}")]
    InvalidRoleFile { file: String, message: String },
    #[error("invalid `{field}`: {problem}")]
    InvalidField {
        field: &'static str,
        problem: String,
    },
    #[error("unknown role `{role}`")]
    UnknownRole { role: String },
    #[error("unknown grant `{grant}`")]
    UnknownGrant { grant: String },
    #[error("unknown user `{name}`")]
    UnknownPrincipal { name: String },
    #[error("unknown API token `{id}`")]
    UnknownToken { id: String },
    #[error("API token `{id}` is already revoked")]
    TokenAlreadyRevoked { id: String },
    #[error("user `{name}` already exists")]
    PrincipalExists { name: String },
    #[error("the name `{name}` is kept for the broker's own records")]
    ReservedName { name: String },
    #[error("duration `{requested}` is longer than role `{role}` allows (`{max}`)")]
    DurationOverMax {
        requested: String,
        max: String,
        role: String,
    },
    #[error("emergency self-activation is not allowed for role `{role}`")]
    EmergencyNotAllowed { role: String },
    #[error(
        "duration `{requested}` is longer than emergency self-activation of role `{role}` allows (`{max}`)"
    )]
    EmergencyDurationOverMax {
        requested: String,
        max: String,
        role: String,
    },
    #[error("role `{role}` requires an incident reference")]
    IncidentRequired { role: String, pattern: String },
    #[error("incident reference `{incident}` does not match `{pattern}` required by role `{role}`")]
    IncidentMismatch {
        incident: String,
        pattern: String,
        role: String,
    },
    #[error("`{principal}` may not request role `{role}`")]
    NotRequester { principal: String, role: String },
    #[error("`{principal}` may not approve requests for role `{role}`")]
    NotApprover { principal: String, role: String },
    #[error("`{principal}` may not {action} grant `{grant}`")]
    NotAllowed {
        principal: String,
        action: &'static str,
        grant: String,
    },
    #[error("`{principal}` may not {action}")]
    AdminOnly {
        principal: String,
        action: &'static str,
    },
    #[error("`{principal}` requested grant `{grant}` and cannot approve it")]
    SelfApproval { principal: String, grant: String },
    #[error("`{principal}` has already approved grant `{grant}`")]
    AlreadyApproved { principal: String, grant: String },
    #[error("grant `{grant}` is `{state}`; only a grant that is {expected} can be {action}")]
    WrongState {
        grant: String,
        state: &'static str,
        expected: &'static str,
        action: &'static str,
    },
    #[error("`{principal}` may no longer request role `{role}`, so grant `{grant}` cannot go on")]
    RequesterNoLongerAllowed {
        principal: String,
        role: String,
        grant: String,
    },
    #[error("role `{role}` grants something different now than when grant `{grant}` was requested")]
    RoleChangedSinceRequest { role: String, grant: String },
    #[error("grant `{grant}` has reached its end and is being expired")]
    ReachedItsEnd { grant: String },
    #[error("grant `{grant}` has already ended (`{state}`)")]
    AlreadyEnded { grant: String, state: &'static str },
    #[error("grant `{grant}` has used all {max} extensions its role allows")]
    ExtensionsExhausted { grant: String, max: u32 },
    #[error(
        "extending grant `{grant}` by `{requested}` would make it `{total}` in total, over the role's `{max}`"
    )]
    ExtensionOverMax {
        grant: String,
        requested: String,
        total: String,
        max: String,
    },
    #[error("grant `{grant}` already has an extension waiting for approval")]
    ExtensionPending { grant: String },
    #[error("the credential for grant `{grant}` was already delivered")]
    CredentialAlreadyDelivered { grant: String },
    #[error("grant `{grant}` is `{state}`, so it has no credential to deliver")]
    CredentialNotAvailable { grant: String, state: &'static str },
    #[error(
        "an emergency use of role `{role}` by `{principal}` (grant {grant}) has owed a review since {due}"
    )]
    EmergencyReviewOverdue {
        role: String,
        principal: String,
        grant: String,
        due: crate::Timestamp,
    },
    // Lockdown (crate::lockdown).
    #[error("{what} for role `{role}` is refused: {} is locked down", lockdown.scope)]
    LockedDown {
        role: String,
        what: &'static str,
        /// The lockdown that covers the role (boxed: it is the largest refusal by far).
        lockdown: Box<crate::Lockdown>,
    },
    #[error("{scope} is already locked down (by the lockdown of {covering})")]
    AlreadyLockedDown {
        scope: String,
        by: String,
        since: crate::Timestamp,
        covering: String,
    },
    #[error("no lockdown of {scope} is in force")]
    NotLockedDown {
        scope: String,
        covered_by: Option<String>,
    },
    // Owner attestation (issue 13, item 2).
    #[error(
        "`{principal}` is not in the owner group `{owner}` of role `{role}`, so may not attest it"
    )]
    NotOwner {
        principal: String,
        role: String,
        owner: String,
    },
    #[error("service principal `{principal}` may not attest role `{role}`; only a person can")]
    ServiceCannotAttest {
        principal: String,
        role: String,
        owner: String,
    },
    #[error("role `{role}` is disabled: {why}")]
    RoleLapsed {
        role: String,
        owner: String,
        why: String,
        /// Past its `expires` date (else its attestation lapsed).
        expired: bool,
        file: String,
    },
    // Drills (issue 13, item 3).
    #[error("`{principal}` may not drill role `{role}`")]
    NotDrillRunner {
        principal: String,
        role: String,
        owner: String,
    },
    #[error("invalid drill id `{input}`")]
    InvalidDrillId { input: String },
    #[error("unknown drill `{drill}`")]
    UnknownDrill { drill: String },
    #[error(
        "grant `{grant}` is a drill: its credential is exercised by the broker and shown to nobody"
    )]
    DrillCredentialNotShown { grant: String },
    // Post-use reviews.
    #[error("`{principal}` requested grant `{grant}` and cannot review it")]
    SelfReview { principal: String, grant: String },
    #[error("`{principal}` approved grant `{grant}` and cannot review it")]
    ApproverReview { principal: String, grant: String },
    #[error("`{principal}` may not review uses of role `{role}`")]
    NotReviewer { principal: String, role: String },
    #[error("`{principal}` is a service principal; a review is recorded by a person")]
    ReviewerNotHuman { principal: String },
    #[error("grant `{grant}` never became active (`{state}`), so there is no use to review")]
    NeverActive { grant: String, state: &'static str },
    #[error("grant `{grant}` is still `{state}`; a use is reviewed once it has ended")]
    StillActive { grant: String, state: &'static str },
    #[error("grant `{grant}` already has a final review (`{outcome}` by `{reviewer}`)")]
    AlreadyReviewed {
        grant: String,
        outcome: &'static str,
        reviewer: String,
    },
}

impl DomainError {
    /// What the user should do next.
    pub fn help(&self) -> String {
        match self {
            Self::InvalidDuration { .. } => {
                "write a whole number and a unit: `30s`, `10m`, `4h` or `2d` (at most 366 days)".into()
            }
            Self::InvalidName { .. } => {
                "use 1-64 characters of a-z, 0-9, `.`, `_` or `-`, starting with a letter or digit"
                    .into()
            }
            Self::InvalidSubject { .. } => "write `user:NAME` or `group:NAME`".into(),
            Self::InvalidGrantId { .. } | Self::UnknownGrant { .. } => {
                "list grants with `breakglass grants list` and copy the id".into()
            }
            Self::InvalidRoleFile { .. } => {
                "fix the role file and reload (SIGHUP) or restart; the previously loaded roles stay in force"
                    .into()
            }
            Self::InvalidField { .. } => "correct the field and send the request again".into(),
            Self::UnknownRole { .. } => "list the roles you can request with `breakglass roles list`".into(),
            Self::UnknownPrincipal { .. } => "list users with `breakglass users list`".into(),
            Self::UnknownToken { .. } => "list tokens with `breakglass tokens list` and copy the id".into(),
            Self::TokenAlreadyRevoked { .. } => "nothing to do; the token no longer works".into(),
            Self::PrincipalExists { .. } => "pick another name, or use the existing user".into(),
            Self::ReservedName { .. } => {
                "pick a name that does not start with `system.`".into()
            }
            Self::DurationOverMax { max, .. } => {
                format!("ask for `{max}` or less; extend later if the role allows extensions")
            }
            Self::EmergencyNotAllowed { role } => format!(
                "ask an approver: request it with `breakglass request {role} --reason …` and wait for approval"
            ),
            Self::EmergencyDurationOverMax { max, role, .. } => format!(
                "ask for `{max}` or less; for longer, request it with approval (`breakglass request {role} --reason …`)"
            ),
            Self::IncidentRequired { pattern, .. } => {
                format!("pass `--incident` with a reference matching `{pattern}`")
            }
            Self::IncidentMismatch { pattern, .. } => {
                format!("pass the incident reference in the form `{pattern}`")
            }
            Self::NotRequester { role, .. } => {
                format!("ask the owner of role `{role}` to add you to its `requesters`")
            }
            Self::NotApprover { role, .. } => {
                format!("only members of role `{role}`'s `approval.approvers` can approve; ask one of them")
            }
            Self::NotAllowed { .. } => {
                "ask the requester, an approver of the role or an admin to do it".into()
            }
            Self::AdminOnly { .. } => "ask a member of the `admins` group".into(),
            Self::SelfApproval { .. } => {
                "another approver of the role must approve it; nobody approves their own request".into()
            }
            Self::AlreadyApproved { .. } => {
                "a quorum counts distinct people; another approver must approve".into()
            }
            Self::WrongState { grant, .. } | Self::AlreadyEnded { grant, .. } => {
                format!("see its current state with `breakglass grants show {grant}`")
            }
            Self::RequesterNoLongerAllowed { .. } => {
                "the role or the account changed since the request; deny it, and have an allowed requester ask again".into()
            }
            Self::RoleChangedSinceRequest { .. } => {
                "deny this request; the requester must request again under the role as it is now".into()
            }
            Self::ReachedItsEnd { .. } => "request a new grant if the work is not done".into(),
            Self::ExtensionsExhausted { .. } | Self::ExtensionOverMax { .. } => {
                "request a new grant with a fresh justification instead".into()
            }
            Self::ExtensionPending { .. } => "wait for the pending extension to be approved or denied".into(),
            Self::CredentialAlreadyDelivered { grant } => format!(
                "credentials are shown once; if it was lost, revoke with `breakglass revoke {grant}` and request again"
            ),
            Self::CredentialNotAvailable { grant, .. } => {
                format!("see its current state with `breakglass grants show {grant}`")
            }
            Self::EmergencyReviewOverdue { .. } => "ask for a review of that use first, or request the role the normal way (`breakglass request ROLE` without --emergency) so approvers decide".into(),
            Self::LockedDown { lockdown: l, .. } => format!(
                "`{}` engaged the lockdown at {} because: {}; once the path is trusted again, an administrator lifts it with `breakglass lockdown lift {}`",
                l.engaged_by,
                l.engaged_at,
                l.reason,
                l.scope.flag()
            ),
            Self::AlreadyLockedDown { by, since, .. } => format!(
                "nothing to do: `{by}` engaged it at {since}; see `breakglass lockdown status`"
            ),
            Self::NotLockedDown {
                covered_by: Some(flag),
                ..
            } => format!(
                "it is covered by a lockdown of every role; lift that with `breakglass lockdown lift {flag}`, or see `breakglass lockdown status`"
            ),
            Self::NotLockedDown { .. } => {
                "nothing to lift; see what is in force with `breakglass lockdown status`".into()
            }
            Self::NotOwner { role, owner, .. } | Self::ServiceCannotAttest { role, owner, .. } => format!(
                "a member of `{owner}` must attest it: `breakglass roles attest {role} --note \"…\"`"
            ),
            Self::RoleLapsed { role, owner, expired: false, .. } => format!(
                "ask a member of `{owner}` (its owner) to attest it: `breakglass roles attest {role} --note \"…\"`; grants already active are not affected"
            ),
            Self::RoleLapsed { role, owner, expired: true, file, .. } => format!(
                "its end date has passed: ask a member of `{owner}` (its owner) to change or remove `expires` under `[governance]` in `{file}` and reload, then attest it (`breakglass roles attest {role} --note \"…\"`)"
            ),
            Self::NotDrillRunner { role, owner, .. } => format!(
                "drills are run by a person in role `{role}`'s owner (`{owner}`) or its `[review] reviewers`; ask one of them to run `breakglass drill {role}`"
            ),
            Self::InvalidDrillId { .. } | Self::UnknownDrill { .. } => {
                "list drills with `breakglass drills` and copy the id".into()
            }
            Self::DrillCredentialNotShown { grant } => format!(
                "see what the drill found with `breakglass drills` (grant `{grant}`); request the role yourself to hold its privilege"
            ),
            Self::SelfReview { .. } => "another reviewer of the role must review it; nobody reviews their own use".into(),
            Self::ApproverReview { .. } => "the role keeps approvers from reviewing what they approved (`[review] exclude_approvers`); ask another reviewer".into(),
            Self::NotReviewer { role, .. } => format!(
                "only the reviewers of role `{role}` (`[review] reviewers`, or its owner) review its uses; ask one of them"
            ),
            Self::ReviewerNotHuman { .. } => "sign in as a person and record the review with a step-up".into(),
            Self::NeverActive { .. } => "nothing to review; list the reviews owed with `breakglass reviews --owed`".into(),
            Self::StillActive { grant, .. } => format!(
                "wait until it ends, or end it now with `breakglass revoke {grant} --reason …`"
            ),
            Self::AlreadyReviewed { grant, .. } => format!(
                "a use has one final review; see it with `breakglass review {grant}`"
            ),
        }
    }

    pub fn category(&self) -> ErrorCategory {
        match self {
            Self::InvalidDuration { .. }
            | Self::InvalidName { .. }
            | Self::InvalidSubject { .. }
            | Self::InvalidGrantId { .. }
            | Self::InvalidRoleFile { .. }
            | Self::InvalidField { .. }
            | Self::DurationOverMax { .. }
            | Self::EmergencyDurationOverMax { .. }
            | Self::IncidentRequired { .. }
            | Self::IncidentMismatch { .. }
            | Self::ExtensionOverMax { .. }
            | Self::InvalidDrillId { .. } => ErrorCategory::Invalid,
            Self::UnknownRole { .. }
            | Self::UnknownGrant { .. }
            | Self::UnknownPrincipal { .. }
            | Self::UnknownToken { .. }
            | Self::UnknownDrill { .. } => ErrorCategory::NotFound,
            Self::NotRequester { .. }
            | Self::NotApprover { .. }
            | Self::NotAllowed { .. }
            | Self::EmergencyNotAllowed { .. }
            | Self::AdminOnly { .. }
            | Self::SelfApproval { .. }
            | Self::RequesterNoLongerAllowed { .. }
            | Self::EmergencyReviewOverdue { .. }
            | Self::LockedDown { .. }
            | Self::NotOwner { .. }
            | Self::ServiceCannotAttest { .. }
            | Self::RoleLapsed { .. }
            | Self::NotDrillRunner { .. }
            | Self::DrillCredentialNotShown { .. }
            | Self::SelfReview { .. }
            | Self::ApproverReview { .. }
            | Self::NotReviewer { .. }
            | Self::ReviewerNotHuman { .. } => ErrorCategory::Forbidden,
            Self::PrincipalExists { .. }
            | Self::ReservedName { .. }
            | Self::TokenAlreadyRevoked { .. }
            | Self::AlreadyApproved { .. }
            | Self::WrongState { .. }
            | Self::AlreadyEnded { .. }
            | Self::RoleChangedSinceRequest { .. }
            | Self::ReachedItsEnd { .. }
            | Self::ExtensionsExhausted { .. }
            | Self::ExtensionPending { .. }
            | Self::CredentialAlreadyDelivered { .. }
            | Self::CredentialNotAvailable { .. }
            | Self::AlreadyLockedDown { .. }
            | Self::NotLockedDown { .. }
            | Self::NeverActive { .. }
            | Self::StillActive { .. }
            | Self::AlreadyReviewed { .. } => ErrorCategory::Conflict,
        }
    }

    /// A short stable code for clients and for `auth.denied` audit events.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidDuration { .. } => "invalid_duration",
            Self::InvalidName { .. } => "invalid_name",
            Self::InvalidSubject { .. } => "invalid_subject",
            Self::InvalidGrantId { .. } => "invalid_grant_id",
            Self::InvalidRoleFile { .. } => "invalid_role_file",
            Self::InvalidField { .. } => "invalid_field",
            Self::UnknownRole { .. } => "unknown_role",
            Self::UnknownGrant { .. } => "unknown_grant",
            Self::UnknownPrincipal { .. } => "unknown_user",
            Self::PrincipalExists { .. } => "user_exists",
            Self::ReservedName { .. } => "reserved_name",
            Self::UnknownToken { .. } => "unknown_token",
            Self::TokenAlreadyRevoked { .. } => "token_already_revoked",
            Self::DurationOverMax { .. } => "duration_over_max",
            Self::EmergencyNotAllowed { .. } => "emergency_not_allowed",
            Self::EmergencyDurationOverMax { .. } => "emergency_duration_over_max",
            Self::IncidentRequired { .. } => "incident_required",
            Self::IncidentMismatch { .. } => "incident_mismatch",
            Self::NotRequester { .. } => "not_requester",
            Self::NotApprover { .. } => "not_approver",
            Self::NotAllowed { .. } => "not_allowed",
            Self::AdminOnly { .. } => "admin_only",
            Self::SelfApproval { .. } => "self_approval",
            Self::AlreadyApproved { .. } => "already_approved",
            Self::WrongState { .. } => "wrong_state",
            Self::AlreadyEnded { .. } => "already_ended",
            Self::RequesterNoLongerAllowed { .. } => "requester_no_longer_allowed",
            Self::RoleChangedSinceRequest { .. } => "role_changed_since_request",
            Self::ReachedItsEnd { .. } => "reached_its_end",
            Self::ExtensionsExhausted { .. } => "extensions_exhausted",
            Self::ExtensionOverMax { .. } => "extension_over_max",
            Self::ExtensionPending { .. } => "extension_pending",
            Self::CredentialAlreadyDelivered { .. } => "credential_already_delivered",
            Self::CredentialNotAvailable { .. } => "credential_not_available",
            Self::EmergencyReviewOverdue { .. } => "review_overdue",
            Self::LockedDown { .. } => "locked_down",
            Self::AlreadyLockedDown { .. } => "already_locked_down",
            Self::NotLockedDown { .. } => "not_locked_down",
            Self::NotOwner { .. } => "not_owner",
            Self::ServiceCannotAttest { .. } => "service_cannot_attest",
            Self::RoleLapsed { .. } => "role_lapsed",
            Self::NotDrillRunner { .. } => "not_drill_runner",
            Self::InvalidDrillId { .. } => "invalid_drill_id",
            Self::UnknownDrill { .. } => "unknown_drill",
            Self::DrillCredentialNotShown { .. } => "drill_credential_not_shown",
            Self::SelfReview { .. } => "self_review",
            Self::ApproverReview { .. } => "approver_review",
            Self::NotReviewer { .. } => "not_reviewer",
            Self::ReviewerNotHuman { .. } => "reviewer_not_human",
            Self::NeverActive { .. } => "never_active",
            Self::StillActive { .. } => "still_active",
            Self::AlreadyReviewed { .. } => "already_reviewed",
        }
    }
}
