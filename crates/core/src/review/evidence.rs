//! The story of one grant, told from its audit events alone: what was asked and why, who approved
//! and what they said, when it became active and how it ended, whether the credential was ever
//! collected, its extensions, what the target reported, and the reviews recorded.
//!
//! It reads events as JSON (their canonical bytes parsed), so the CLI can tell it from events it
//! has proven against a signed checkpoint itself, trusting nothing the broker's database says.

use serde::Serialize;
use serde_json::Value;

use crate::Timestamp;

/// One approval, with its comment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ApprovalFact {
    pub approver: String,
    pub at: Option<Timestamp>,
    pub comment: Option<String>,
    /// An approval of an extension rather than of the request.
    pub extension: bool,
}

/// One collection of the credential.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CollectedFact {
    pub at: Option<Timestamp>,
    pub to: String,
    pub fingerprint: String,
}

/// One extension asked for or approved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExtensionFact {
    pub at: Option<Timestamp>,
    /// `requested`, `extended` or `denied`.
    pub what: String,
    pub duration: Option<String>,
    pub reason: Option<String>,
    pub expires_at: Option<String>,
}

/// A review recorded in the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReviewFact {
    pub at: Option<Timestamp>,
    pub reviewer: String,
    pub outcome: String,
    pub notes: String,
}

/// What the events say happened to a grant. Durations are in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub grant: Option<String>,
    pub role: Option<String>,
    pub requester: Option<String>,
    pub reason: Option<String>,
    pub incident: Option<String>,
    pub duration: Option<String>,
    pub emergency: bool,
    pub requested_at: Option<Timestamp>,
    pub approvals: Vec<ApprovalFact>,
    /// When the request was approved (its quorum reached), if it was.
    pub approved_at: Option<Timestamp>,
    pub activated_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    /// Why it ended: `expired`, `revoked by NAME: REASON`, `failed: REASON`, or how it stopped
    /// before it began (`denied`, `cancelled`, `timed_out`).
    pub ended_how: Option<String>,
    pub waited_for_approval_ms: Option<i64>,
    pub active_for_ms: Option<i64>,
    /// Whether the credential was ever collected, i.e. whether the approval was used.
    pub collected: Vec<CollectedFact>,
    pub extensions: Vec<ExtensionFact>,
    /// What the targets reported (sessions ended at revoke, orphaned privilege removed).
    pub target: Vec<String>,
    pub reviews: Vec<ReviewFact>,
}

fn text(e: &Value, key: &str) -> Option<String> {
    match e.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn time(e: &Value) -> Option<Timestamp> {
    e.get("time")
        .and_then(Value::as_str)
        .and_then(Timestamp::parse_rfc3339)
}

impl Summary {
    /// The summary of a grant's own events (`grant` = its id), in log order.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Value>) -> Summary {
        let mut s = Summary::default();
        for e in events {
            s.add(e);
        }
        s.waited_for_approval_ms = match (s.requested_at, s.approved_at) {
            (Some(r), Some(a)) => Some(a.millis_since(r)),
            _ => None,
        };
        s.active_for_ms = match (s.activated_at, s.ended_at) {
            (Some(a), Some(e)) => Some(e.millis_since(a)),
            _ => None,
        };
        s
    }

    fn add(&mut self, e: &Value) {
        let at = time(e);
        if e.get("emergency").and_then(Value::as_bool) == Some(true) {
            self.emergency = true;
        }
        if self.grant.is_none() {
            self.grant = text(e, "grant");
        }
        let kind = e.get("type").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "grant.requested" => {
                self.role = text(e, "role");
                self.requester = text(e, "requester");
                self.reason = text(e, "reason");
                self.incident = text(e, "incident");
                self.duration = text(e, "duration");
                self.requested_at = at;
            }
            "grant.approved" => {
                let extension = e.get("extension").and_then(Value::as_bool) == Some(true);
                self.approvals.push(ApprovalFact {
                    approver: text(e, "approver").unwrap_or_default(),
                    at,
                    comment: text(e, "comment"),
                    extension,
                });
                let reached = e.get("approvals").and_then(Value::as_u64)
                    >= e.get("quorum").and_then(Value::as_u64);
                if !extension && reached && self.approved_at.is_none() {
                    self.approved_at = at;
                }
            }
            "grant.emergency_activated" => self.emergency = true,
            "grant.activated" => self.activated_at = at,
            "grant.extension_requested" | "grant.extended" => {
                self.extensions.push(ExtensionFact {
                    at,
                    what: if kind == "grant.extended" {
                        "extended"
                    } else {
                        "requested"
                    }
                    .into(),
                    duration: text(e, "duration"),
                    reason: text(e, "reason"),
                    expires_at: text(e, "expires_at"),
                });
            }
            "grant.denied" if e.get("extension").and_then(Value::as_bool) == Some(true) => {
                self.extensions.push(ExtensionFact {
                    at,
                    what: "denied".into(),
                    reason: text(e, "reason"),
                    ..ExtensionFact::default()
                });
            }
            "grant.expired" => self.end(at, "expired".into()),
            "grant.revoked" => self.end(
                at,
                format!(
                    "revoked by {}: {}",
                    text(e, "by").unwrap_or_default(),
                    text(e, "reason").unwrap_or_default()
                ),
            ),
            "grant.failed" => self.end(
                at,
                format!("failed: {}", text(e, "reason").unwrap_or_default()),
            ),
            "grant.denied" => self.end(
                at,
                format!(
                    "denied by {}: {}",
                    text(e, "by").unwrap_or_default(),
                    text(e, "reason").unwrap_or_default()
                ),
            ),
            "grant.cancelled" => self.end(at, "cancelled".into()),
            "grant.timed_out" => self.end(at, "timed_out".into()),
            "credential.delivered" => self.collected.push(CollectedFact {
                at,
                to: text(e, "to").unwrap_or_default(),
                fingerprint: text(e, "fingerprint").unwrap_or_default(),
            }),
            "target.sessions_ended" => self.target.push(format!(
                "{}: {} session(s) ended at revoke ({})",
                text(e, "target").unwrap_or_default(),
                text(e, "sessions").unwrap_or_default(),
                text(e, "handle").unwrap_or_default()
            )),
            "target.orphan_removed" => self.target.push(format!(
                "{}: privilege removed by the reconciler ({})",
                text(e, "target").unwrap_or_default(),
                text(e, "handle").unwrap_or_default()
            )),
            "review.recorded" => self.reviews.push(ReviewFact {
                at,
                reviewer: text(e, "reviewer").unwrap_or_default(),
                outcome: text(e, "outcome").unwrap_or_default(),
                notes: text(e, "notes").unwrap_or_default(),
            }),
            _ => {}
        }
    }

    fn end(&mut self, at: Option<Timestamp>, how: String) {
        // The first end recorded is the end; a later failure (a revoke retried past its end)
        // is added to it.
        match &mut self.ended_how {
            None => {
                self.ended_at = at;
                self.ended_how = Some(how);
            }
            Some(prev) => {
                prev.push_str("; then ");
                prev.push_str(&how);
            }
        }
    }
}

