//! Which channels hear of which audit events, and how loudly, decided on the typed event kind: an
//! event kind added without its severity and its audience does not compile.

use breakglass_core::EventKind;
use breakglass_core::review::Outcome;
use breakglass_notify::Severity;

/// Who hears of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Audience {
    Nobody,
    /// The channels of the grant's (or the changed) role.
    Role,
    /// The role's channels and `[alerts] always`.
    RoleAndAlways,
    /// `[alerts] always` only.
    Always,
    /// Every channel but the one the event is about (a channel that has gone quiet).
    AllButItsChannel,
    /// Every configured channel (a lockdown engaged or lifted).
    Every,
}

/// How loud an event is. Everything about an emergency grant is high, whatever its kind.
pub(super) fn severity(kind: &EventKind, emergency: bool) -> Severity {
    if emergency {
        return Severity::High;
    }
    match kind {
        // Post-use reviews: misuse and an escalated overdue review are loud.
        EventKind::ReviewRecorded { outcome, .. } => match outcome {
            Outcome::Misuse => Severity::High,
            Outcome::FollowUp => Severity::Warning,
            Outcome::Legitimate | Outcome::Drill => Severity::Info,
        },
        EventKind::ReviewOverdue { escalated, .. } => {
            if *escalated {
                Severity::High
            } else {
                Severity::Warning
            }
        }
        EventKind::TargetSessionsEnded { .. } => Severity::Info,
        EventKind::GrantActivated { .. }
        | EventKind::GrantEmergencyActivated { .. }
        | EventKind::GrantFailed { .. }
        | EventKind::AlertFailed { .. }
        | EventKind::TargetOrphanRemoved { .. }
        | EventKind::AuthLocked { .. }
        | EventKind::LockdownEngaged { .. }
        | EventKind::LockdownLifted { .. } => Severity::High,
        // Owner attestation (issue 13, item 2).
        EventKind::RoleLapsed { .. } => Severity::High,
        EventKind::RoleAttestationDue { .. } => Severity::Warning,
        EventKind::RoleAttested { .. } => Severity::Info,
        EventKind::GrantExpiringSoon { .. }
        | EventKind::GrantRevoked { .. }
        | EventKind::GrantDenied { .. }
        | EventKind::RoleChanged { .. }
        | EventKind::ConfigChanged { .. }
        | EventKind::PolicyChanged { .. }
        | EventKind::UserTotpReset { .. }
        | EventKind::UserDisabled { .. }
        | EventKind::AuthRefusedWhileLocked { .. } => Severity::Warning,
        EventKind::BrokerInitialized { .. }
        | EventKind::AuditKeyCreated { .. }
        | EventKind::GrantRequested { .. }
        | EventKind::GrantApproved { .. }
        | EventKind::GrantCancelled { .. }
        | EventKind::GrantTimedOut { .. }
        | EventKind::GrantActivating { .. }
        | EventKind::GrantExtensionRequested { .. }
        | EventKind::GrantExtended { .. }
        | EventKind::GrantRevoking { .. }
        | EventKind::GrantExpired { .. }
        | EventKind::CredentialIssued { .. }
        | EventKind::CredentialDelivered { .. }
        | EventKind::PrincipalCreated { .. }
        | EventKind::TokenCreated { .. }
        | EventKind::AuthLogin { .. }
        | EventKind::AuthLogout { .. }
        | EventKind::AuthFailed { .. }
        | EventKind::AuthSteppedUp { .. }
        | EventKind::UserPasswordSet { .. }
        | EventKind::UserTotpEnrolled { .. }
        | EventKind::UserRecoveryCodesIssued { .. }
        | EventKind::UserRecoveryCodeUsed { .. }
        | EventKind::TokenRevoked { .. }
        | EventKind::AuthDenied { .. } => Severity::Info,
        // Drills: a failed check is loud, naming the step; a pass is news, not an alarm.
        EventKind::DrillCompleted { passed: false, .. } => Severity::High,
        EventKind::DrillStarted { .. } | EventKind::DrillOverdue { .. } => Severity::Warning,
        EventKind::DrillCompleted { passed: true, .. } => Severity::Info,
    }
}

/// Who hears of an event of `kind`.
pub(super) fn audience(kind: &EventKind) -> Audience {
    match kind {
        // Post-use reviews: misuse goes to the role's channels and `always`; an overdue review
        // to the role's channels, and once escalated (twice its window) to `always` too.
        EventKind::ReviewRecorded { outcome, .. } => match outcome {
            Outcome::Misuse => Audience::RoleAndAlways,
            Outcome::Legitimate | Outcome::Drill | Outcome::FollowUp => Audience::Role,
        },
        EventKind::ReviewOverdue { escalated, .. } => {
            if *escalated {
                Audience::Always
            } else {
                Audience::Role
            }
        }
        EventKind::TargetSessionsEnded { .. } => Audience::Nobody,
        EventKind::GrantRequested { .. }
        | EventKind::GrantApproved { .. }
        | EventKind::GrantDenied { .. }
        | EventKind::GrantCancelled { .. }
        | EventKind::GrantTimedOut { .. }
        | EventKind::GrantExtensionRequested { .. }
        | EventKind::GrantExtended { .. }
        | EventKind::GrantExpiringSoon { .. }
        | EventKind::GrantExpired { .. }
        | EventKind::GrantRevoked { .. } => Audience::Role,
        EventKind::GrantActivated { .. }
        | EventKind::GrantEmergencyActivated { .. }
        | EventKind::GrantFailed { .. }
        | EventKind::RoleChanged { .. } => Audience::RoleAndAlways,
        EventKind::TargetOrphanRemoved { .. }
        | EventKind::ConfigChanged { .. }
        | EventKind::PolicyChanged { .. }
        | EventKind::AuthLocked { .. }
        | EventKind::UserTotpReset { .. }
        | EventKind::UserDisabled { .. }
        | EventKind::AuthRefusedWhileLocked { .. } => Audience::Always,
        EventKind::AlertFailed { .. } => Audience::AllButItsChannel,
        EventKind::LockdownEngaged { .. } | EventKind::LockdownLifted { .. } => Audience::Every,
        // Owner attestation (issue 13, item 2).
        EventKind::RoleAttested { .. } | EventKind::RoleAttestationDue { .. } => Audience::Role,
        EventKind::RoleLapsed { .. } => Audience::RoleAndAlways,
        EventKind::BrokerInitialized { .. }
        | EventKind::AuditKeyCreated { .. }
        | EventKind::GrantActivating { .. }
        | EventKind::GrantRevoking { .. }
        | EventKind::CredentialIssued { .. }
        | EventKind::CredentialDelivered { .. }
        | EventKind::PrincipalCreated { .. }
        | EventKind::TokenCreated { .. }
        | EventKind::AuthLogin { .. }
        | EventKind::AuthLogout { .. }
        | EventKind::AuthFailed { .. }
        | EventKind::AuthSteppedUp { .. }
        | EventKind::UserPasswordSet { .. }
        | EventKind::UserTotpEnrolled { .. }
        | EventKind::UserRecoveryCodesIssued { .. }
        | EventKind::UserRecoveryCodeUsed { .. }
        | EventKind::TokenRevoked { .. }
        | EventKind::AuthDenied { .. } => Audience::Nobody,
        // The drill checks that every channel of the role accepted `drill.started`.
        EventKind::DrillStarted { .. } => Audience::Role,
        EventKind::DrillCompleted { .. } | EventKind::DrillOverdue { .. } => {
            Audience::RoleAndAlways
        }
    }
}
