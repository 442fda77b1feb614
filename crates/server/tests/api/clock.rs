//! Behaviour that depends on time, tested by advancing the manual clock: the step-up window,
//! expiry, extensions, request time-outs, emergency review due dates and sign-in lock backoff.

use serde_json::json;

use crate::harness::Broker;

pub(crate) async fn a_step_up_lasts_its_window_and_not_a_moment_longer(b: Broker) {
    let alice = b.user("alice", &["sre"]).await;
    let bob = b.user("bob", &["sre-leads"]).await;
    // bob's session stepped up when he enrolled; the default window is 5 minutes.
    b.step_up(&bob, "bob").await;
    let first = b.request(&alice, "10m").await;
    b.advance("5m");
    b.post(&format!("/v1/grants/{first}/approve"), &bob, json!({}))
        .await
        .ok();
    let second = b.request(&alice, "10m").await;
    b.advance_ms(1);
    let late = b
        .post(&format!("/v1/grants/{second}/approve"), &bob, json!({}))
        .await;
    late.refused(401, "step_up_required");
    assert!(
        late.message()
            .contains("`approve` needs a second factor verified within the last 5m"),
        "{}",
        late.message()
    );
    // Refused, so nothing changed, and the refusal is on record.
    assert_eq!(b.grant(&second).await["state"], "requested");
    let denied = b.events("auth.denied").await;
    assert!(
        denied
            .iter()
            .any(|e| e["action"] == "grant.approve" && e["code"] == "step_up_required"),
        "{denied:?}"
    );
    b.step_up(&bob, "bob").await;
    b.post(&format!("/v1/grants/{second}/approve"), &bob, json!({}))
        .await
        .ok();
}

pub(crate) async fn a_grant_ends_at_its_end_and_its_credential_with_it(b: Broker) {
    let alice = b.user("alice", &["sre"]).await;
    let bob = b.user("bob", &["sre-leads"]).await;
    let id = b.active(&alice, &bob, "10m").await;
    let g = b.grant(&id).await;
    let activated =
        breakglass_core::Timestamp::parse_rfc3339(g["activated_at"].as_str().unwrap()).unwrap();
    let ends =
        breakglass_core::Timestamp::parse_rfc3339(g["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(ends.unix_millis() - activated.unix_millis(), 600_000);
    // A pass just before the end leaves it active.
    b.advance_ms(ends.unix_millis() - b.now_ms() - 1);
    b.reap().await;
    assert_eq!(b.grant(&id).await["state"], "active");
    // At its end it is over even before the reaper records it: no credential.
    b.advance_ms(1);
    b.step_up(&alice, "alice").await;
    b.post(&format!("/v1/grants/{id}/credential"), &alice, json!({}))
        .await
        .refused(409, "reached_its_end");
    b.reap().await;
    let g = b.grant(&id).await;
    assert_eq!(g["state"], "expired", "{g}");
    assert_eq!(g["ended_at"], g["expires_at"], "ended exactly at its end");
    let types: Vec<String> = b
        .audit()
        .await
        .iter()
        .filter(|e| e["grant"] == id.as_str())
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "grant.requested",
            "grant.approved",
            "grant.activating",
            "grant.activated",
            "credential.issued",
            "auth.denied",
            "grant.revoking",
            "grant.expired"
        ]
    );
}

