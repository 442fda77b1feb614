//! Audit events: typed, versioned, and serialised canonically so that the bytes stored are
//! exactly the bytes hashed into the audit log's Merkle tree (issue: tamper-evident audit log).
//!
//! Canonical form: one JSON object, no insignificant whitespace, keys sorted by their UTF-8 bytes
//! (the same order as RFC 8785 for the ASCII keys used here), integers only, strings escaped as
//! `serde_json` does (which matches RFC 8785 for the characters that appear). The envelope keys are
//! `v`, `seq`, `time`, `actor`, `grant` (only when the event is about a grant), `emergency` (only
//! when it is about an emergency grant, and then always `true`), `drill` (only when it is about a
//! drill or its grant, and then always `true`) and `type`; the event's own fields
//! sit beside them.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::review::Outcome;
use crate::{Duration, GrantId, Name, Timestamp};

/// The version of the envelope and of every event type's fields. Bump it when a field's meaning
/// changes; readers keep understanding every version ever written.
pub const EVENT_VERSION: u64 = 1;

/// Who caused an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    User(Name),
    /// A part of the broker acting on its own (`reaper`, `reconciler`, `roles`, `init`).
    System(&'static str),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(n) => write!(f, "user:{n}"),
            Self::System(s) => write!(f, "system:{s}"),
        }
    }
}

impl Serialize for Actor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why a grant ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndCauseKind {
    Expiry,
    Revoke,
    /// The requester's account was disabled.
    PrincipalDisabled,
    /// A lockdown of its role (or of every role) was engaged.
    Lockdown,
}

