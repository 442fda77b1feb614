use std::collections::BTreeSet;

use super::*;
use crate::{PrincipalKind, Role};

const ROLE: &str = r#"
id = "prod-db-admin"
title = "Emergency admin on the production database"
owner = "group:dba-leads"
requesters = ["group:sre", "user:carol"]
default_duration = "30m"
max_duration = "1h"
max_extensions = 1
[approval]
quorum = 2
approvers = ["group:sre-leads"]
[request]
require_incident = true
incident_pattern = "^INC-[0-9]+$"
[target]
kind = "token"
audience = "prod-db"
scope = ["db:admin"]
"#;

fn role() -> Role {
    Role::parse("prod-db-admin.toml", ROLE).unwrap()
}

fn user(name: &str, groups: &[&str]) -> Principal {
    Principal {
        name: name.parse().unwrap(),
        kind: PrincipalKind::Human,
        groups: groups
            .iter()
            .map(|g| g.parse().unwrap())
            .collect::<BTreeSet<_>>(),
        disabled: false,
        created_at: t(0),
    }
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_800_000_000_000 + secs * 1000)
}

fn alice() -> Principal {
    user("alice", &["sre"])
}
fn bob() -> Principal {
    user("bob", &["sre-leads"])
}
fn dave() -> Principal {
    user("dave", &["sre-leads", "sre"])
}

fn input() -> RequestInput {
    RequestInput {
        reason: "primary is down".into(),
        incident: Some("INC-42".into()),
        duration: None,
    }
}

fn requested() -> Grant {
    Grant::request(
        GrantId::from_bytes([9; 16]),
        &role(),
        &alice(),
        input(),
        t(0),
    )
    .unwrap()
    .grant
}

fn active() -> Grant {
    let g = requested();
    let g = g.approve(&role(), &bob(), None, t(10)).unwrap().grant;
    let g = g.approve(&role(), &dave(), None, t(20)).unwrap().grant;
    let g = g
        .begin_activation(Actor::System("test"), "h".into(), t(30))
        .unwrap()
        .grant;
    g.activated(Actor::System("test"), "h", "fp", t(31))
        .unwrap()
        .grant
}

#[test]
fn request_uses_the_role_default_and_records_an_event() {
    let tr = Grant::request(
        GrantId::from_bytes([1; 16]),
        &role(),
        &alice(),
        input(),
        t(0),
    )
    .unwrap();
    assert_eq!(tr.grant.state, GrantState::Requested);
    assert_eq!(tr.grant.duration.as_secs(), 1800);
    assert_eq!(tr.events.len(), 1);
    assert_eq!(tr.events[0].kind.type_name(), "grant.requested");
}

#[test]
fn request_rules_are_enforced() {
    let r = role();
    let id = GrantId::from_bytes([1; 16]);
    let cases: Vec<(Principal, RequestInput, &str)> = vec![
        (bob(), input(), "not_requester"),
        (
            alice(),
            RequestInput {
                duration: Some("2h".parse().unwrap()),
                ..input()
            },
            "duration_over_max",
        ),
        (
            alice(),
            RequestInput {
                incident: None,
                ..input()
            },
            "incident_required",
        ),
        (
            alice(),
            RequestInput {
                incident: Some("OPS-1".into()),
                ..input()
            },
            "incident_mismatch",
        ),
        (
            alice(),
            RequestInput {
                reason: "  ".into(),
                ..input()
            },
            "invalid_field",
        ),
        (
            alice(),
            RequestInput {
                reason: "x".repeat(1001),
                ..input()
            },
            "invalid_field",
        ),
    ];
    for (who, inp, code) in cases {
        let err = Grant::request(id, &r, &who, inp, t(0)).unwrap_err();
        assert_eq!(err.code(), code, "{err}");
    }
    // a user named directly is allowed
    assert!(Grant::request(id, &r, &user("carol", &[]), input(), t(0)).is_ok());
    let err = Grant::request(
        id,
        &r,
        &alice(),
        RequestInput {
            incident: Some("OPS-1".into()),
            ..input()
        },
        t(0),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "incident reference `OPS-1` does not match `^INC-[0-9]+$` required by role `prod-db-admin`"
    );
    assert!(err.help().contains("--incident") || err.help().contains("incident reference"));
}

