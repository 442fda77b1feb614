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
        .begin_activation(Actor::System("test"), t(30))
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
            expires_at: t(30 + 1800)
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
        tr.grant.credential_due,
        "the holder is owed a credential with the new end"
    );
    let re = tr
        .grant
        .credential_reissued(Actor::System("t"), "h2", "fp2", t(44))
        .unwrap();
    assert!(!re.grant.credential_due);
    assert_eq!(re.grant.handle.as_deref(), Some("h2"));
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
    assert_eq!(tr.grant.expiry_warned, Some(expires_at));
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