/// Every kind of audit event with its fields. The `type` names are part of the public format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventKind {
    #[serde(rename = "broker.initialized")]
    BrokerInitialized { admin: String, jwt_kid: String },
    /// The audit log's checkpoint signing key was created; `key` is the public verifier key.
    #[serde(rename = "audit.key_created")]
    AuditKeyCreated { origin: String, key: String },
    #[serde(rename = "grant.requested")]
    GrantRequested {
        role: String,
        role_hash: String,
        requester: String,
        reason: String,
        incident: Option<String>,
        duration: Duration,
    },
    /// The requester activated an emergency grant themselves: no approver was involved, and
    /// someone other than the requester owes a review of the use by `review_due`. `max_duration`
    /// is the role's emergency cap when it happened.
    #[serde(rename = "grant.emergency_activated")]
    GrantEmergencyActivated {
        requester: String,
        review_due: Timestamp,
        max_duration: Duration,
    },
    #[serde(rename = "grant.approved")]
    GrantApproved {
        approver: String,
        comment: Option<String>,
        approvals: u32,
        quorum: u32,
        extension: bool,
    },
    #[serde(rename = "grant.denied")]
    GrantDenied {
        by: String,
        reason: String,
        extension: bool,
    },
    #[serde(rename = "grant.cancelled")]
    GrantCancelled { by: String },
    #[serde(rename = "grant.timed_out")]
    GrantTimedOut {
        requested_at: Timestamp,
        request_ttl: Duration,
    },
    #[serde(rename = "grant.activating")]
    GrantActivating {
        target: String,
        expires_at: Timestamp,
    },
    #[serde(rename = "grant.activated")]
    GrantActivated {
        activated_at: Timestamp,
        expires_at: Timestamp,
    },
    #[serde(rename = "grant.extension_requested")]
    GrantExtensionRequested {
        by: String,
        duration: Duration,
        reason: String,
    },
    #[serde(rename = "grant.extended")]
    GrantExtended {
        duration: Duration,
        expires_at: Timestamp,
        extensions_used: u32,
    },
    #[serde(rename = "grant.revoking")]
    GrantRevoking {
        cause: EndCauseKind,
        by: Option<String>,
        reason: Option<String>,
    },
    #[serde(rename = "grant.revoked")]
    GrantRevoked { by: String, reason: String },
    #[serde(rename = "grant.expired")]
    GrantExpired { expires_at: Timestamp },
    /// The holder is warned that the grant ends soon (once per end: an extension re-arms it).
    #[serde(rename = "grant.expiring_soon")]
    GrantExpiringSoon { expires_at: Timestamp },
    #[serde(rename = "grant.failed")]
    GrantFailed { reason: String },
    /// A provider issued a credential. Only its fingerprint is recorded (invariant 6).
    #[serde(rename = "credential.issued")]
    CredentialIssued {
        target: String,
        fingerprint: String,
        expires_at: Timestamp,
    },
    #[serde(rename = "credential.delivered")]
    CredentialDelivered { to: String, fingerprint: String },
    #[serde(rename = "role.changed")]
    RoleChanged {
        role: String,
        file: Option<String>,
        old_hash: Option<String>,
        new_hash: Option<String>,
    },
    /// The config file (alert channels, `[alerts]`) in force changed, seen at start.
    #[serde(rename = "config.changed")]
    ConfigChanged {
        file: String,
        old_hash: Option<String>,
        new_hash: String,
    },
    /// The authorization policy in force changed (its role-generated part or a custom
    /// `policies/*.cedar` file), seen at start or on reload. `files` names each custom file with
    /// the SHA-256 of its bytes.
    #[serde(rename = "policy.changed")]
    PolicyChanged {
        old_hash: Option<String>,
        new_hash: String,
        files: Vec<String>,
    },
    #[serde(rename = "principal.created")]
    PrincipalCreated {
        name: String,
        kind: String,
        groups: Vec<String>,
    },
    #[serde(rename = "token.created")]
    TokenCreated {
        token_id: String,
        principal: String,
        expires_at: Timestamp,
        /// What the token may be used for; absent means everything its principal may do.
        scopes: Option<Vec<String>>,
    },
    /// A principal signed in and was given a session token (`method` names the factors used:
    /// `password`, `password+totp`, `password+recovery_code`). Never the password or the code.
    #[serde(rename = "auth.login")]
    AuthLogin {
        principal: String,
        token_id: String,
        method: String,
        source: String,
    },
    #[serde(rename = "auth.logout")]
    AuthLogout { principal: String, token_id: String },
    /// A sign-in or step-up failed. `principal` is the name tried (which may not exist);
    /// `reason` says which check failed, never what was typed.
    #[serde(rename = "auth.failed")]
    AuthFailed {
        principal: Option<String>,
        source: String,
        reason: String,
    },
    /// Too many failures: sign-ins for `subject` (`account NAME` or `source ADDR`) are refused
    /// until `until`.
    #[serde(rename = "auth.locked")]
    AuthLocked {
        subject: String,
        failures: u32,
        until: Timestamp,
    },
    /// Sign-ins (or password changes) for `subject` were refused `refused` times while it was
    /// locked, in the lock window that ended at `until`: one event per window, however many
    /// refusals, so an attacker cannot flood the log.
    #[serde(rename = "auth.refused_while_locked")]
    AuthRefusedWhileLocked {
        subject: String,
        refused: u32,
        until: Timestamp,
    },
    /// A second factor was verified for the session or token `token_id` (step-up).
    #[serde(rename = "auth.stepped_up")]
    AuthSteppedUp {
        principal: String,
        token_id: String,
        method: String,
    },
    /// A password was set: by an administrator (`must_change` until its owner picks one) or by
    /// its owner.
    #[serde(rename = "user.password_set")]
    UserPasswordSet {
        principal: String,
        must_change: bool,
    },
    #[serde(rename = "user.totp_enrolled")]
    UserTotpEnrolled { principal: String },
    /// An administrator removed a principal's authenticator; they enrol a new one at next sign-in.
    #[serde(rename = "user.totp_reset")]
    UserTotpReset { principal: String },
    /// New recovery codes were issued (shown once; the old ones no longer work).
    #[serde(rename = "user.recovery_codes_issued")]
    UserRecoveryCodesIssued { principal: String, count: u32 },
    /// A recovery code was used in place of the authenticator.
    #[serde(rename = "user.recovery_code_used")]
    UserRecoveryCodeUsed { principal: String, remaining: u32 },
    /// A principal was disabled or enabled again; every token and session of a disabled
    /// principal stops working at once.
    #[serde(rename = "user.disabled")]
    UserDisabled { principal: String, disabled: bool },
    #[serde(rename = "token.revoked")]
    TokenRevoked { token_id: String, principal: String },
    /// The reconciler found a privilege at a target that this broker created and that no live
    /// grant stands behind (an orphan: left by a crash, a failed revocation, or made by hand
    /// under breakglass's marker), and removed it. `handle` names it and holds no secret.
    #[serde(rename = "target.orphan_removed")]
    TargetOrphanRemoved {
        target: String,
        handle: String,
        /// The grant the privilege was made for, if the handle names one.
        for_grant: Option<String>,
    },
    /// An alert could not be delivered to `channel` after `attempts` tries (the dead letter);
    /// the remaining channels are told. `error` is the last failure and holds no secret.
    #[serde(rename = "alert.failed")]
    AlertFailed {
        channel: String,
        /// The audit event the alert was about.
        about_seq: u64,
        about: String,
        attempts: u32,
        error: String,
    },
    /// An authenticated caller was refused. `message` is the error shown to them, which never
    /// contains a secret.
    #[serde(rename = "auth.denied")]
    AuthDenied {
        action: String,
        code: String,
        message: String,
    },
    // Lockdown (crate::lockdown).
    /// An administrator engaged a lockdown: every live grant in `scope` (`all` or `role:ID`) is
    /// being ended, and every new request in it is refused until it is lifted.
    #[serde(rename = "lockdown.engaged")]
    LockdownEngaged {
        lockdown: String,
        scope: String,
        reason: String,
    },
    /// An administrator lifted a lockdown (engaged by `engaged_by`); requests in `scope` are
    /// accepted again.
    #[serde(rename = "lockdown.lifted")]
    LockdownLifted {
        lockdown: String,
        scope: String,
        engaged_by: String,
        reason: Option<String>,
    },
    // Owner attestation (issue 13, item 2).
    /// A member of the owner group confirmed that the role, as its file reads now (`hash`), is
    /// still needed and correctly scoped; the next attestation is due by `next_due`.
    #[serde(rename = "role.attested")]
    RoleAttested {
        role: String,
        hash: String,
        by: String,
        note: String,
        next_due: Timestamp,
    },
    /// A role's attestation falls due at `due` (sent once per due date, from two weeks before).
    #[serde(rename = "role.attestation_due")]
    RoleAttestationDue {
        role: String,
        hash: String,
        owner: String,
        due: Timestamp,
        last_attested: Option<Timestamp>,
    },
    /// A role lapsed (`cause` `attestation`: its due date passed unattested) or ended (`cause`
    /// `expired`: past its `expires` date) at `since`. With `on_lapse` `disable` it refuses new
    /// requests from then on; with `warn` they go on. Sent once per cause and date.
    #[serde(rename = "role.lapsed")]
    RoleLapsed {
        role: String,
        hash: String,
        owner: String,
        cause: String,
        since: Timestamp,
        on_lapse: String,
    },
    // Drills (issue 13, item 3).
    /// `runner` started drill `drill_id` of `role`, as the grant the event is about; the role's
    /// channels are told (the drill checks that each accepted this alert).
    #[serde(rename = "drill.started")]
    DrillStarted {
        drill_id: String,
        role: String,
        runner: String,
        emergency: bool,
        channels: Vec<String>,
    },
    /// A drill ended (`drill_id`; the envelope's `drill: true` flags every drill event): every check with its timing and outcome, and `passed` only if all passed.
    /// `failed` names the steps that failed, in order.
    #[serde(rename = "drill.completed")]
    DrillCompleted {
        drill_id: String,
        role: String,
        passed: bool,
        failed: Vec<String>,
        checks: Vec<crate::drill::DrillCheck>,
    },
    /// No passing drill of `role` since `due` minus `[governance] drill_every`: it is overdue.
    /// Once per due date.
    #[serde(rename = "drill.overdue")]
    DrillOverdue {
        role: String,
        due: Timestamp,
        last_passed: Option<Timestamp>,
    },
    // Post-use reviews (governance).
    /// A post-use review of a grant was recorded. `follow-up` keeps the review open (owned by
    /// `reviewer`); any other outcome is final. `due` is when the review was owed, if it was.
    #[serde(rename = "review.recorded")]
    ReviewRecorded {
        role: String,
        requester: String,
        reviewer: String,
        outcome: Outcome,
        notes: String,
        due: Option<Timestamp>,
    },
    /// A grant's review is overdue (`escalated`: twice its window has passed). `reviewers` names
    /// who may record it.
    #[serde(rename = "review.overdue")]
    ReviewOverdue {
        role: String,
        requester: String,
        due: Timestamp,
        escalated: bool,
        reviewers: Vec<String>,
    },
    /// What a target reported when a grant's privilege was removed: for PostgreSQL, how many of
    /// the grant's sessions were ended. `handle` names the privilege and holds no secret.
    #[serde(rename = "target.sessions_ended")]
    TargetSessionsEnded {
        target: String,
        handle: String,
        sessions: u32,
    },
}