#[test]
fn quorum_counts_distinct_approvers_and_never_the_requester() {
    let r = role();
    let g = requested();
    let err = g.approve(&r, &alice(), None, t(1)).unwrap_err();
    assert_eq!(err.code(), "self_approval");
    // dave is both requester-eligible and an approver; the requester is alice, so dave may approve.
    let g1 = g
        .approve(&r, &bob(), Some("ok".into()), t(1))
        .unwrap()
        .grant;
    assert_eq!(g1.state, GrantState::Requested, "one of two approvals");
    let err = g1.approve(&r, &bob(), None, t(2)).unwrap_err();
    assert_eq!(err.code(), "already_approved");
    let err = g1
        .approve(&r, &user("eve", &["sre"]), None, t(2))
        .unwrap_err();
    assert_eq!(err.code(), "not_approver");
    let tr = g1.approve(&r, &dave(), None, t(3)).unwrap();
    assert_eq!(tr.grant.state, GrantState::Approved { approved_at: t(3) });
    let err = tr
        .grant
        .approve(&r, &user("frank", &["sre-leads"]), None, t(4))
        .unwrap_err();
    assert_eq!(err.code(), "wrong_state");
}

#[test]
fn self_approval_is_refused_even_for_an_approver_requesting() {
    let r = role();
    let g = Grant::request(GrantId::from_bytes([2; 16]), &r, &dave(), input(), t(0))
        .unwrap()
        .grant;
    let err = g.approve(&r, &dave(), None, t(1)).unwrap_err();
    assert_eq!(err.code(), "self_approval");
    assert!(err.help().contains("another approver"));
}

#[test]
fn window_starts_at_activation_not_request() {
    let g = active();
    assert_eq!(
        g.state,
        GrantState::Active {
            activated_at: t(31),
            expires_at: t(30 + 1800),
            handle: "h".into(),
            pending_extension: None,
            credential_due: false,
            expiry_warned: None,
        }
    );
}

#[test]
fn expiry_goes_through_revoking() {
    let g = active();
    assert!(g.begin_expiry(t(1000)).is_none(), "not yet due");
    let tr = g.begin_expiry(t(1830)).unwrap();
    assert_eq!(tr.grant.state.name(), "revoking");
    let done = tr
        .grant
        .finish_revoke(Actor::System("reaper"), t(1831))
        .unwrap();
    assert_eq!(done.grant.state.name(), "expired");
    assert_eq!(done.events[0].kind.type_name(), "grant.expired");
}

#[test]
fn revoke_rules() {
    let r = role();
    let g = active();
    let err = g
        .begin_revoke(Some(&r), &user("eve", &["sre"]), "x", t(40))
        .unwrap_err();
    assert_eq!(err.code(), "not_allowed");
    let tr = g.begin_revoke(Some(&r), &bob(), "done", t(40)).unwrap();
    let done = tr
        .grant
        .finish_revoke(Actor::User(bob().name), t(41))
        .unwrap()
        .grant;
    assert_eq!(done.state.name(), "revoked");
    let err = done
        .begin_revoke(Some(&r), &bob(), "again", t(42))
        .unwrap_err();
    assert_eq!(err.code(), "already_ended");
    assert_eq!(
        err.to_string(),
        format!("grant `{}` has already ended (`revoked`)", done.id)
    );
    // a request that is not active cannot be revoked; it is cancelled
    let err = requested()
        .begin_revoke(Some(&r), &alice(), "x", t(1))
        .unwrap_err();
    assert_eq!(err.code(), "wrong_state");
}

#[test]
fn pending_requests_time_out() {
    let g = requested();
    assert!(g.time_out(role().request_ttl, t(3599)).is_none());
    let tr = g.time_out(role().request_ttl, t(3600)).unwrap();
    assert_eq!(
        tr.grant.state,
        GrantState::TimedOut {
            timed_out_at: t(3600)
        }
    );
    assert_eq!(tr.events[0].kind.type_name(), "grant.timed_out");
}

#[test]
fn deny_and_cancel() {
    let r = role();
    let g = requested();
    assert_eq!(
        g.deny(&r, &alice(), "no", t(1)).unwrap_err().code(),
        "not_allowed"
    );
    assert_eq!(
        g.deny(&r, &bob(), "not needed", t(1))
            .unwrap()
            .grant
            .state
            .name(),
        "denied"
    );
    assert_eq!(g.cancel(&bob(), t(1)).unwrap_err().code(), "not_allowed");
    assert_eq!(
        g.cancel(&alice(), t(1)).unwrap().grant.state.name(),
        "cancelled"
    );
    assert_eq!(
        g.cancel(&user("root", &["admins"]), t(1))
            .unwrap()
            .grant
            .state
            .name(),
        "cancelled"
    );
    assert_eq!(
        active().cancel(&alice(), t(40)).unwrap_err().code(),
        "wrong_state"
    );
}

