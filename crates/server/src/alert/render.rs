//! What a channel receives for an audit event: a one-line summary written from the typed event,
//! its severity, and the facts of the event and of its grant. Holds no secret: events never carry
//! one, and only the grant's public facts are added.

use std::collections::BTreeMap;

use breakglass_core::review::Outcome;
use breakglass_core::{EventKind, Grant};
use breakglass_notify::Alert;

use super::{Alerting, Parsed, route, text};

impl Alerting {
    /// What `channel` receives for event `e` about `grant` (if any); `origin` names the log.
    pub(crate) fn alert(
        &self,
        e: &Parsed,
        channel: &str,
        grant: Option<&Grant>,
        origin: &str,
    ) -> Alert {
        let b = &e.body;
        let mut fields = BTreeMap::new();
        let who = grant.map(|g| g.requester.to_string()).unwrap_or_default();
        let role = grant
            .map(|g| g.role.to_string())
            .or_else(|| text(b, "role"))
            .unwrap_or_default();
        if let Some(g) = grant {
            fields.insert("grant".into(), g.id.to_string());
            fields.insert("role".into(), g.role.to_string());
            fields.insert("requester".into(), g.requester.to_string());
            fields.insert("reason".into(), g.reason.clone());
            if let Some(i) = &g.incident {
                fields.insert("incident".into(), i.clone());
            }
            fields.insert("state".into(), g.state.name().to_owned());
            if let Some(end) = g.expires_at() {
                fields.insert("expires_at".into(), end.to_string());
            }
            if let Some(link) = self.link() {
                fields.insert("link".into(), format!("{link}/v1/grants/{}", g.id));
            }
        }
        if let Some(a) = text(b, "actor") {
            fields.insert("actor".into(), a);
        }
        // The event's own facts (who decided, why), except the envelope already shown.
        if let Some(obj) = b.as_object() {
            for k in obj.keys() {
                if matches!(
                    k.as_str(),
                    "v" | "seq" | "time" | "type" | "grant" | "actor"
                ) {
                    continue;
                }
                if let Some(t) = text(b, k) {
                    fields.entry(format!("event.{k}")).or_insert(t);
                }
            }
        }
        let inc = grant
            .and_then(|g| g.incident.as_deref())
            .map(|i| format!(" [{i}]"))
            .unwrap_or_default();
        // A drill is a test: every alert about one says so first, so nobody takes it for a use.
        let label = if e.drill {
            fields.insert("drill".into(), "true".into());
            "DRILL: "
        } else {
            ""
        };
        Alert {
            id: format!("{origin}:{}:{channel}", e.seq),
            event: e.type_name.clone(),
            seq: e.seq,
            severity: route::severity(&e.kind, e.emergency),
            summary: format!(
                "breakglass: {label}{}",
                summary(&e.kind, e.emergency, &who, &role, &inc)
            ),
            fields,
            time: e.time,
        }
    }
}

