//! The lockdown switch, in process on both backends: engaging revokes every live grant in scope
//! at its target and refuses every new request (emergency ones included) until it is lifted;
//! each bad input is refused clearly and changes nothing; and a lockdown interrupted part-way is
//! finished by the reconciler.

use breakglass_core::{Lockdown, LockdownScope};
use serde_json::{Value, json};

use crate::harness::Broker;

async fn introspect(b: &Broker, token: &str, jwt: &str) -> Value {
    b.raw(
        "POST",
        "/v1/introspect",
        Some(token),
        "application/x-www-form-urlencoded",
        format!("token={jwt}").into_bytes(),
    )
    .await
    .ok()
}

async fn collect(b: &Broker, token: &str, id: &str) -> String {
    b.post(&format!("/v1/grants/{id}/credential"), token, json!({}))
        .await
        .ok()["credential"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn status(b: &Broker) -> Value {
    let admin = b.admin.clone();
    b.get("/v1/lockdown", &admin).await.ok()
}

pub(crate) async fn a_lockdown_revokes_everything_in_scope_and_refuses_requests_until_lifted(
    b: Broker,
) {
    let alice = b.user("alice", &["sre"]).await;
    let bob = b.user("bob", &["sre-leads"]).await;
    let carol = b.user("carol", &["sre"]).await;
    let active = b.active(&alice, &bob, "30m").await;
    let jwt = collect(&b, &alice, &active).await;
    assert_eq!(introspect(&b, &bob, &jwt).await["active"], true);
    let waiting = b.request(&carol, "30m").await;

    b.step_up_admin().await;
    let admin = b.admin.clone();
    let r = b
        .post(
            "/v1/lockdown",
            &admin,
            json!({ "role": "db", "reason": "approver laptop stolen" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let l = r.body;
    assert_eq!(
        (l["revoked"].as_u64(), l["cancelled"].as_u64()),
        (Some(1), Some(1)),
        "{l}"
    );
    assert_eq!(l["lockdown"]["scope"], "role:db");
    assert_eq!(l["lockdown"]["engaged_by"], "admin");

    // The privilege is gone at its target, with who and why on the grant and in the log.
    let g = b.grant(&active).await;
    assert_eq!(g["state"], "revoked", "{g}");
    assert_eq!(g["revoked_by"], "admin");
    assert_eq!(
        g["revoke_reason"],
        "lockdown of role `db`: approver laptop stolen"
    );
    assert_eq!(introspect(&b, &bob, &jwt).await["active"], false);
    assert_eq!(b.grant(&waiting).await["state"], "cancelled");
    let revoking = b.events("grant.revoking").await;
    assert!(
        revoking.iter().any(|e| e["grant"] == active.as_str()
            && e["cause"] == "lockdown"
            && e["by"] == "admin"),
        "{revoking:?}"
    );
    let engaged = b.events("lockdown.engaged").await;
    assert_eq!(engaged.len(), 1, "{engaged:?}");
    assert_eq!(engaged[0]["scope"], "role:db");
    assert_eq!(engaged[0]["reason"], "approver laptop stolen");
    assert_eq!(engaged[0]["actor"], "user:admin");

    // Every way in is refused, saying who engaged it, why, and how to lift it.
    let req = b
        .post(
            "/v1/grants",
            &alice,
            json!({ "role": "db", "reason": "primary is down" }),
        )
        .await;
    req.refused(403, "locked_down");
    let help = req.body["error"]["help"].as_str().unwrap();
    assert!(help.contains("`admin`"), "{help}");
    assert!(help.contains("approver laptop stolen"), "{help}");
    assert!(
        help.contains("breakglass lockdown lift --role db"),
        "{help}"
    );
    b.step_up(&alice, "alice").await;
    b.post(
        "/v1/grants",
        &alice,
        json!({ "role": "db", "reason": "primary is down", "emergency": true }),
    )
    .await
    .refused(403, "locked_down");
    assert_eq!(
        b.get("/v1/grants?state=active", &admin).await.ok(),
        json!([])
    );
    // Anyone signed in may see what is in force.
    let seen = b.get("/v1/lockdown", &alice).await.ok();
    assert_eq!(seen["locked_down"], true);
    assert_eq!(seen["lockdowns"][0]["reason"], "approver laptop stolen");

    // Lifted, requests are accepted again.
    b.step_up_admin().await;
    let lifted = b
        .post(
            "/v1/lockdown/lift",
            &admin,
            json!({ "reason": "laptop found, keys rotated" }),
        )
        .await
        .ok();
    assert_eq!(lifted["lifted"][0]["scope"], "role:db", "{lifted}");
    assert_eq!(status(&b).await["locked_down"], false);
    let ev = b.events("lockdown.lifted").await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["engaged_by"], "admin");
    assert_eq!(ev[0]["reason"], "laptop found, keys rotated");
    b.active(&alice, &bob, "10m").await;
}

pub(crate) async fn a_lockdown_of_every_role_covers_each_and_is_lifted_as_one(b: Broker) {
    let alice = b.user("alice", &["sre"]).await;
    b.step_up_admin().await;
    let admin = b.admin.clone();
    b.post(
        "/v1/lockdown",
        &admin,
        json!({ "all": true, "reason": "path suspected" }),
    )
    .await
    .ok();
    b.post(
        "/v1/grants",
        &alice,
        json!({ "role": "db", "reason": "primary is down" }),
    )
    .await
    .refused(403, "locked_down");
    // Already covered: refused, nothing recorded.
    b.post(
        "/v1/lockdown",
        &admin,
        json!({ "role": "db", "reason": "again" }),
    )
    .await
    .refused(409, "already_locked_down");
    // The role is covered by the lockdown of every role; lifting the role alone is refused, and
    // says what covers it.
    let r = b
        .post("/v1/lockdown/lift", &admin, json!({ "role": "db" }))
        .await;
    r.refused(409, "not_locked_down");
    assert!(
        r.body["error"]["help"]
            .as_str()
            .unwrap()
            .contains("lockdown lift --all"),
        "{}",
        r.body
    );
    assert_eq!(status(&b).await["lockdowns"].as_array().unwrap().len(), 1);
    b.post("/v1/lockdown/lift", &admin, json!({ "all": true }))
        .await
        .ok();
    assert_eq!(b.events("lockdown.engaged").await.len(), 1);
    assert_eq!(b.events("lockdown.lifted").await.len(), 1);
    b.request(&alice, "10m").await;
}

pub(crate) async fn lockdown_bad_input_is_refused_and_changes_nothing(b: Broker) {
    let alice = b.user("alice", &["sre"]).await;
    let bob = b.user("bob", &["sre-leads"]).await;
    let active = b.active(&alice, &bob, "30m").await;
    let admin = b.admin.clone();
    b.step_up_admin().await;
    let size = b.audit().await.len();

    // Lifting with no lockdown in force.
    let r = b.post("/v1/lockdown/lift", &admin, json!({})).await;
    r.refused(409, "not_locked_down");
    assert!(r.message().contains("no lockdown"), "{}", r.message());
    b.post("/v1/lockdown/lift", &admin, json!({ "role": "db" }))
        .await
        .refused(409, "not_locked_down");
    // An unknown role.
    let r = b
        .post(
            "/v1/lockdown",
            &admin,
            json!({ "role": "nope", "reason": "x" }),
        )
        .await;
    r.refused(404, "unknown_role");
    // A missing, empty or oversized reason.
    b.post("/v1/lockdown", &admin, json!({ "role": "db" }))
        .await
        .refused(400, "bad_request");
    let r = b
        .post(
            "/v1/lockdown",
            &admin,
            json!({ "role": "db", "reason": "  " }),
        )
        .await;
    r.refused(422, "invalid_field");
    let r = b
        .post(
            "/v1/lockdown",
            &admin,
            json!({ "role": "db", "reason": "x".repeat(1001) }),
        )
        .await;
    r.refused(422, "invalid_field");
    assert!(r.message().contains("longer than 1000"), "{}", r.message());
    // No scope, or both.
    b.post("/v1/lockdown", &admin, json!({ "reason": "x" }))
        .await
        .refused(400, "bad_request");
    b.post(
        "/v1/lockdown",
        &admin,
        json!({ "role": "db", "all": true, "reason": "x" }),
    )
    .await
    .refused(400, "bad_request");
    // Someone who is not an administrator.
    b.post(
        "/v1/lockdown",
        &alice,
        json!({ "all": true, "reason": "x" }),
    )
    .await
    .refused(403, "admin_only");
    // An administrator without a fresh second factor.
    b.advance("10m");
    b.post(
        "/v1/lockdown",
        &admin,
        json!({ "all": true, "reason": "x" }),
    )
    .await
    .refused(401, "step_up_required");

    assert_eq!(status(&b).await["locked_down"], false);
    assert_eq!(b.grant(&active).await["state"], "active");
    assert!(b.events("lockdown.engaged").await.is_empty());
    assert!(b.events("lockdown.lifted").await.is_empty());
    // Only the refusals were recorded.
    let after = b.audit().await;
    assert!(
        after[size..]
            .iter()
            .all(|e| e["type"] == "auth.denied" || e["type"] == "auth.stepped_up"),
        "{:?}",
        &after[size..]
    );
}

pub(crate) async fn a_lockdown_interrupted_by_a_crash_is_finished_by_the_reconciler(b: Broker) {
    let alice = b.user("alice", &["sre"]).await;
    let bob = b.user("bob", &["sre-leads"]).await;
    let active = b.active(&alice, &bob, "30m").await;
    let jwt = collect(&b, &alice, &active).await;
    // The lockdown committed, and the broker died before touching a single grant.
    let now = breakglass_core::Clock::now(&b.clock);
    let l = Lockdown {
        id: "crashed".into(),
        scope: LockdownScope::All,
        reason: "path suspected".into(),
        engaged_by: "admin".parse().unwrap(),
        engaged_at: now,
    };
    assert!(b.app.store.engage_lockdown(&l, &[], now).await.unwrap());
    assert_eq!(b.grant(&active).await["state"], "active");
    b.reconcile().await;
    let g = b.grant(&active).await;
    assert_eq!(g["state"], "revoked", "{g}");
    assert_eq!(g["revoked_by"], "admin");
    assert_eq!(introspect(&b, &bob, &jwt).await["active"], false);
    let revoking = b.events("grant.revoking").await;
    assert!(
        revoking.iter().any(|e| e["grant"] == active.as_str()
            && e["cause"] == "lockdown"
            && e["actor"] == "system:reconciler"),
        "{revoking:?}"
    );
}