/// A length of time in milliseconds as a person reads it: `1h 2m 3s`.
pub fn human_ms(ms: i64) -> String {
    let secs = ms / 1000;
    let (d, h, m, s) = (
        secs / 86_400,
        (secs % 86_400) / 3600,
        (secs % 3600) / 60,
        secs % 60,
    );
    let mut parts = Vec::new();
    if d > 0 {
        parts.push(format!("{d}d"));
    }
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if s > 0 || parts.is_empty() {
        parts.push(format!("{s}s"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_timeline_and_facts_come_from_the_events_alone() {
        let events = [
            json!({"type": "grant.requested", "time": "2026-12-01T00:00:00.000Z", "grant": "g",
                   "role": "db", "requester": "alice", "reason": "primary down", "incident": "INC-1",
                   "duration": "30m"}),
            json!({"type": "grant.approved", "time": "2026-12-01T00:02:00.000Z", "approver": "bob",
                   "comment": "go", "approvals": 1, "quorum": 1, "extension": false}),
            json!({"type": "grant.activated", "time": "2026-12-01T00:02:01.000Z"}),
            json!({"type": "credential.delivered", "time": "2026-12-01T00:03:00.000Z", "to": "alice",
                   "fingerprint": "sha256:ab"}),
            json!({"type": "grant.extended", "time": "2026-12-01T00:20:00.000Z", "duration": "10m",
                   "expires_at": "2026-12-01T00:42:01.000Z"}),
            json!({"type": "grant.revoked", "time": "2026-12-01T00:32:01.000Z", "by": "alice",
                   "reason": "done"}),
            json!({"type": "target.sessions_ended", "time": "2026-12-01T00:32:01.000Z",
                   "target": "postgres", "handle": "h", "sessions": 2}),
        ];
        let s = Summary::from_events(&events);
        assert_eq!(s.reason.as_deref(), Some("primary down"));
        assert_eq!(s.incident.as_deref(), Some("INC-1"));
        assert_eq!(s.approvals.len(), 1);
        assert_eq!(s.approvals[0].comment.as_deref(), Some("go"));
        assert_eq!(s.waited_for_approval_ms, Some(120_000));
        assert_eq!(s.active_for_ms, Some(30 * 60_000));
        assert_eq!(s.ended_how.as_deref(), Some("revoked by alice: done"));
        assert_eq!(s.collected.len(), 1);
        assert_eq!(s.extensions.len(), 1);
        assert_eq!(s.target, ["postgres: 2 session(s) ended at revoke (h)"]);
        assert!(!s.emergency);
        assert_eq!(human_ms(3_723_000), "1h 2m 3s");
        assert_eq!(human_ms(0), "0s");
    }
}
