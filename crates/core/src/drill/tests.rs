use std::collections::BTreeSet;

use super::*;
use crate::grant::overdue_emergency_review;

const ROLE: &str = r#"
id = "prod-db-admin"
title = "Emergency admin on the production database"
owner = "group:dba-leads"
requesters = ["group:sre"]
default_duration = "30m"
max_duration = "1h"
alerts = ["oncall", "mail"]
[approval]
quorum = 1
approvers = ["group:sre-leads"]
[approval.emergency]
allowed = true
max_duration = "15m"
review_within = "24h"
[review]
reviewers = ["group:security"]
[governance]
drill_every = "30d"
[target]
kind = "token"
audience = "prod-db"
scope = ["db:admin"]
"#;

fn role() -> Role {
    Role::parse("prod-db-admin.toml", ROLE).unwrap()
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_800_000_000_000 + secs * 1000)
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

fn lead() -> Principal {
    user("dana", &["dba-leads"])
}
fn approver() -> Principal {
    user("bob", &["sre-leads"])
}

fn started(emergency: bool) -> DrillStart {
    Drill::start(
        DrillId::from_bytes([1; 16]),
        GrantId::from_bytes([2; 16]),
        &role(),
        &lead(),
        emergency,
        t(0),
    )
    .unwrap()
}

fn active(g: &Grant, at: i64) -> Grant {
    let g = g
        .begin_activation(Actor::System("test"), "h".into(), t(at))
        .unwrap()
        .grant;
    g.activated(Actor::System("test"), "h", "fp", t(at + 1))
        .unwrap()
        .grant
}

fn ok(from: i64, to: i64, seen: &str) -> Probe {
    Probe {
        started_at: t(from),
        finished_at: t(to),
        outcome: Ok(seen.into()),
    }
}

fn delivered(channel: &str, at: i64) -> ChannelDelivery {
    ChannelDelivery {
        channel: channel.into(),
        delivered_at: Some(t(at)),
        dead: false,
        attempts: 1,
        last_error: None,
    }
}

#[test]
fn owners_and_reviewers_run_drills_and_nobody_else() {
    let r = role();
    assert!(r.may_drill(&lead()));
    assert!(r.may_drill(&user("sam", &["security"])));
    for p in [approver(), user("alice", &["sre"])] {
        let err = Drill::start(
            DrillId::from_bytes([1; 16]),
            GrantId::from_bytes([2; 16]),
            &r,
            &p,
            false,
            t(0),
        )
        .unwrap_err();
        assert_eq!(err.code(), "not_drill_runner");
        assert!(err.help().contains("group:dba-leads"), "{}", err.help());
        assert!(err.help().contains("breakglass drill prod-db-admin"));
    }
    let mut service = lead();
    service.kind = PrincipalKind::Service;
    assert!(!r.may_drill(&service));
}