impl EventKind {
    pub fn type_name(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default()
    }
}

/// An event decided by the core or the server, not yet given its place in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventDraft {
    pub actor: Actor,
    pub grant: Option<GrantId>,
    pub kind: EventKind,
    /// The event is about an emergency (self-activated) grant; encoded as `"emergency": true`.
    pub emergency: bool,
    /// The event is about a drill or its grant; encoded as `"drill": true`.
    pub drill: bool,
}

impl EventDraft {
    /// An event that is not flagged as emergency; see [`EventDraft::flagged`].
    pub fn new(actor: Actor, grant: Option<GrantId>, kind: EventKind) -> Self {
        Self {
            actor,
            grant,
            kind,
            emergency: false,
            drill: false,
        }
    }

    /// The same event, flagged as being about an emergency grant (or not).
    pub fn flagged(mut self, emergency: bool) -> Self {
        self.emergency = emergency;
        self
    }

    /// The same event, flagged as being about a drill (or not).
    pub fn drilled(mut self, drill: bool) -> Self {
        self.drill = drill;
        self
    }

    /// The canonical bytes of this event at position `seq`, written at `time`. These bytes are
    /// what the store keeps and what the audit log hashes; they are never re-serialised.
    pub fn canonical_bytes(&self, seq: u64, time: Timestamp) -> Vec<u8> {
        self.encode(seq, time).bytes
    }

