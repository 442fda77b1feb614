use std::collections::BTreeSet;

use super::*;
use crate::Duration;
use crate::grant::RequestInput;

/// `sre` requests, `sre-leads` approve (quorum 1), `dba` owns, `security` reviews when asked to.
fn role_with(review: &str) -> Role {
    let text = format!(
        r#"
id = "db"
title = "Emergency admin"
owner = "group:dba"
requesters = ["group:sre"]
default_duration = "30m"
max_duration = "1h"
max_extensions = 1
[approval]
quorum = 1
approvers = ["group:sre-leads"]
[approval.emergency]
allowed = true
max_duration = "15m"
review_within = "24h"
[target]
kind = "token"
audience = "db"
scope = ["db:admin"]
{review}"#
    );
    Role::parse("db.toml", &text).unwrap()
}

fn role() -> Role {
    role_with("")
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_800_000_000_000 + secs * 1000)
}

fn person(name: &str, groups: &[&str]) -> Principal {
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

fn alice() -> Principal {
    person("alice", &["sre"])
}
fn bob() -> Principal {
    person("bob", &["sre-leads", "dba"])
}
fn dana() -> Principal {
    person("dana", &["dba"])
}

fn input() -> RequestInput {
    RequestInput {
        reason: "primary is down".into(),
        incident: None,
        duration: Some(Duration::from_secs(600)),
    }
}

/// Approved by bob at 10 s, active from 20 s, expired at 620 s.
fn expired() -> Grant {
    let r = role();
    let g = Grant::request(GrantId::from_bytes([7; 16]), &r, &alice(), input(), t(0))
        .unwrap()
        .grant;
    let g = g
        .approve(&r, &bob(), Some("ok".into()), t(10))
        .unwrap()
        .grant;
    let g = g
        .begin_activation(Actor::System("test"), "h".into(), t(20))
        .unwrap()
        .grant;
    let g = g
        .activated(Actor::System("test"), "h", "sha256:00", t(20))
        .unwrap()
        .grant;
    let g = g.begin_expiry(t(620)).unwrap().grant;
    g.finish_revoke(Actor::System("test"), t(620))
        .unwrap()
        .grant
}

/// An emergency use by alice at 0 s, active at once, revoked by her at 60 s.
fn emergency() -> Grant {
    let r = role();
    let g = Grant::request_emergency(GrantId::from_bytes([8; 16]), &r, &alice(), input(), t(0))
        .unwrap()
        .grant;
    let g = g
        .begin_activation(Actor::System("test"), "h".into(), t(0))
        .unwrap()
        .grant;
    let g = g
        .activated(Actor::System("test"), "h", "sha256:00", t(0))
        .unwrap()
        .grant;
    let g = g
        .begin_revoke(Some(&r), &alice(), "done", t(60))
        .unwrap()
        .grant;
    g.finish_revoke(Actor::System("test"), t(60)).unwrap().grant
}

fn rec(
    g: &Grant,
    who: &Principal,
    outcome: Outcome,
    earlier: &[Review],
) -> Result<Recorded, DomainError> {
    let r = role();
    record(
        Some(&r),
        g,
        activated_at(g),
        earlier,
        who,
        outcome,
        "looked at the timeline",
        t(1000),
    )
}

#[test]
fn an_approved_use_owes_a_review_within_the_role_window_after_it_ends() {
    let g = expired();
    let o = owed(Some(&role()), &g, activated_at(&g)).unwrap();
    assert_eq!(o.activated_at, t(20));
    assert_eq!(o.ended_at, t(620));
    assert_eq!(o.due, t(620 + 72 * 3600));
    assert_eq!(o.escalate_at, t(620 + 2 * 72 * 3600));
    assert!(!o.emergency);
    // `required = "emergency"` or `"never"`: an approved use owes none.
    for required in ["emergency", "never"] {
        let r = role_with(&format!("[review]\nrequired = \"{required}\"\n"));
        assert_eq!(owed(Some(&r), &g, activated_at(&g)), None, "{required}");
    }
    // A grant that never became active owes nothing.
    assert_eq!(owed(Some(&role()), &g, None), None);
}

#[test]
fn an_emergency_use_always_owes_one_by_its_review_due() {
    let g = emergency();
    let r = role_with("[review]\nrequired = \"never\"\n");
    let o = owed(Some(&r), &g, activated_at(&g)).unwrap();
    assert_eq!(o.due, t(24 * 3600));
    assert_eq!(o.escalate_at, t(2 * 24 * 3600));
    assert!(o.emergency);
}

#[test]
fn still_active_and_never_active_grants_cannot_be_reviewed() {
    let r = role();
    let g = Grant::request(GrantId::from_bytes([7; 16]), &r, &alice(), input(), t(0))
        .unwrap()
        .grant;
    let e = rec(&g, &dana(), Outcome::Legitimate, &[]).unwrap_err();
    assert_eq!(e.code(), "never_active");
    let denied = g.deny(&r, &bob(), "no", t(5)).unwrap().grant;
    assert_eq!(
        rec(&denied, &dana(), Outcome::Legitimate, &[])
            .unwrap_err()
            .code(),
        "never_active"
    );
    let g = g.approve(&r, &bob(), None, t(10)).unwrap().grant;
    let g = g
        .begin_activation(Actor::System("t"), "h".into(), t(20))
        .unwrap()
        .grant;
    let g = g
        .activated(Actor::System("t"), "h", "f", t(20))
        .unwrap()
        .grant;
    let e = rec(&g, &dana(), Outcome::Legitimate, &[]).unwrap_err();
    assert_eq!(e.code(), "still_active");
    assert!(e.help().contains("breakglass revoke"), "{}", e.help());
}

#[test]
fn nobody_reviews_their_own_use_and_approvers_only_when_the_role_allows() {
    let g = expired();
    // alice requested it; she is no reviewer anyway, but make her one to prove the rule.
    let mut own = alice();
    own.groups.insert("dba".parse().unwrap());
    let e = rec(&g, &own, Outcome::Legitimate, &[]).unwrap_err();
    assert_eq!(e.code(), "self_review");
    // bob approved it and is in the owner group.
    let e = rec(&g, &bob(), Outcome::Legitimate, &[]).unwrap_err();
    assert_eq!(e.code(), "approver_review");
    let r = role_with("[review]\nexclude_approvers = false\n");
    record(
        Some(&r),
        &g,
        activated_at(&g),
        &[],
        &bob(),
        Outcome::Legitimate,
        "fine",
        t(1000),
    )
    .unwrap();
    // Someone outside the reviewers, and a service principal, are refused.
    let e = rec(&g, &person("erin", &["sre"]), Outcome::Legitimate, &[]).unwrap_err();
    assert_eq!(e.code(), "not_reviewer");
    let mut svc = dana();
    svc.kind = PrincipalKind::Service;
    assert_eq!(
        rec(&g, &svc, Outcome::Legitimate, &[]).unwrap_err().code(),
        "reviewer_not_human"
    );
    // `reviewers` replaces the owner.
    let r = role_with("[review]\nreviewers = [\"group:security\"]\n");
    let sec = person("sam", &["security"]);
    assert!(may_review(Some(&r), &sec));
    assert!(!may_review(Some(&r), &dana()));
    // A role no longer loaded is reviewed by administrators.
    assert!(may_review(None, &person("root", &["admins"])));
    assert!(!may_review(None, &dana()));
}

#[test]
fn a_follow_up_stays_open_and_one_final_review_closes_it() {
    let g = expired();
    let first = rec(&g, &dana(), Outcome::FollowUp, &[]).unwrap();
    assert!(!first.review.outcome.is_final());
    let second = rec(
        &g,
        &dana(),
        Outcome::Misuse,
        std::slice::from_ref(&first.review),
    )
    .unwrap();
    assert_eq!(second.events.len(), 1);
    assert_eq!(second.events[0].kind.type_name(), "review.recorded");
    let earlier = [first.review, second.review];
    let e = rec(&g, &dana(), Outcome::Legitimate, &earlier).unwrap_err();
    assert_eq!(e.code(), "already_reviewed");
    assert!(e.to_string().contains("`misuse` by `dana`"), "{e}");
    assert_eq!(final_review(&earlier).unwrap().outcome, Outcome::Misuse);
}

#[test]
fn a_final_review_of_an_emergency_use_lifts_its_block() {
    let g = emergency();
    let up = rec(&g, &dana(), Outcome::FollowUp, &[]).unwrap();
    assert_eq!(up.grant.emergency.unwrap().reviewed_at, None);
    let done = rec(&g, &dana(), Outcome::Legitimate, &[]).unwrap();
    assert_eq!(done.grant.emergency.unwrap().reviewed_at, Some(t(1000)));
    assert!(
        done.events[0].emergency,
        "events about an emergency use stay flagged"
    );
    let later = t(3 * 24 * 3600);
    assert!(g.review_overdue(later));
    assert!(!done.grant.review_overdue(later));
}

#[test]
fn notes_are_required_and_checked_and_outcomes_parse_by_name() {
    let g = expired();
    let r = role();
    let e = record(
        Some(&r),
        &g,
        activated_at(&g),
        &[],
        &dana(),
        Outcome::Legitimate,
        "  ",
        t(1000),
    )
    .unwrap_err();
    assert_eq!(e.code(), "invalid_field");
    for o in Outcome::ALL {
        assert_eq!(Outcome::parse(o.as_str()).unwrap(), o);
    }
    let e = Outcome::parse("fine").unwrap_err();
    assert!(
        e.to_string()
            .contains("legitimate, drill, misuse, follow-up"),
        "{e}"
    );
}

#[test]
fn overdue_reminders_fire_once_each_at_due_and_at_twice_the_window() {
    let g = expired();
    let o = owed(Some(&role()), &g, activated_at(&g)).unwrap();
    let who = vec!["group:dba".to_owned()];
    assert!(reminders_due(&g, &o, &[], &who, t(620)).is_empty());
    assert_eq!(next_reminder(&o, &[]), Some(o.due));
    let due = reminders_due(&g, &o, &[], &who, o.due);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].0, Reminder::Overdue);
    assert_eq!(due[0].1.kind.type_name(), "review.overdue");
    let sent = [Reminder::Overdue];
    assert!(reminders_due(&g, &o, &sent, &who, o.due).is_empty());
    assert_eq!(next_reminder(&o, &sent), Some(o.escalate_at));
    let esc = reminders_due(&g, &o, &sent, &who, o.escalate_at);
    assert_eq!(esc.len(), 1);
    assert_eq!(esc[0].0, Reminder::Escalated);
    // A broker that was down the whole time sends both, in order.
    let both = reminders_due(&g, &o, &[], &who, o.escalate_at);
    assert_eq!(
        both.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
        Reminder::ALL
    );
    assert_eq!(next_reminder(&o, &Reminder::ALL), None);
}