#[test]
fn a_drill_grant_is_flagged_short_and_announced_to_the_role_channels() {
    let s = started(false);
    let g = &s.grant.grant;
    assert!(g.drill);
    assert_eq!(g.requester.as_str(), "dana");
    assert_eq!(g.state, GrantState::Requested);
    assert_eq!(g.duration, role().default_duration.min(MAX_DRILL_WINDOW));
    assert!(s.grant.events.iter().all(|e| e.drill && !e.emergency));
    let kinds: Vec<String> = s.grant.events.iter().map(|e| e.kind.type_name()).collect();
    assert_eq!(kinds, ["grant.requested", "drill.started"]);
    assert_eq!(s.drill.channels, ["oncall", "mail"]);
    // The encoded events carry `"drill":true`.
    let bytes = String::from_utf8(s.grant.events[1].canonical_bytes(0, t(0))).unwrap();
    assert!(bytes.contains(r#""drill":true"#), "{bytes}");
    // The drill's id does not collide with the flag.
    assert!(
        bytes.contains(r#""drill_id":"01010101-0101-4101-8101-010101010101""#),
        "{bytes}"
    );
}

#[test]
fn the_emergency_path_skips_approval_and_is_flagged_emergency_too() {
    let s = started(true);
    let g = &s.grant.grant;
    assert!(matches!(g.state, GrantState::Approved { .. }));
    assert!(g.emergency.is_some());
    assert!(s.grant.events.iter().all(|e| e.drill && e.emergency));
    // A role without an emergency path refuses it.
    let plain = Role::parse(
        "x.toml",
        &ROLE.replace(
            "[approval.emergency]\nallowed = true\nmax_duration = \"15m\"\nreview_within = \"24h\"\n",
            "",
        ),
    )
    .unwrap();
    let err = Drill::start(
        DrillId::from_bytes([1; 16]),
        GrantId::from_bytes([2; 16]),
        &plain,
        &lead(),
        true,
        t(0),
    )
    .unwrap_err();
    assert_eq!(err.code(), "emergency_not_allowed");
}

#[test]
fn a_passing_drill_times_every_step_and_completes_once() {
    let s = started(false);
    let d = s.drill;
    let g = s.grant.grant;
    // Nothing moves while the grant waits for approval.
    assert_eq!(d.grant_seen(&g, t(1)), None);
    let g = g.approve(&role(), &approver(), None, t(5)).unwrap().grant;
    let g = active(&g, 5);
    let d = d.grant_seen(&g, t(7)).unwrap().drill;
    assert_eq!(d.stage, DrillStage::Exercising);
    assert_eq!(d.checks[0].step, DrillStep::Approval);
    assert_eq!(d.checks[0].ms, 5000);
    assert!(d.checks[0].detail.contains("bob"));
    assert_eq!(d.checks[1].step, DrillStep::Activation);
    let tr = d
        .exercised(&ok(7, 8, "introspection active"), t(8))
        .unwrap();
    assert!(tr.events.is_empty());
    let d = tr.drill;
    assert_eq!(d.stage, DrillStage::Revoking { since: t(8) });
    // The broker's own revoke of the grant, by the drill.
    let revoking = g.end_drill(d.id, t(8)).unwrap();
    assert!(revoking.events.iter().all(|e| e.drill));
    let ended = revoking
        .grant
        .finish_revoke(Actor::System(DRILL_ACTOR), t(9))
        .unwrap()
        .grant;
    // Still ending: nothing to record yet.
    assert_eq!(d.revoked(&revoking.grant, &ok(9, 9, "x"), t(9)), None);
    let d = d
        .revoked(&ended, &ok(9, 10, "introspection inactive"), t(10))
        .unwrap()
        .drill;
    assert!(matches!(d.stage, DrillStage::AwaitingAlerts { .. }));
    // One channel still pending: wait, until the deadline.
    let one = [delivered("oncall", 2)];
    assert_eq!(d.alerts_seen(Some(&one), t(11)), None);
    assert_eq!(d.alerts_seen(None, t(11)), None);
    let both = [delivered("oncall", 2), delivered("mail", 3)];
    let done = d.alerts_seen(Some(&both), t(12)).unwrap();
    assert_eq!(done.drill.passed(), Some(true));
    let steps: Vec<DrillStep> = done.drill.checks.iter().map(|c| c.step).collect();
    assert_eq!(
        steps,
        [
            DrillStep::Approval,
            DrillStep::Activation,
            DrillStep::Exercise,
            DrillStep::Revoke,
            DrillStep::Refusal,
            DrillStep::Alerts
        ]
    );
    assert_eq!(done.events.len(), 1);
    let e = &done.events[0];
    assert!(e.drill);
    match &e.kind {
        EventKind::DrillCompleted {
            passed,
            failed,
            checks,
            ..
        } => {
            assert!(passed);
            assert!(failed.is_empty());
            assert_eq!(checks.len(), 6);
        }
        other => panic!("{other:?}"),
    }
    // A completed drill does not move again.
    assert_eq!(done.drill.alerts_seen(Some(&both), t(13)), None);
    assert_eq!(done.drill.grant_seen(&ended, t(13)), None);
}

#[test]
fn a_target_that_is_down_fails_the_activation_step_and_still_checks_the_alerts() {
    let s = started(true);
    let g = s
        .grant
        .grant
        .begin_activation(Actor::System("test"), "h".into(), t(0))
        .unwrap()
        .grant;
    let failed = g
        .fail(
            Actor::System("test"),
            "provider `postgres` could not grant: target unreachable: connection refused",
            t(2),
        )
        .unwrap()
        .grant;
    let d = s.drill.grant_seen(&failed, t(2)).unwrap().drill;
    assert_eq!(d.checks.len(), 1);
    assert_eq!(d.checks[0].step, DrillStep::Activation);
    assert!(!d.checks[0].passed);
    assert!(
        d.checks[0]
            .detail
            .starts_with("the target did not issue the credential: "),
        "{}",
        d.checks[0].detail
    );
    let both = [delivered("oncall", 1), delivered("mail", 1)];
    let done = d.alerts_seen(Some(&both), t(3)).unwrap();
    assert_eq!(done.drill.passed(), Some(false));
    match &done.events[0].kind {
        EventKind::DrillCompleted { failed, .. } => assert_eq!(failed, &["activation"]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_refused_credential_and_a_silent_channel_are_named() {
    let s = started(true);
    let g = active(&s.grant.grant, 0);
    let d = s.drill.grant_seen(&g, t(2)).unwrap().drill;
    let refused = Probe {
        started_at: t(2),
        finished_at: t(3),
        outcome: Err("password authentication failed".into()),
    };
    let d = d.exercised(&refused, t(3)).unwrap().drill;
    assert!(
        d.checks
            .last()
            .unwrap()
            .detail
            .starts_with("target refused the credential")
    );
    let ended = g
        .end_drill(d.id, t(3))
        .unwrap()
        .grant
        .finish_revoke(Actor::System(DRILL_ACTOR), t(4))
        .unwrap()
        .grant;
    let d = d
        .revoked(&ended, &ok(4, 4, "login refused"), t(4))
        .unwrap()
        .drill;
    let silent = ChannelDelivery {
        channel: "mail".into(),
        delivered_at: None,
        dead: false,
        attempts: 3,
        last_error: Some("connection refused".into()),
    };
    let seen = [delivered("oncall", 1), silent];
    // Before the deadline it waits; at it, the silent channel is named.
    assert_eq!(d.alerts_seen(Some(&seen), t(10)), None);
    let done = d
        .alerts_seen(Some(&seen), t(0).saturating_add(ALERT_DEADLINE))
        .unwrap();
    let last = done.drill.checks.last().unwrap();
    assert_eq!(last.step, DrillStep::Alerts);
    assert!(!last.passed);
    assert!(
        last.detail.contains(
            "channel `mail` did not accept the alert (after 3 attempts: connection refused)"
        ),
        "{}",
        last.detail
    );
    assert_eq!(
        done.drill.failed_steps(),
        [DrillStep::Exercise, DrillStep::Alerts]
    );
}

#[test]
fn a_denied_drill_fails_its_approval() {
    let s = started(false);
    let g = s
        .grant
        .grant
        .deny(&role(), &approver(), "not now", t(4))
        .unwrap()
        .grant;
    let d = s.drill.grant_seen(&g, t(4)).unwrap().drill;
    assert_eq!(d.checks[0].step, DrillStep::Approval);
    assert!(!d.checks[0].passed);
    assert!(d.checks[0].detail.contains("denied by bob: not now"));
}

#[test]
fn a_drill_is_not_a_use_and_its_credential_is_shown_to_nobody() {
    let s = started(true);
    let g = active(&s.grant.grant, 0);
    let err = g.check_reveal(&lead(), t(3)).unwrap_err();
    assert_eq!(err.code(), "drill_credential_not_shown");
    // Long after its review was due, it does not hold up the runner's emergency use.
    let mut r = role();
    r.requesters.push("group:dba-leads".parse().unwrap());
    overdue_emergency_review(&r, &lead(), &[g], t(10 * 86_400)).unwrap();
}

#[test]
fn the_runner_need_not_be_a_requester_to_be_approved() {
    let s = started(false);
    let g = &s.grant.grant;
    g.check_still_allowed(&role(), &approver(), Some(&lead()))
        .unwrap();
    // A runner who left the owner group can no longer have it approved.
    let gone = user("dana", &["sre"]);
    let err = g
        .check_still_allowed(&role(), &approver(), Some(&gone))
        .unwrap_err();
    assert_eq!(err.code(), "requester_no_longer_allowed");
}

#[test]
fn an_overdue_drill_alerts_once_per_due_date() {
    let r = role();
    let first_seen = t(0);
    let due = drill_due(&r, None, first_seen);
    assert_eq!(due, t(30 * 86_400));
    assert_eq!(overdue_alert(&r, due, None, None, t(30 * 86_400 - 1)), None);
    let e = overdue_alert(&r, due, None, None, due).unwrap();
    assert_eq!(e.kind.type_name(), "drill.overdue");
    assert_eq!(
        overdue_alert(&r, due, None, Some(due), t(31 * 86_400)),
        None
    );
    // A passing drill moves the due date; the next one alerts again when it passes.
    let next = drill_due(&r, Some(t(40 * 86_400)), first_seen);
    assert_eq!(next, t(70 * 86_400));
    assert!(overdue_alert(&r, next, Some(t(40 * 86_400)), Some(due), next).is_some());
}