    /// The canonical bytes and the `type` name, from one serialisation (what an append needs).
    pub fn encode(&self, seq: u64, time: Timestamp) -> Encoded {
        let mut obj = match serde_json::to_value(&self.kind) {
            Ok(Value::Object(m)) => m,
            // INVARIANT: `EventKind` is an internally tagged enum of structs, which always
            // serialises to an object; this arm exists only to avoid a panic path.
            _ => Map::new(),
        };
        let type_name = obj
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        obj.insert("v".into(), Value::from(EVENT_VERSION));
        obj.insert("seq".into(), Value::from(seq));
        obj.insert("time".into(), Value::String(time.to_rfc3339()));
        obj.insert("actor".into(), Value::String(self.actor.to_string()));
        if let Some(g) = self.grant {
            obj.insert("grant".into(), Value::String(g.to_string()));
        }
        // Only when set, so the bytes of every unflagged event stay what they always were.
        if self.emergency {
            obj.insert("emergency".into(), Value::Bool(true));
        }
        if self.drill {
            obj.insert("drill".into(), Value::Bool(true));
        }
        strip_nulls(&mut obj);
        // INVARIANT(6): a whole API token typed into the wrong field (a grant id, a user name) is
        // cut down to its id before it can reach the append-only log.
        let bytes = serde_json::to_vec(&sorted(redacted(Value::Object(obj)))).unwrap_or_default();
        Encoded { type_name, bytes }
    }
}