#[test]
fn a_drill_owes_no_review_and_the_broker_records_its_review_as_a_drill() {
    let r = role();
    // The same emergency use, flagged as a drill: nobody owes a review of it.
    let mut drill = emergency();
    drill.drill = true;
    assert_eq!(owed(Some(&r), &drill, activated_at(&drill)), None);
    assert!(owed(Some(&r), &emergency(), activated_at(&emergency())).is_some());

    let done = record_drill(&drill, activated_at(&drill), &[], "d-1", true, t(70)).unwrap();
    assert_eq!(done.review.outcome, Outcome::Drill);
    assert!(done.review.outcome.is_final());
    assert_eq!(done.review.reviewer.as_str(), DRILL_REVIEWER);
    assert!(
        done.review.notes.contains("d-1 passed"),
        "{}",
        done.review.notes
    );
    assert_eq!(done.events.len(), 1);
    assert_eq!(done.events[0].actor, Actor::System("drills"));
    assert!(matches!(
        done.events[0].kind,
        EventKind::ReviewRecorded {
            outcome: Outcome::Drill,
            due: None,
            ..
        }
    ));
    // Once: a second automatic review, or a person's, is refused.
    let again = record_drill(
        &drill,
        activated_at(&drill),
        std::slice::from_ref(&done.review),
        "d-1",
        true,
        t(80),
    );
    assert_eq!(again.unwrap_err().code(), "already_reviewed");
    let by_dana = rec(&drill, &dana(), Outcome::Legitimate, &[done.review]);
    assert_eq!(by_dana.unwrap_err().code(), "already_reviewed");
    // Only a drill grant, and only once it is over.
    let not_a_drill = record_drill(
        &emergency(),
        activated_at(&emergency()),
        &[],
        "d-1",
        true,
        t(70),
    );
    assert_eq!(not_a_drill.unwrap_err().code(), "never_active");
    let failed = record_drill(&drill, activated_at(&drill), &[], "d-2", false, t(70)).unwrap();
    assert!(failed.review.notes.contains("d-2 failed"));
}

#[test]
fn names_starting_system_dot_are_kept_for_the_broker() {
    assert!(is_reserved_name(DRILL_REVIEWER));
    assert!(is_reserved_name("system.anything"));
    assert!(!is_reserved_name("systems"));
    assert!(!is_reserved_name("alice"));
}