/// One line saying what happened, from the typed event.
fn summary(kind: &EventKind, emergency: bool, who: &str, role: &str, inc: &str) -> String {
    match kind {
        EventKind::GrantRequested {
            duration, reason, ..
        } if emergency => format!(
            "EMERGENCY: {who} self-activates {role} for {duration}: {reason}{inc} (no approver)"
        ),
        EventKind::GrantRequested {
            duration, reason, ..
        } => format!("{who} requests {role} for {duration}: {reason}{inc} (waiting for approval)"),
        EventKind::GrantEmergencyActivated { review_due, .. } => format!(
            "EMERGENCY self-activation of {role} by {who}{inc}, with no approver; a review by someone else is owed by {review_due}"
        ),
        EventKind::AuthLocked {
            subject,
            failures,
            until,
        } => format!("sign-in locked for {subject} until {until} after {failures} failures"),
        EventKind::AuthRefusedWhileLocked {
            subject,
            refused,
            until,
        } => format!("{refused} sign-ins refused for {subject} while it was locked until {until}"),
        EventKind::PolicyChanged { new_hash, .. } => {
            format!("the authorization policy changed ({new_hash})")
        }
        EventKind::UserTotpReset { principal } => {
            format!("the authenticator of {principal} was reset")
        }
        EventKind::UserDisabled {
            principal,
            disabled,
        } => format!("{principal} disabled: {disabled}"),
        EventKind::GrantApproved { approver, .. } => {
            format!("{approver} approved {who}'s request for {role}{inc}")
        }
        EventKind::GrantDenied { by, reason, .. } => {
            format!("{by} denied {who}'s request for {role}: {reason}")
        }
        EventKind::GrantCancelled { .. } => format!("{who}'s request for {role} was cancelled"),
        EventKind::GrantTimedOut { .. } => {
            format!("{who}'s request for {role} timed out unapproved")
        }
        EventKind::GrantActivated { expires_at, .. } => {
            format!("{who} now holds {role} until {expires_at}{inc}")
        }
        EventKind::GrantExtensionRequested {
            duration, reason, ..
        } => format!("{who} asks to extend {role} by {duration}: {reason}"),
        EventKind::GrantExtended { expires_at, .. } => {
            format!("{who}'s {role} extended until {expires_at}")
        }
        EventKind::GrantExpiringSoon { expires_at } => {
            format!("{who}'s {role} ends at {expires_at}")
        }
        EventKind::GrantExpired { .. } => format!("{who}'s {role} expired"),
        EventKind::GrantRevoked { by, reason } => format!("{by} revoked {who}'s {role}: {reason}"),
        EventKind::GrantFailed { reason } => format!("{who}'s {role} failed: {reason}"),
        EventKind::RoleChanged {
            old_hash, new_hash, ..
        } => match (old_hash, new_hash) {
            (None, _) => format!("role {role} was added"),
            (_, None) => format!("role {role} was removed"),
            _ => format!("role {role} was changed"),
        },
        EventKind::ConfigChanged { file, .. } => format!("the config file {file} changed"),
        EventKind::AlertFailed {
            channel,
            attempts,
            error,
            ..
        } => format!(
            "alerts to channel {channel} are failing: {attempts} tries, last error: {error}"
        ),
        EventKind::TargetOrphanRemoved { target, handle, .. } => {
            format!("removed an orphaned {target} privilege at a target: {handle}")
        }
        EventKind::LockdownEngaged { scope, reason, .. } => format!(
            "LOCKDOWN of {scope}: every grant in it is being revoked and new requests are refused: {reason}"
        ),
        EventKind::LockdownLifted {
            scope,
            engaged_by,
            reason,
            ..
        } => format!(
            "lockdown of {scope} (engaged by {engaged_by}) lifted: requests are accepted again{}",
            reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        // Owner attestation (issue 13, item 2).
        EventKind::RoleAttested { by, next_due, .. } => {
            format!(
                "{by} attested role {role}: still needed and correctly scoped; next due {next_due}"
            )
        }
        EventKind::RoleAttestationDue { owner, due, .. } => format!(
            "role {role} must be attested by {due}: a member of {owner} runs `breakglass roles attest {role} --note \"…\"`"
        ),
        EventKind::RoleLapsed {
            cause,
            since,
            on_lapse,
            owner,
            ..
        } => {
            let what = if cause == "expired" {
                format!("role {role} expired at {since}")
            } else {
                format!("role {role} lapsed: its attestation by {owner} was due {since}")
            };
            if on_lapse == "disable" {
                format!("{what}; it refuses new requests, emergency ones included")
            } else {
                format!("{what}; requests still go on (on_lapse = warn)")
            }
        }
        EventKind::DrillStarted {
            drill_id: drill,
            runner,
            emergency,
            ..
        } => format!(
            "{runner} started drill {drill} of {role}{}; this alert is part of the drill",
            if *emergency {
                " on its emergency path"
            } else {
                ", waiting for its approvers"
            }
        ),
        EventKind::DrillCompleted {
            drill_id: drill,
            passed: true,
            checks,
            ..
        } => format!("drill {drill} of {role} passed all {} checks", checks.len()),
        EventKind::DrillCompleted {
            drill_id: drill,
            passed: false,
            checks,
            ..
        } => {
            let failures: Vec<String> = checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| format!("step `{}`: {}", c.step, c.detail))
                .collect();
            format!("drill {drill} of {role} FAILED at {}", failures.join("; "))
        }
        EventKind::DrillOverdue { due, .. } => {
            format!("role {role} is overdue for a drill (due {due}); run `breakglass drill {role}`")
        }
        // Post-use reviews.
        EventKind::ReviewRecorded {
            reviewer,
            outcome,
            notes,
            ..
        } => match outcome {
            Outcome::Misuse => format!(
                "MISUSE: {reviewer} reviewed {who}'s use of {role}{inc} and found it misused: {notes}"
            ),
            Outcome::FollowUp => format!(
                "{reviewer} is following up the review of {who}'s use of {role}{inc}: {notes}"
            ),
            Outcome::Legitimate | Outcome::Drill => {
                format!("{reviewer} reviewed {who}'s use of {role}{inc}: {outcome}")
            }
        },
        EventKind::ReviewOverdue {
            due,
            escalated,
            reviewers,
            ..
        } => {
            let waiting = reviewers.join(", ");
            if *escalated {
                format!(
                    "ESCALATED: the review of {who}'s use of {role}{inc} was due {due} and is still not done (reviewers: {waiting})"
                )
            } else {
                format!(
                    "the review of {who}'s use of {role}{inc} was due {due} (reviewers: {waiting})"
                )
            }
        }
        // Never routed anywhere; named by their type should that change.
        other => other.type_name(),
    }
}
