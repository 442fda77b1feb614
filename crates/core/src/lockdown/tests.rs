use std::collections::BTreeSet;

use super::*;
use crate::error::ErrorCategory;
use crate::grant::RequestInput;
use crate::{GrantId, PrincipalKind, Role, StateKind};

const ROLE: &str = r#"
id = "db"
title = "Emergency admin on the database"
owner = "group:dba"
requesters = ["group:sre"]
default_duration = "30m"
max_duration = "1h"
[approval]
quorum = 1
approvers = ["group:sre-leads"]
[target]
kind = "token"
audience = "db"
scope = ["db:admin"]
"#;

fn roles() -> RoleSet {
    RoleSet::parse([
        ("db.toml", ROLE),
        ("web.toml", &ROLE.replace("\"db\"", "\"web\"")[..]),
    ])
    .unwrap()
}

fn role() -> Role {
    roles().require("db").unwrap().clone()
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

fn admin() -> Principal {
    user("root", &["admins"])
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_800_000_000_000 + secs * 1000)
}

fn scope_role(r: &str) -> LockdownScope {
    LockdownScope::Role(r.parse().unwrap())
}

fn engaged(scope: LockdownScope, id: &str, at: i64) -> Lockdown {
    engage(
        &[],
        &roles(),
        &admin(),
        scope,
        "path compromised",
        id.into(),
        t(at),
    )
    .unwrap()
    .0
}

fn by() -> Actor {
    Actor::User("root".parse().unwrap())
}

fn requested() -> Grant {
    Grant::request(
        GrantId::from_bytes([7; 16]),
        &role(),
        &user("alice", &["sre"]),
        RequestInput {
            reason: "primary is down".into(),
            incident: None,
            duration: None,
        },
        t(0),
    )
    .unwrap()
    .grant
}

fn active() -> Grant {
    let g = requested()
        .approve(&role(), &user("bob", &["sre-leads"]), None, t(1))
        .unwrap()
        .grant;
    let g = g
        .begin_activation(Actor::System("test"), "h1".into(), t(2))
        .unwrap()
        .grant;
    g.activated(Actor::System("test"), "h1", "fp", t(3))
        .unwrap()
        .grant
}

#[test]
fn only_an_administrator_engages_or_lifts() {
    let e = engage(
        &[],
        &roles(),
        &user("alice", &["sre"]),
        LockdownScope::All,
        "x",
        "l1".into(),
        t(0),
    )
    .unwrap_err();
    assert_eq!(e.code(), "admin_only");
    let l = engaged(LockdownScope::All, "l1", 0);
    let e = lift(&[l], &user("alice", &["sre"]), None, None).unwrap_err();
    assert_eq!(e.code(), "admin_only");
}

#[test]
fn engaging_needs_a_known_role_and_a_reason_that_fits() {
    let e = engage(
        &[],
        &roles(),
        &admin(),
        scope_role("nope"),
        "x",
        "l".into(),
        t(0),
    )
    .unwrap_err();
    assert_eq!(e.code(), "unknown_role");
    for reason in ["", "   ", &"x".repeat(MAX_REASON_CHARS + 1)] {
        let e = engage(
            &[],
            &roles(),
            &admin(),
            LockdownScope::All,
            reason,
            "l".into(),
            t(0),
        )
        .unwrap_err();
        assert_eq!(e.code(), "invalid_field", "{reason:?}");
    }
}

#[test]
fn engaging_records_who_why_and_the_scope() {
    let (l, ev) = engage(
        &[],
        &roles(),
        &admin(),
        scope_role("db"),
        " compromised ",
        "l1".into(),
        t(5),
    )
    .unwrap();
    assert_eq!(l.reason, "compromised");
    assert_eq!(l.engaged_at, t(5));
    assert_eq!(ev.actor, Actor::User("root".parse().unwrap()));
    assert_eq!(
        ev.kind,
        EventKind::LockdownEngaged {
            lockdown: "l1".into(),
            scope: "role:db".into(),
            reason: "compromised".into(),
        }
    );
}

#[test]
fn a_scope_already_covered_is_refused_but_all_goes_over_a_role() {
    let db = engaged(scope_role("db"), "l1", 0);
    let e = engage(
        std::slice::from_ref(&db),
        &roles(),
        &admin(),
        scope_role("db"),
        "x",
        "l2".into(),
        t(1),
    )
    .unwrap_err();
    assert_eq!(e.code(), "already_locked_down");
    assert_eq!(e.category(), ErrorCategory::Conflict);
    let (all, _) = engage(
        std::slice::from_ref(&db),
        &roles(),
        &admin(),
        LockdownScope::All,
        "x",
        "l3".into(),
        t(2),
    )
    .unwrap();
    let e = engage(
        &[db, all],
        &roles(),
        &admin(),
        scope_role("web"),
        "x",
        "l4".into(),
        t(3),
    )
    .unwrap_err();
    assert_eq!(e.code(), "already_locked_down");
    assert!(e.to_string().contains("every role"), "{e}");
}