/// An event encoded for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    pub type_name: String,
    pub bytes: Vec<u8>,
}

/// `v` with every object's keys in byte order, whatever order `serde_json`'s map keeps (a
/// dependency may turn on its `preserve_order` feature for the whole build; canonical bytes must
/// not depend on that).
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// `v` with every whole API token in its strings cut down to its id.
fn redacted(v: Value) -> Value {
    match v {
        Value::String(s) => match crate::text::redact_tokens(&s) {
            std::borrow::Cow::Borrowed(_) => Value::String(s),
            std::borrow::Cow::Owned(r) => Value::String(r),
        },
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, redacted(v))).collect()),
        Value::Array(a) => Value::Array(a.into_iter().map(redacted).collect()),
        other => other,
    }
}

/// Optional fields that are absent are left out rather than written as `null`, so adding an
/// optional field later does not change the bytes of events that never had it.
fn strip_nulls(obj: &mut Map<String, Value>) {
    obj.retain(|_, v| !v.is_null());
}

/// An event as read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    pub seq: u64,
    pub bytes: Vec<u8>,
}

impl AuditEvent {
    /// The event as a JSON object (the canonical bytes parsed); `None` if the bytes are not JSON,
    /// which only tampering can cause.
    pub fn to_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_bytes_are_sorted_compact_and_stable() {
        let draft = EventDraft::new(
            Actor::User("alice".parse().unwrap()),
            Some(GrantId::from_bytes([1; 16])),
            EventKind::GrantRequested {
                role: "prod-db-admin".into(),
                role_hash: "ab".into(),
                requester: "alice".into(),
                reason: "db down \"now\"\n".into(),
                incident: None,
                duration: Duration::from_secs(1800),
            },
        );
        let bytes = draft.canonical_bytes(7, Timestamp::from_unix_millis(1_795_534_336_123));
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"actor":"user:alice","duration":"30m","grant":"01010101-0101-4101-8101-010101010101","reason":"db down \"now\"\n","requester":"alice","role":"prod-db-admin","role_hash":"ab","seq":7,"time":"2026-11-24T15:32:16.123Z","type":"grant.requested","v":1}"#
        );
    }

    #[test]
    fn a_token_typed_into_any_field_never_reaches_the_log() {
        let token = "bgt_0123456789ab_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_0123456";
        let draft = EventDraft::new(
            Actor::System("auth"),
            None,
            EventKind::AuthFailed {
                principal: Some(token.into()),
                source: "127.0.0.1".into(),
                reason: format!("unknown grant `{token}`"),
            },
        );
        let bytes =
            String::from_utf8(draft.canonical_bytes(0, Timestamp::from_unix_millis(0))).unwrap();
        assert!(!bytes.contains("abcdefghij"), "{bytes}");
        assert!(bytes.contains("bgt_0123456789ab_[redacted]"), "{bytes}");
    }

    #[test]
    fn type_names_are_the_documented_ones() {
        let k = EventKind::GrantTimedOut {
            requested_at: Timestamp::from_unix_millis(0),
            request_ttl: Duration::from_secs(60),
        };
        assert_eq!(k.type_name(), "grant.timed_out");
        let k = EventKind::AuthDenied {
            action: "a".into(),
            code: "c".into(),
            message: "m".into(),
        };
        assert_eq!(k.type_name(), "auth.denied");
        let k = EventKind::GrantEmergencyActivated {
            requester: "alice".into(),
            review_due: Timestamp::from_unix_millis(0),
            max_duration: Duration::from_secs(900),
        };
        assert_eq!(k.type_name(), "grant.emergency_activated");
    }

    #[test]
    fn the_emergency_flag_is_written_only_when_set() {
        let draft = EventDraft::new(
            Actor::System("reaper"),
            Some(GrantId::from_bytes([1; 16])),
            EventKind::GrantExpired {
                expires_at: Timestamp::from_unix_millis(0),
            },
        );
        let t = Timestamp::from_unix_millis(0);
        let plain = String::from_utf8(draft.canonical_bytes(1, t)).unwrap();
        assert!(!plain.contains("emergency"), "{plain}");
        let flagged = String::from_utf8(draft.flagged(true).canonical_bytes(1, t)).unwrap();
        assert_eq!(
            flagged,
            r#"{"actor":"system:reaper","emergency":true,"expires_at":"1970-01-01T00:00:00.000Z","grant":"01010101-0101-4101-8101-010101010101","seq":1,"time":"1970-01-01T00:00:00.000Z","type":"grant.expired","v":1}"#
        );
    }
}