#[test]
fn extensions_need_approval_and_stay_within_max() {
    let r = role();
    let g = active(); // 30m window, max 1h, one extension allowed
    let over = g
        .request_extension(&r, &alice(), "31m".parse().unwrap(), "more", t(40))
        .unwrap_err();
    assert_eq!(over.code(), "extension_over_max");
    assert_eq!(
        g.request_extension(&r, &bob(), "10m".parse().unwrap(), "x", t(40))
            .unwrap_err()
            .code(),
        "not_allowed"
    );
    let g = g
        .request_extension(&r, &alice(), "30m".parse().unwrap(), "more", t(40))
        .unwrap()
        .grant;
    assert_eq!(
        g.request_extension(&r, &alice(), "1m".parse().unwrap(), "x", t(41))
            .unwrap_err()
            .code(),
        "extension_pending"
    );
    assert_eq!(
        g.approve(&r, &alice(), None, t(42)).unwrap_err().code(),
        "self_approval"
    );
    let g = g.approve(&r, &bob(), None, t(42)).unwrap().grant;
    assert_eq!(
        g.expires_at(),
        Some(t(1830)),
        "one of two approvals does not extend"
    );
    let tr = g.approve(&r, &dave(), None, t(43)).unwrap();
    assert_eq!(tr.events.last().unwrap().kind.type_name(), "grant.extended");
    assert_eq!(tr.grant.expires_at(), Some(t(1830 + 1800)));
    assert_eq!(tr.grant.total_duration().as_secs(), 3600);
    assert!(
        tr.grant.credential_due(),
        "the holder is owed a credential with the new end"
    );
    let re = tr
        .grant
        .credential_reissued(Actor::System("t"), "h2", "fp2", t(44))
        .unwrap();
    assert!(!re.grant.credential_due());
    assert_eq!(re.grant.handle(), Some("h2"));
    assert_eq!(re.events[0].kind.type_name(), "credential.issued");
    let err = tr
        .grant
        .request_extension(&r, &alice(), "1m".parse().unwrap(), "x", t(44))
        .unwrap_err();
    assert_eq!(err.code(), "extensions_exhausted");
}

#[test]
fn extensions_default_to_none() {
    let r = Role::parse("r.toml", &ROLE.replace("max_extensions = 1\n", "")).unwrap();
    let g = active();
    assert_eq!(
        g.request_extension(&r, &alice(), "1m".parse().unwrap(), "x", t(40))
            .unwrap_err()
            .code(),
        "extensions_exhausted"
    );
}

#[test]
fn only_the_requester_gets_the_credential_and_only_while_active() {
    let g = active();
    assert!(g.check_reveal(&alice(), t(40)).is_ok());
    assert_eq!(
        g.check_reveal(&bob(), t(40)).unwrap_err().code(),
        "not_allowed"
    );
    assert_eq!(
        requested()
            .check_reveal(&alice(), t(40))
            .unwrap_err()
            .code(),
        "credential_not_available"
    );
}

#[test]
fn grants_round_trip_through_json_with_a_lowercase_state() {
    let g = active();
    let v = serde_json::to_value(&g).unwrap();
    assert_eq!(v["state"], "active");
    let back: Grant = serde_json::from_value(v).unwrap();
    assert_eq!(back, g);
    // every state's fields sit beside the grant's own without clashing (`reason` stays the
    // requester's justification)
    let r = role();
    let ended = [
        g.begin_revoke(Some(&r), &bob(), "done", t(40))
            .unwrap()
            .grant,
        requested().deny(&r, &bob(), "no", t(1)).unwrap().grant,
        requested().cancel(&alice(), t(1)).unwrap().grant,
        requested().time_out(r.request_ttl, t(9999)).unwrap().grant,
        requested()
            .fail(Actor::System("t"), "boom", t(1))
            .unwrap()
            .grant,
    ];
    let revoked = ended[0]
        .finish_revoke(Actor::System("t"), t(41))
        .unwrap()
        .grant;
    for g in ended.iter().chain([&revoked]) {
        let text = serde_json::to_string(g).unwrap();
        assert_eq!(text.matches("\"reason\":").count(), 1, "{text}");
        let back: Grant = serde_json::from_str(&text).unwrap();
        assert_eq!(&back, g);
        assert_eq!(back.reason, "primary is down");
    }
}