#[test]
fn a_lockdown_refuses_every_way_in_for_its_roles_only() {
    let db = engaged(scope_role("db"), "l1", 0);
    for what in [
        Refused::Request,
        Refused::Emergency,
        Refused::Approval,
        Refused::Extension,
    ] {
        let e = refusal(std::slice::from_ref(&db), "db", what).unwrap_err();
        assert_eq!(e.code(), "locked_down");
        assert_eq!(e.category(), ErrorCategory::Forbidden);
        assert!(e.to_string().contains(what.as_str()), "{e}");
        let help = e.help();
        assert!(help.contains("root"), "{help}");
        assert!(help.contains("path compromised"), "{help}");
        assert!(
            help.contains("breakglass lockdown lift --role db"),
            "{help}"
        );
    }
    refusal(std::slice::from_ref(&db), "web", Refused::Request).unwrap();
    refusal(&[], "db", Refused::Emergency).unwrap();
    let all = engaged(LockdownScope::All, "l2", 1);
    let e = refusal(&[all], "web", Refused::Emergency).unwrap_err();
    assert!(
        e.help().contains("breakglass lockdown lift --all"),
        "{}",
        e.help()
    );
}

#[test]
fn lifting_with_nothing_in_force_is_refused() {
    let e = lift(&[], &admin(), None, None).unwrap_err();
    assert_eq!(e.code(), "not_locked_down");
    assert_eq!(e.category(), ErrorCategory::Conflict);
    assert!(
        e.help().contains("breakglass lockdown status"),
        "{}",
        e.help()
    );
    let all = engaged(LockdownScope::All, "l1", 0);
    let e = lift(&[all], &admin(), Some(&scope_role("db")), None).unwrap_err();
    assert_eq!(e.code(), "not_locked_down");
    assert!(e.help().contains("--all"), "{}", e.help());
}

#[test]
fn lifting_names_what_it_lifts() {
    let db = engaged(scope_role("db"), "l1", 0);
    let web = engaged(scope_role("web"), "l2", 1);
    let (lifted, events) = lift(
        &[db.clone(), web.clone()],
        &admin(),
        Some(&scope_role("web")),
        Some("false alarm"),
    )
    .unwrap();
    assert_eq!(lifted, std::slice::from_ref(&web));
    assert_eq!(
        events.first().map(|e| &e.kind),
        Some(&EventKind::LockdownLifted {
            lockdown: "l2".into(),
            scope: "role:web".into(),
            engaged_by: "root".into(),
            reason: Some("false alarm".into()),
        })
    );
    let (lifted, events) = lift(&[db, web], &admin(), None, None).unwrap();
    assert_eq!((lifted.len(), events.len()), (2, 2));
}

#[test]
fn a_lockdown_revokes_live_privilege_and_cancels_waiting_requests() {
    let l = engaged(scope_role("db"), "l1", 0);
    let tr = active().end_for_lockdown(&l, &by(), t(10)).unwrap();
    let GrantState::Revoking { end, handle, .. } = &tr.grant.state else {
        panic!("{:?}", tr.grant.state)
    };
    assert_eq!(handle.as_deref(), Some("h1"));
    assert!(
        matches!(end, EndCause::Lockdown { lockdown, revoked_by, .. } if lockdown == "l1" && revoked_by == "root")
    );
    let ended = tr
        .grant
        .finish_revoke(Actor::System("test"), t(11))
        .unwrap();
    assert_eq!(ended.grant.state.kind(), StateKind::Revoked);
    assert!(matches!(
        &ended.events.first().unwrap().kind,
        EventKind::GrantRevoked { by, reason } if by == "root" && reason.contains("path compromised")
    ));
    let tr = requested().end_for_lockdown(&l, &by(), t(10)).unwrap();
    assert_eq!(tr.grant.state.kind(), StateKind::Cancelled);
    // Out of scope, or already ending: nothing to do.
    let web = engaged(scope_role("web"), "l2", 0);
    assert!(active().end_for_lockdown(&web, &by(), t(10)).is_none());
    let revoking = active().end_for_lockdown(&l, &by(), t(10)).unwrap().grant;
    assert!(revoking.end_for_lockdown(&l, &by(), t(12)).is_none());
}

#[test]
fn scopes_round_trip_their_stored_form() {
    for s in [LockdownScope::All, scope_role("db")] {
        assert_eq!(LockdownScope::parse(&s.as_string()), Some(s));
    }
    assert_eq!(LockdownScope::parse("role:"), None);
    assert_eq!(LockdownScope::parse("everything"), None);
}