#[cfg(test)]
mod golden {
    use super::*;

    /// Canonical bytes of one event of every shape, kept in `testdata/canonical-events.json`:
    /// these bytes are what the audit log hashes, so they must never change by accident.
    /// Set `BREAKGLASS_BLESS=1` to rewrite the file after a deliberate change (a new `v`).
    #[test]
    fn canonical_bytes_match_the_golden_file() {
        let t = Timestamp::from_unix_millis(1_795_534_336_123);
        let g = Some(GrantId::from_bytes([2; 16]));
        let a = Actor::User("alice".parse().unwrap());
        let kinds = vec![
            EventKind::GrantRequested {
                role: "r".into(),
                role_hash: "h".into(),
                requester: "alice".into(),
                reason: "ünïcode \u{7} \"q\"".into(),
                incident: Some("INC-1".into()),
                duration: Duration::from_secs(90),
            },
            EventKind::GrantApproved {
                approver: "bob".into(),
                comment: None,
                approvals: 1,
                quorum: 2,
                extension: false,
            },
            EventKind::GrantRevoking {
                cause: EndCauseKind::Expiry,
                by: None,
                reason: None,
            },
            EventKind::CredentialIssued {
                target: "token".into(),
                fingerprint: "sha256:00".into(),
                expires_at: t,
            },
            EventKind::RoleChanged {
                role: "r".into(),
                file: None,
                old_hash: Some("a".into()),
                new_hash: None,
            },
            EventKind::AuthDenied {
                action: "grant.approve".into(),
                code: "self_approval".into(),
                message: "`alice` …".into(),
            },
            EventKind::GrantEmergencyActivated {
                requester: "alice".into(),
                review_due: Timestamp::from_unix_millis(1_795_620_736_123),
                max_duration: Duration::from_secs(900),
            },
            EventKind::GrantRevoking {
                cause: EndCauseKind::Revoke,
                by: Some("bob".into()),
                reason: Some("done".into()),
            },
        ];
        // Events about an emergency grant carry `"emergency": true`; the first six predate the
        // flag and must keep their bytes.
        let flagged = [false, false, false, false, false, false, true, true];
        assert_eq!(kinds.len(), flagged.len());
        let vectors: Vec<Value> = kinds
            .into_iter()
            .zip(flagged)
            .enumerate()
            .map(|(i, (k, f))| {
                let bytes = EventDraft::new(a.clone(), g, k)
                    .flagged(f)
                    .canonical_bytes(i as u64, t);
                serde_json::json!({ "seq": i, "canonical": String::from_utf8(bytes).unwrap() })
            })
            .collect();
        let text = serde_json::to_string_pretty(&vectors).unwrap() + "\n";
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/canonical-events.json");
        if std::env::var_os("BREAKGLASS_BLESS").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        // The wrapper's key order depends on serde_json features; the canonical strings do not.
        let want: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let _ = text;
        assert_eq!(vectors, want, "canonical bytes changed");
    }
}