#[test]
fn past_its_end_an_active_grant_is_over_before_the_reaper_records_it() {
    let g = active(); // ends at t(1830)
    let r = role();
    assert_eq!(
        g.check_reveal(&alice(), t(1830)).unwrap_err().code(),
        "reached_its_end"
    );
    assert_eq!(
        g.request_extension(&r, &alice(), "1m".parse().unwrap(), "x", t(1830))
            .unwrap_err()
            .code(),
        "reached_its_end"
    );
    let pending = g
        .request_extension(&r, &alice(), "1m".parse().unwrap(), "x", t(40))
        .unwrap()
        .grant;
    assert_eq!(
        pending
            .approve(&r, &bob(), None, t(1830))
            .unwrap_err()
            .code(),
        "reached_its_end"
    );
    assert_eq!(
        pending.deny(&r, &bob(), "no", t(1830)).unwrap_err().code(),
        "reached_its_end"
    );
    assert!(
        pending.begin_expiry(t(1830)).is_some(),
        "the reaper still ends it"
    );
}

#[test]
fn the_holder_is_warned_once_per_end_before_it() {
    let g = active();
    let GrantState::Active { expires_at, .. } = g.state else {
        panic!("not active");
    };
    let window: Duration = "10m".parse().unwrap();
    let before = Timestamp::from_unix_millis(expires_at.unix_millis() - 11 * 60_000);
    assert!(g.warn_expiring(window, before).is_none(), "too early");
    let soon = Timestamp::from_unix_millis(expires_at.unix_millis() - 5 * 60_000);
    let tr = g.warn_expiring(window, soon).unwrap();
    assert_eq!(tr.events.len(), 1);
    assert_eq!(tr.events[0].kind.type_name(), "grant.expiring_soon");
    assert!(matches!(
        tr.grant.state,
        GrantState::Active { expiry_warned: Some(w), .. } if w == expires_at
    ));
    assert!(tr.grant.warn_expiring(window, soon).is_none(), "once");
    assert!(
        g.warn_expiring(window, expires_at).is_none(),
        "not at or past the end"
    );
    // A new end (an extension) re-arms the warning.
    let mut extended = tr.grant.clone();
    let later = Timestamp::from_unix_millis(expires_at.unix_millis() + 20 * 60_000);
    if let GrantState::Active { expires_at, .. } = &mut extended.state {
        *expires_at = later;
    }
    let at = Timestamp::from_unix_millis(later.unix_millis() - 60_000);
    assert!(extended.warn_expiring(window, at).is_some());
    assert!(
        requested().warn_expiring(window, at).is_none(),
        "only active grants"
    );
}

const EMERGENCY: &str =
    "[approval.emergency]\nallowed = true\nmax_duration = \"15m\"\nreview_within = \"24h\"\n";

fn emergency_role() -> Role {
    Role::parse(
        "prod-db-admin.toml",
        &ROLE.replace("[request]", &format!("{EMERGENCY}[request]")),
    )
    .unwrap()
}

fn emergency() -> Transition {
    Grant::request_emergency(
        GrantId::from_bytes([7; 16]),
        &emergency_role(),
        &alice(),
        input(),
        t(0),
    )
    .unwrap()
}

fn emergency_active() -> Grant {
    let g = emergency().grant;
    let g = g
        .begin_activation(Actor::User(alice().name), "h".into(), t(0))
        .unwrap()
        .grant;
    g.activated(Actor::System("test"), "h", "fp", t(1))
        .unwrap()
        .grant
}

