//! Sign-in throttling that cannot be turned against the real person: failures count per (account,
//! source), a session's step-up is never blocked by a lock, an account-wide safeguard stops a
//! guess from many sources at 100, and refusals while locked are one audit event per window.

use serde_json::{Value, json};

use crate::harness::{Answer, Broker};

const ATTACKER: &str = "127.0.0.2";
const BOB_AT_HOME: &str = "127.0.0.1";

async fn login_from(b: &Broker, source: &str, user: &str, password: &str, code: &str) -> Answer {
    b.call_from(
        source,
        "POST",
        "/v1/login",
        None,
        json!({ "user": user, "password": password, "code": code }),
    )
    .await
}

pub(crate) async fn failures_from_one_source_never_lock_out_another(b: Broker) {
    let alice = b.user("alice", &["sre"]).await;
    let (_, password) = b.person("bob", &["sre-leads"]).await;
    let id = b.request(&alice, "10m").await;
    for _ in 0..200 {
        let r = login_from(&b, ATTACKER, "bob", "not-his-password", "000000").await;
        assert!(
            matches!(r.code(), "sign_in_failed" | "locked"),
            "{}",
            r.body
        );
    }
    // Only attempts that reached the password check count: most were refused by the lock.
    let failed = b.events("auth.failed").await;
    assert!(failed.len() < 20, "{} failures counted", failed.len());
    assert!(failed.iter().all(|e| e["source"] == ATTACKER));
    // From his own address bob signs in, steps up and approves.
    b.advance("30s");
    let code = b.code("bob");
    let s = login_from(&b, BOB_AT_HOME, "bob", &password, &code)
        .await
        .ok();
    let bob = s["token"].as_str().unwrap().to_owned();
    assert_eq!(s["method"], "password+totp");
    let g = b
        .post(&format!("/v1/grants/{id}/approve"), &bob, json!({}))
        .await
        .ok();
    assert_eq!(g["state"], "active");
    // bob's sign-in from home forgets nothing about the attacker's address: its next failure
    // locks it again, for longer, even against the right password.
    login_from(&b, ATTACKER, "bob", "still-guessing", "000000")
        .await
        .refused(401, "sign_in_failed");
    login_from(&b, ATTACKER, "bob", &password, "000000")
        .await
        .refused(429, "locked");
}

pub(crate) async fn a_locked_account_still_steps_up_and_wrong_codes_end_only_the_session(
    b: Broker,
) {
    let alice = b.user("alice", &["sre"]).await;
    let (bob, password) = b.person("bob", &["sre-leads"]).await;
    // 100 failures from 25 addresses, each staying under its own limits: the safeguard locks
    // the account everywhere, with a high-severity alert.
    for i in 0..25 {
        for _ in 0..4 {
            login_from(&b, &format!("10.9.0.{i}"), "bob", "guess", "000000")
                .await
                .refused(401, "sign_in_failed");
        }
    }
    let locked = b.events("auth.locked").await;
    assert!(
        locked
            .iter()
            .any(|e| e["subject"] == "account bob" && e["failures"] == 100),
        "{locked:?}"
    );
    let r = login_from(&b, BOB_AT_HOME, "bob", &password, "000000").await;
    r.refused(429, "locked");
    // bob's session, signed in before, still steps up and approves.
    let id = b.request(&alice, "10m").await;
    b.advance("30s");
    b.step_up(&bob, "bob").await;
    b.post(&format!("/v1/grants/{id}/approve"), &bob, json!({}))
        .await
        .ok();
    // A session gets five wrong codes; the fifth ends it, and nothing else.
    for i in 1..=5 {
        let r = b
            .post("/v1/step-up", &bob, json!({ "code": "000000" }))
            .await;
        if i < 5 {
            r.refused(401, "code_rejected");
        } else {
            r.refused(401, "session_ended");
            assert!(
                r.message().contains("5 wrong codes in a row"),
                "{}",
                r.message()
            );
        }
    }
    b.get("/v1/whoami", &bob)
        .await
        .refused(401, "unauthenticated");
    let revoked: Vec<Value> = b.events("token.revoked").await;
    assert!(
        revoked.iter().any(|e| e["actor"] == "system:auth"),
        "{revoked:?}"
    );
}

pub(crate) async fn refusals_while_locked_are_one_event_per_window(b: Broker) {
    let (_, password) = b.person("bob", &["sre-leads"]).await;
    for _ in 0..6 {
        login_from(&b, ATTACKER, "bob", "guess", "000000").await;
    }
    // The sixth failure locked bob from this address for 1 s; 50 more tries are refused unread.
    for _ in 0..50 {
        login_from(&b, ATTACKER, "bob", &password, "000000")
            .await
            .refused(429, "locked");
    }
    b.sweep_throttles().await;
    assert!(b.events("auth.refused_while_locked").await.is_empty());
    b.advance("1s");
    b.sweep_throttles().await;
    b.sweep_throttles().await;
    let events = b.events("auth.refused_while_locked").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["subject"], format!("account bob from {ATTACKER}"));
    assert_eq!(events[0]["refused"], 50);
    // An hour after the last failure the counters are forgotten.
    b.advance("1h");
    b.sweep_throttles().await;
    let code = b.code("bob");
    let s = login_from(&b, ATTACKER, "bob", &password, &code).await.ok();
    assert_eq!(s["method"], "password+totp");
}