pub(crate) async fn an_approved_extension_moves_the_end_and_the_reaper_keeps_to_it(b: Broker) {
    let alice = b.user("alice", &["sre"]).await;
    let bob = b.user("bob", &["sre-leads"]).await;
    let id = b.active(&alice, &bob, "20m").await;
    let first_end = b.grant(&id).await["expires_at"].clone();
    b.advance("15m");
    b.step_up(&alice, "alice").await;
    b.post(
        &format!("/v1/grants/{id}/extend"),
        &alice,
        json!({ "duration": "30m", "reason": "migration still running" }),
    )
    .await
    .ok();
    b.step_up(&bob, "bob").await;
    let g = b
        .post(&format!("/v1/grants/{id}/approve"), &bob, json!({}))
        .await
        .ok();
    assert_eq!(g["extensions"].as_array().unwrap().len(), 1, "{g}");
    assert_ne!(g["expires_at"], first_end);
    // Past the first end it is still active; the reaper keeps to the new end (50 minutes in).
    b.advance("10m");
    b.reap().await;
    assert_eq!(b.grant(&id).await["state"], "active");
    b.advance("25m");
    b.reap().await;
    assert_eq!(b.grant(&id).await["state"], "expired");
    // The re-issued credential was owed and recorded.
    let issued = b.events("credential.issued").await;
    assert_eq!(
        issued.iter().filter(|e| e["grant"] == id.as_str()).count(),
        2
    );
}

pub(crate) async fn a_request_nobody_approves_times_out(b: Broker) {
    let alice = b.user("alice", &["sre"]).await;
    let id = b.request(&alice, "10m").await;
    b.advance("9m");
    b.reap().await;
    assert_eq!(b.grant(&id).await["state"], "requested");
    b.advance("1m");
    b.reap().await;
    assert_eq!(b.grant(&id).await["state"], "timed_out");
    assert_eq!(b.events("grant.timed_out").await.len(), 1);
}

pub(crate) async fn an_overdue_emergency_review_blocks_the_next_emergency_use(b: Broker) {
    let session = b.user("alice", &["sre"]).await;
    // A session lasts 8 hours; a token of her own outlives the day this test spans.
    let alice = b.own_token(&session, "alice", "30d", None).await;
    b.advance("30s");
    b.step_up(&alice, "alice").await;
    let emergency = json!({
        "role": "db", "reason": "every approver is asleep", "emergency": true,
    });
    let g = b.post("/v1/grants", &alice, emergency.clone()).await.ok();
    assert_eq!(g["state"], "active", "{g}");
    assert_eq!(g["emergency"], true);
    // The review is owed 24 hours after the request; until then another use is allowed.
    b.advance("24h");
    b.step_up(&alice, "alice").await;
    let again = b.post("/v1/grants", &alice, emergency.clone()).await.ok();
    assert_eq!(again["state"], "active");
    b.advance_ms(1);
    b.step_up(&alice, "alice").await;
    let refused = b.post("/v1/grants", &alice, emergency).await;
    refused.refused(403, "review_overdue");
    assert!(
        refused.message().contains("has owed a review since"),
        "{}",
        refused.message()
    );
}

pub(crate) async fn failures_lock_an_account_with_backoff_and_the_lock_ends(b: Broker) {
    let (_, password) = b.person("alice", &["sre"]).await;
    let login = |pw: &str| json!({ "user": "alice", "password": pw, "code": "000000" });
    for _ in 0..5 {
        b.call("POST", "/v1/login", None, login("wrong"))
            .await
            .refused(401, "sign_in_failed");
    }
    // The sixth failure locks the account for 1 s; while locked even the right password is
    // refused, and says until when.
    b.call("POST", "/v1/login", None, login("wrong"))
        .await
        .refused(401, "sign_in_failed");
    let code = b.code("alice");
    let locked = b
        .call(
            "POST",
            "/v1/login",
            None,
            json!({ "user": "alice", "password": password, "code": code }),
        )
        .await;
    locked.refused(429, "locked");
    assert_eq!(b.events("auth.locked").await.len(), 1);
    // The lock ends on its own; the next failure doubles it.
    b.advance("1s");
    b.call("POST", "/v1/login", None, login("wrong"))
        .await
        .refused(401, "sign_in_failed");
    b.advance("1s");
    b.call("POST", "/v1/login", None, login(&password))
        .await
        .refused(429, "locked");
    b.advance("30s");
    let code = b.code("alice");
    b.call(
        "POST",
        "/v1/login",
        None,
        json!({ "user": "alice", "password": password, "code": code }),
    )
    .await
    .ok();
}