fn assert_all_flagged(tr: &Transition, what: &str) {
    assert!(!tr.events.is_empty(), "{what}: no events");
    for e in &tr.events {
        assert!(e.emergency, "{what}: {} not flagged", e.kind.type_name());
        assert_eq!(e.grant, Some(tr.grant.id), "{what}");
        let bytes = String::from_utf8(e.canonical_bytes(1, t(0))).unwrap();
        assert!(bytes.contains(r#""emergency":true"#), "{what}: {bytes}");
    }
}

#[test]
fn emergency_self_activation_is_approved_at_once_with_no_approvals() {
    let tr = emergency();
    let g = &tr.grant;
    assert_eq!(g.state, GrantState::Approved { approved_at: t(0) });
    assert!(
        g.approvals.is_empty(),
        "nobody approved it, least of all alice"
    );
    assert!(g.emergency.is_some());
    assert_eq!(g.duration.as_secs(), 900, "defaults to the emergency cap");
    assert_eq!(g.review_due(), Some(t(86_400)));
    assert_eq!(g.emergency.unwrap().reviewed_at, None);
    let types: Vec<String> = tr.events.iter().map(|e| e.kind.type_name()).collect();
    assert_eq!(types, ["grant.requested", "grant.emergency_activated"]);
    assert_all_flagged(&tr, "request_emergency");
    assert_eq!(tr.events[1].actor, Actor::User(alice().name));
    assert_eq!(
        tr.events[1].kind,
        EventKind::GrantEmergencyActivated {
            requester: "alice".into(),
            review_due: t(86_400),
            max_duration: Duration::from_secs(900),
        }
    );
    // The broker goes straight on to activation: requested → activating.
    let act = g
        .begin_activation(Actor::User(alice().name), "h".into(), t(0))
        .unwrap();
    assert_eq!(act.grant.state.name(), "activating");
    assert_eq!(act.grant.expires_at(), Some(t(900)));
    // And nobody can add an approval to it afterwards.
    assert_eq!(
        g.approve(&emergency_role(), &bob(), None, t(1))
            .unwrap_err()
            .code(),
        "wrong_state"
    );
}

#[test]
fn emergency_self_activation_keeps_the_request_rules() {
    let r = emergency_role();
    let id = GrantId::from_bytes([1; 16]);
    let shorter = Grant::request_emergency(
        id,
        &r,
        &alice(),
        RequestInput {
            duration: Some("10m".parse().unwrap()),
            ..input()
        },
        t(0),
    )
    .unwrap();
    assert_eq!(shorter.grant.duration.as_secs(), 600);
    for (who, inp, code) in [
        (bob(), input(), "not_requester"),
        (
            alice(),
            RequestInput {
                incident: None,
                ..input()
            },
            "incident_required",
        ),
        (
            alice(),
            RequestInput {
                reason: " ".into(),
                ..input()
            },
            "invalid_field",
        ),
        (
            alice(),
            RequestInput {
                duration: Some("16m".parse().unwrap()),
                ..input()
            },
            "emergency_duration_over_max",
        ),
    ] {
        let err = Grant::request_emergency(id, &r, &who, inp, t(0)).unwrap_err();
        assert_eq!(err.code(), code, "{err}");
    }
}

#[test]
fn emergency_duration_is_capped_by_the_emergency_cap_not_the_role_cap() {
    let err = Grant::request_emergency(
        GrantId::from_bytes([1; 16]),
        &emergency_role(),
        &alice(),
        RequestInput {
            duration: Some("30m".parse().unwrap()), // within the role's 1h
            ..input()
        },
        t(0),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "duration `30m` is longer than emergency self-activation of role `prod-db-admin` allows (`15m`)"
    );
    assert_eq!(
        err.help(),
        "ask for `15m` or less; for longer, request it with approval (`breakglass request prod-db-admin --reason …`)"
    );
    assert_eq!(err.category(), crate::error::ErrorCategory::Invalid);
}

#[test]
fn emergency_self_activation_is_refused_unless_the_role_allows_it() {
    let off = Role::parse(
        "r.toml",
        &ROLE.replace(
            "[request]",
            &format!(
                "{}[request]",
                EMERGENCY.replace("allowed = true", "allowed = false")
            ),
        ),
    )
    .unwrap();
    for r in [role(), off] {
        let err =
            Grant::request_emergency(GrantId::from_bytes([1; 16]), &r, &alice(), input(), t(0))
                .unwrap_err();
        assert_eq!(err.code(), "emergency_not_allowed");
        assert_eq!(
            err.to_string(),
            "emergency self-activation is not allowed for role `prod-db-admin`"
        );
        assert_eq!(
            err.help(),
            "ask an approver: request it with `breakglass request prod-db-admin --reason …` and wait for approval"
        );
        assert_eq!(err.category(), crate::error::ErrorCategory::Forbidden);
    }
}

#[test]
fn every_later_event_of_an_emergency_grant_is_flagged() {
    let r = emergency_role();
    let approved = emergency().grant;
    let sys = || Actor::System("test");
    assert_all_flagged(
        &approved.begin_activation(sys(), "h".into(), t(0)).unwrap(),
        "begin_activation",
    );
    let activating = approved
        .begin_activation(sys(), "h".into(), t(0))
        .unwrap()
        .grant;
    assert_all_flagged(
        &activating.activated(sys(), "h", "fp", t(1)).unwrap(),
        "activated",
    );
    assert_all_flagged(&activating.fail(sys(), "boom", t(1)).unwrap(), "fail");
    let active = emergency_active();
    assert!(
        active.credential_issued(sys(), "fp", t(900)).emergency,
        "credential_issued"
    );
    let revoking = active.begin_revoke(Some(&r), &bob(), "done", t(5)).unwrap();
    assert_all_flagged(&revoking, "begin_revoke");
    assert_all_flagged(
        &revoking.grant.finish_revoke(sys(), t(6)).unwrap(),
        "finish_revoke (revoked)",
    );
    let expiring = active.begin_expiry(t(901)).unwrap();
    assert_all_flagged(&expiring, "begin_expiry");
    assert_all_flagged(
        &expiring.grant.finish_revoke(sys(), t(902)).unwrap(),
        "finish_revoke (expired)",
    );
    assert_all_flagged(
        &active
            .warn_expiring("10m".parse().unwrap(), t(600))
            .unwrap(),
        "warn_expiring",
    );
    let ext = active
        .request_extension(&r, &alice(), "5m".parse().unwrap(), "more", t(10))
        .unwrap();
    assert_all_flagged(&ext, "request_extension");
    let half = ext.grant.approve(&r, &bob(), None, t(11)).unwrap();
    assert_all_flagged(&half, "approve (extension)");
    let full = half.grant.approve(&r, &dave(), None, t(12)).unwrap();
    assert_all_flagged(&full, "approve (extension, quorum)");
    assert!(
        full.events
            .iter()
            .any(|e| e.kind.type_name() == "grant.extended")
    );
    assert_all_flagged(
        &full
            .grant
            .credential_reissued(sys(), "h2", "fp2", t(13))
            .unwrap(),
        "credential_reissued",
    );
    assert_all_flagged(
        &ext.grant.deny(&r, &bob(), "no", t(11)).unwrap(),
        "deny (extension)",
    );
    assert_all_flagged(&approved.cancel(&alice(), t(1)).unwrap(), "cancel");
    // An ordinary grant's events are never flagged.
    let plain = active_plain_events();
    assert!(plain.iter().all(|e| !e.emergency));
}

/// Every event of an ordinary grant's life, request to revoke.
fn active_plain_events() -> Vec<EventDraft> {
    let r = role();
    let mut events = Grant::request(GrantId::from_bytes([9; 16]), &r, &alice(), input(), t(0))
        .unwrap()
        .events;
    let g = requested();
    let tr = g.approve(&r, &bob(), None, t(10)).unwrap();
    events.extend(tr.events);
    let tr = tr.grant.approve(&r, &dave(), None, t(20)).unwrap();
    events.extend(tr.events);
    let tr = tr
        .grant
        .begin_activation(Actor::System("t"), "h".into(), t(30))
        .unwrap();
    events.extend(tr.events);
    let tr = tr
        .grant
        .activated(Actor::System("t"), "h", "fp", t(31))
        .unwrap();
    events.extend(tr.events);
    let tr = tr
        .grant
        .begin_revoke(Some(&r), &bob(), "done", t(40))
        .unwrap();
    events.extend(tr.events);
    events.extend(
        tr.grant
            .finish_revoke(Actor::System("t"), t(41))
            .unwrap()
            .events,
    );
    events
}

#[test]
fn an_emergency_extension_stays_within_the_role_max() {
    // Extensions of an emergency grant are approved like any other and bounded by the role's
    // `max_duration` (the emergency cap bounds only the self-activated window).
    let r = emergency_role();
    let g = emergency_active();
    assert_eq!(
        g.request_extension(&r, &alice(), "50m".parse().unwrap(), "x", t(10))
            .unwrap_err()
            .code(),
        "extension_over_max"
    );
    assert!(
        g.request_extension(&r, &alice(), "45m".parse().unwrap(), "x", t(10))
            .is_ok()
    );
}

#[test]
fn review_is_overdue_only_for_an_unreviewed_emergency_grant_past_its_due_time() {
    let g = emergency_active(); // review due at t(86_400)
    assert!(!g.review_overdue(t(86_399)));
    assert!(!g.review_overdue(t(86_400)), "due at, not overdue");
    assert!(g.review_overdue(t(86_401)));
    let mut reviewed = g.clone();
    if let Some(e) = reviewed.emergency.as_mut() {
        e.reviewed_at = Some(t(100));
    }
    assert!(!reviewed.review_overdue(t(90_000)));
    assert!(
        !active().review_overdue(t(10_000_000)),
        "not an emergency grant"
    );
}

#[test]
fn emergency_fields_round_trip_and_old_grants_still_read() {
    let g = emergency_active();
    let v = serde_json::to_value(&g).unwrap();
    assert_eq!(v["emergency"], true);
    assert_eq!(v["review_due"], t(86_400).to_rfc3339());
    assert!(v.get("reviewed_at").is_none());
    let back: Grant = serde_json::from_value(v).unwrap();
    assert_eq!(back, g);
    // A grant stored before emergencies existed has none of the three keys.
    let mut old = serde_json::to_value(active()).unwrap();
    let obj = old.as_object_mut().unwrap();
    for k in ["emergency", "review_due", "reviewed_at"] {
        obj.remove(k);
    }
    let back: Grant = serde_json::from_value(old).unwrap();
    assert!(back.emergency.is_none());
    assert_eq!(back.review_due(), None);
    assert_eq!(back, active());
}

#[test]
fn a_credential_is_delivered_once_to_the_requester_while_active() {
    let g = active(); // active from t(31) for 30 minutes
    let fresh = CredentialFacts {
        fingerprint: "sha256:ab".into(),
        delivered: false,
    };
    let e = g.deliver_credential(&alice(), Some(&fresh), t(40)).unwrap();
    assert_eq!(e.kind.type_name(), "credential.delivered");
    assert_eq!(e.actor, Actor::User(alice().name));
    let taken = CredentialFacts {
        delivered: true,
        ..fresh.clone()
    };
    assert_eq!(
        g.deliver_credential(&alice(), Some(&taken), t(40))
            .unwrap_err()
            .code(),
        "credential_already_delivered"
    );
    assert_eq!(
        g.deliver_credential(&bob(), Some(&fresh), t(40))
            .unwrap_err()
            .code(),
        "not_allowed"
    );
    assert_eq!(
        g.deliver_credential(&alice(), None, t(40))
            .unwrap_err()
            .code(),
        "credential_not_available"
    );
    assert_eq!(
        g.deliver_credential(&alice(), Some(&fresh), t(31 + 1800))
            .unwrap_err()
            .code(),
        "reached_its_end"
    );
    assert_eq!(
        requested()
            .deliver_credential(&alice(), Some(&fresh), t(5))
            .unwrap_err()
            .code(),
        "credential_not_available"
    );
}

#[test]
fn an_overdue_emergency_review_blocks_the_next_emergency_use_unless_repeats_are_allowed() {
    let role = emergency_role();
    let earlier = vec![emergency_active()]; // review due at t(86_400)
    assert!(overdue_emergency_review(&role, &alice(), &earlier, t(86_400)).is_ok());
    let e = overdue_emergency_review(&role, &alice(), &earlier, t(86_401)).unwrap_err();
    assert_eq!(e.code(), "review_overdue");
    assert!(e.to_string().contains("has owed a review since"), "{e}");
    // Another person's overdue use does not block alice.
    assert!(overdue_emergency_review(&role, &bob(), &earlier, t(86_401)).is_ok());
    let repeats = Role::parse(
        "prod-db-admin.toml",
        &ROLE.replace(
            "[request]",
            &format!("{EMERGENCY}repeat_while_review_overdue = true\n[request]"),
        ),
    )
    .unwrap();
    assert!(overdue_emergency_review(&repeats, &alice(), &earlier, t(86_401)).is_ok());
}

#[test]
fn a_grant_goes_on_only_while_its_requester_may_still_request_it() {
    let g = requested();
    let r = role();
    assert!(g.check_still_allowed(&r, &bob(), Some(&alice())).is_ok());
    let mut disabled = alice();
    disabled.disabled = true;
    assert_eq!(
        g.check_still_allowed(&r, &bob(), Some(&disabled))
            .unwrap_err()
            .code(),
        "requester_no_longer_allowed"
    );
    assert_eq!(
        g.check_still_allowed(&r, &bob(), None).unwrap_err().code(),
        "requester_no_longer_allowed"
    );
    let moved = user("alice", &["payments"]);
    assert!(g.check_still_allowed(&r, &bob(), Some(&moved)).is_err());
    // Someone uninvolved learns nothing here: the transition's own refusal speaks.
    let stranger = user("mallory", &["other"]);
    assert!(
        g.check_still_allowed(&r, &stranger, Some(&disabled))
            .is_ok()
    );
    let changed = Role::parse(
        "prod-db-admin.toml",
        &ROLE.replace("audience = \"prod-db\"", "audience = \"other\""),
    )
    .unwrap();
    assert_eq!(
        g.check_still_allowed(&changed, &bob(), Some(&alice()))
            .unwrap_err()
            .code(),
        "role_changed_since_request"
    );
}

#[test]
fn disabling_the_requester_revokes_an_active_grant_and_cancels_a_waiting_one() {
    let admin = Actor::User("root".parse().unwrap());
    let tr = active().end_for_disabled_requester(&admin, t(100)).unwrap();
    assert_eq!(tr.grant.state.name(), "revoking");
    let ev = serde_json::to_value(&tr.events[0].kind).unwrap();
    assert_eq!(ev["type"], "grant.revoking");
    assert_eq!(ev["cause"], "principal_disabled");
    assert_eq!(ev["by"], "root");
    let done = tr
        .grant
        .finish_revoke(Actor::System("test"), t(101))
        .unwrap();
    match &done.grant.state {
        GrantState::Revoked {
            revoked_by,
            revoke_reason,
            ..
        } => {
            assert_eq!(revoked_by, "root");
            assert_eq!(revoke_reason, "user `alice` was disabled");
        }
        other => panic!("{other:?}"),
    }
    let waiting = requested()
        .end_for_disabled_requester(&admin, t(5))
        .unwrap();
    assert_eq!(waiting.grant.state.name(), "cancelled");
    assert!(
        done.grant
            .end_for_disabled_requester(&admin, t(200))
            .is_none()
    );
    // The state round-trips through the stored JSON.
    let json = serde_json::to_string(&tr.grant).unwrap();
    assert_eq!(serde_json::from_str::<Grant>(&json).unwrap(), tr.grant);
}

#[test]
fn the_stored_form_is_the_flat_one_every_earlier_version_wrote() {
    // An active grant with a pending extension, written by the version before the
    // state-dependent fields moved into the states: it reads, and writes back byte for byte.
    let old = r#"{"id":"09090909-0909-4909-8909-090909090909","role":"prod-db-admin","role_hash":"h","requester":"alice","reason":"primary is down","incident":"INC-42","duration":"30m","requested_at":"2027-01-15T08:00:00.000Z","target":{"kind":"token","audience":"prod-db","scope":["db:admin"]},"approvals":[],"extensions":[],"pending_extension":{"duration":"10m","reason":"more","requested_at":"2027-01-15T08:05:00.000Z","approvals":[]},"handle":"token/x","credential_due":true,"expiry_warned":"2027-01-15T08:20:00.000Z","emergency":false,"state":"active","activated_at":"2027-01-15T08:00:31.000Z","expires_at":"2027-01-15T08:30:30.000Z","updated_at":"2027-01-15T08:05:00.000Z"}"#;
    let g: Grant = serde_json::from_str(old).unwrap();
    assert_eq!(g.handle(), Some("token/x"));
    assert!(g.credential_due());
    assert_eq!(g.pending_extension().unwrap().reason, "more");
    let again: serde_json::Value = serde_json::to_value(&g).unwrap();
    let want: serde_json::Value = serde_json::from_str(old).unwrap();
    assert_eq!(again, want);
    // A grant whose state needs a handle and has none is refused as damaged, not guessed at.
    let broken = old.replace(r#""handle":"token/x","#, r#""handle":null,"#);
    let e = serde_json::from_str::<Grant>(&broken).unwrap_err();
    assert!(e.to_string().contains("has no handle"), "{e}");
    // Every state round-trips, the handle kept once activation was under way.
    let revoked = active()
        .begin_revoke(Some(&role()), &bob(), "done", t(40))
        .unwrap()
        .grant
        .finish_revoke(Actor::System("t"), t(41))
        .unwrap()
        .grant;
    assert_eq!(revoked.handle(), Some("h"));
    let text = serde_json::to_string(&revoked).unwrap();
    assert_eq!(serde_json::from_str::<Grant>(&text).unwrap(), revoked);
}
