//! Drills driven in process: a drill of the token role `db` through its real approval, the worker's
//! passes run by the test, the credential exercised and revoked by the broker and never shown; who
//! may run one; bad input that changes nothing; an overdue drill alerting once per due date.

use breakglass_server::governance::drills;
use serde_json::{Value, json};

use crate::harness::Broker;

async fn pass(b: &Broker) {
    drills::pass(&b.app).await.unwrap();
}

/// The number of drills and grants the admin sees.
async fn counts(b: &Broker) -> (usize, usize) {
    let admin = b.admin.clone();
    let d = b.get("/v1/drills", &admin).await.ok();
    let g = b.get("/v1/grants", &admin).await.ok();
    (d.as_array().unwrap().len(), g.as_array().unwrap().len())
}

fn check<'a>(d: &'a Value, step: &str) -> &'a Value {
    d["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["step"] == step)
        .unwrap_or_else(|| panic!("no `{step}` check in {d}"))
}

pub(crate) async fn a_token_drill_goes_through_approval_and_the_broker_exercises_and_revokes_it(
    b: Broker,
) {
    let dana = b.user("dana", &["dba"]).await;
    let bob = b.user("bob", &["sre-leads"]).await;
    let started = b
        .post("/v1/drills", &dana, json!({ "role": "db" }))
        .await
        .ok();
    assert_eq!(started["stage"], "awaiting_grant", "{started}");
    assert_eq!(started["grant_state"], "requested");
    assert!(
        started["waiting_for"]
            .as_str()
            .unwrap()
            .contains("approval by the approvers of role `db`")
    );
    let id = started["id"].as_str().unwrap().to_owned();
    let grant = started["grant"].as_str().unwrap().to_owned();
    // Its grant is a drill, requested by its runner although `sre` requests the role.
    let g = b.grant(&grant).await;
    assert_eq!(
        (g["drill"].clone(), g["requester"].clone()),
        (json!(true), json!("dana"))
    );
    // Nothing moves while it waits for its approvers.
    pass(&b).await;
    let d = b.get(&format!("/v1/drills/{id}"), &dana).await.ok();
    assert_eq!(d["stage"], "awaiting_grant");
    // The approver approves it with the normal `approve`.
    b.step_up(&bob, "bob").await;
    let g = b
        .post(&format!("/v1/grants/{grant}/approve"), &bob, json!({}))
        .await
        .ok();
    assert_eq!(g["state"], "active", "{g}");
    // Nobody collects a drill's credential, its runner included.
    b.step_up(&dana, "dana").await;
    let refused = b
        .post(&format!("/v1/grants/{grant}/credential"), &dana, json!({}))
        .await;
    refused.refused(403, "drill_credential_not_shown");
    b.advance("1s");
    pass(&b).await;
    let d = b.get(&format!("/v1/drills/{id}"), &dana).await.ok();
    assert_eq!(d["stage"], "failed", "{d}");
    for step in ["approval", "activation", "exercise", "revoke", "refusal"] {
        assert_eq!(check(&d, step)["passed"], true, "{step}: {d}");
    }
    assert!(
        check(&d, "exercise")["detail"]
            .as_str()
            .unwrap()
            .contains("introspection says active"),
        "{d}"
    );
    assert!(
        check(&d, "refusal")["detail"]
            .as_str()
            .unwrap()
            .contains("introspection says inactive"),
        "{d}"
    );
    // The role names no channel, so nobody would hear of its use: the drill says so.
    let alerts = check(&d, "alerts");
    assert_eq!(alerts["passed"], false);
    assert!(
        alerts["detail"]
            .as_str()
            .unwrap()
            .contains("names no alert channel")
    );
    assert_eq!(d["failed"], json!(["alerts"]));
    // The grant was revoked through the normal path, by the drill.
    let g = b.grant(&grant).await;
    assert_eq!(g["state"], "revoked", "{g}");
    assert_eq!(g["revoked_by"], "system:drill");
    // Every event about it is flagged, and the report is one `drill.completed`.
    let about: Vec<Value> = b
        .audit()
        .await
        .into_iter()
        // `auth.denied` records the caller's refusal (the credential above), not the drill.
        .filter(|e| e["grant"] == grant.as_str() && e["type"] != "auth.denied")
        .collect();
    assert!(about.iter().all(|e| e["drill"] == true), "{about:?}");
    let done = b.events("drill.completed").await;
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["passed"], false);
    assert_eq!(done[0]["checks"].as_array().unwrap().len(), 6);
    // Later passes change nothing.
    pass(&b).await;
    assert_eq!(b.events("drill.completed").await.len(), 1);
    // The broker recorded the drill's review, once, with the outcome `drill`: no use is owed a
    // review, and nobody can record another.
    let reviewed = b.events("review.recorded").await;
    assert_eq!(reviewed.len(), 1, "{reviewed:?}");
    assert_eq!(reviewed[0]["grant"], grant.as_str());
    assert_eq!(reviewed[0]["outcome"], "drill");
    assert_eq!(reviewed[0]["reviewer"], "system.drills");
    assert_eq!(reviewed[0]["actor"], "system:drills");
    let owed = b.get("/v1/reviews?owed=true", &dana).await.ok();
    assert!(
        owed.as_array()
            .is_some_and(|a| a.iter().all(|r| r["grant"] != grant.as_str())),
        "{owed}"
    );
    // The role list shows it.
    let roles = b.get("/v1/roles", &dana).await.ok();
    assert_eq!(roles[0]["drill"]["last_drill"], id.as_str());
    assert_eq!(roles[0]["drill"]["last_result"], "failed");
}

pub(crate) async fn only_owners_and_reviewers_drill_and_bad_input_changes_nothing(b: Broker) {
    let alice = b.user("alice", &["sre"]).await;
    let bob = b.user("bob", &["sre-leads"]).await;
    let dana = b.user("dana", &["dba"]).await;
    // A requester or an approver of the role is neither its owner nor a reviewer.
    for (who, token) in [("alice", &alice), ("bob", &bob)] {
        b.step_up(token, who).await;
        let a = b.post("/v1/drills", token, json!({ "role": "db" })).await;
        a.refused(403, "not_drill_runner");
        assert!(
            a.body["error"]["help"]
                .as_str()
                .unwrap()
                .contains("group:dba")
        );
    }
    b.step_up(&dana, "dana").await;
    b.post("/v1/drills", &dana, json!({ "role": "nope" }))
        .await
        .refused(404, "unknown_role");
    b.post("/v1/drills", &dana, json!({ "role": "db", "extra": 1 }))
        .await
        .refused(400, "bad_request");
    b.get("/v1/drills/not-a-uuid", &dana)
        .await
        .refused(422, "invalid_drill_id");
    b.get("/v1/drills/00000000-0000-4000-8000-000000000000", &dana)
        .await
        .refused(404, "unknown_drill");
    // Without a fresh second factor.
    b.advance("1h");
    b.post("/v1/drills", &dana, json!({ "role": "db" }))
        .await
        .refused(401, "step_up_required");
    assert_eq!(counts(&b).await, (0, 0));
    assert!(b.events("drill.started").await.is_empty());
}

pub(crate) async fn an_emergency_drill_does_not_hold_up_its_runners_emergency_use(b: Broker) {
    let session = b.user("dana", &["dba", "sre"]).await;
    // A token of her own that outlives the days this test jumps.
    let dana = b.own_token(&session, "dana", "30d", None).await;
    b.step_up(&dana, "dana").await;
    let started = b
        .post(
            "/v1/drills",
            &dana,
            json!({ "role": "db", "emergency": true }),
        )
        .await
        .ok();
    assert_eq!(started["grant_state"], "active", "{started}");
    b.advance("1s");
    pass(&b).await;
    let id = started["id"].as_str().unwrap();
    let d = b.get(&format!("/v1/drills/{id}"), &dana).await.ok();
    assert!(
        d["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["step"] != "approval")
    );
    assert_eq!(check(&d, "exercise")["passed"], true, "{d}");
    // Two days on, its review is long past due; a drill is not a use, so it blocks nothing.
    b.advance("2d");
    b.step_up(&dana, "dana").await;
    let g = b
        .post(
            "/v1/grants",
            &dana,
            json!({ "role": "db", "reason": "primary is down", "emergency": true }),
        )
        .await
        .ok();
    assert_eq!(g["state"], "active", "{g}");
}

pub(crate) async fn an_overdue_drill_alerts_once_per_due_date(b: Broker) {
    // Read from the store and the service: sessions do not last the months this test jumps.
    let overdue = || async {
        b.app
            .store
            .audit_tail(10_000)
            .await
            .unwrap()
            .iter()
            .filter_map(|e| e.to_json())
            .filter(|e| e["type"] == "drill.overdue")
            .collect::<Vec<Value>>()
    };
    let status = || async { drills::statuses(&b.app).await.unwrap()["db"].clone() };
    pass(&b).await;
    assert!(!status().await.drill_overdue);
    b.advance("89d");
    pass(&b).await;
    assert!(overdue().await.is_empty());
    b.advance("1d");
    pass(&b).await;
    pass(&b).await;
    let events = overdue().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["role"], "db");
    assert_eq!(events[0]["drill"], true);
    assert!(status().await.drill_overdue);
    b.advance("30d");
    pass(&b).await;
    assert_eq!(overdue().await.len(), 1);
}

pub(crate) async fn a_drill_cut_off_between_its_steps_is_finished_by_the_next_pass(b: Broker) {
    use breakglass_core::drill::Probe;
    use breakglass_core::{Clock as _, DrillId, GrantId};
    let dana = b.user("dana", &["dba"]).await;
    let started = b
        .post(
            "/v1/drills",
            &dana,
            json!({ "role": "db", "emergency": true }),
        )
        .await
        .ok();
    let id: DrillId = started["id"].as_str().unwrap().parse().unwrap();
    let grant: GrantId = started["grant"].as_str().unwrap().parse().unwrap();
    // A broker that stopped right after recording the exercise: the drill says it is revoking,
    // but its grant's revoke intent was never written, and the credential is gone with the process.
    let now = b.clock.now();
    let sd = b.app.store.drill(id).await.unwrap().unwrap();
    let g = b.app.store.grant(grant).await.unwrap().unwrap().grant;
    let exercising = sd.drill.grant_seen(&g, now).unwrap().drill;
    let probe = Probe {
        started_at: now,
        finished_at: now,
        outcome: Ok("seen before the stop".into()),
    };
    let revoking = exercising.exercised(&probe, now).unwrap().drill;
    b.app
        .store
        .update_drill(&revoking, sd.version, &[], now)
        .await
        .unwrap();
    assert_eq!(b.grant(&grant.to_string()).await["state"], "active");
    b.advance("1s");
    pass(&b).await;
    // The next pass writes the revoke intent, revokes, and checks the refusal without the
    // credential, saying so.
    assert_eq!(b.grant(&grant.to_string()).await["state"], "revoked");
    let d = b.get(&format!("/v1/drills/{id}"), &dana).await.ok();
    assert_eq!(check(&d, "revoke")["passed"], true, "{d}");
    let refusal = check(&d, "refusal");
    assert_eq!(refusal["passed"], true, "{d}");
    assert!(
        refusal["detail"]
            .as_str()
            .unwrap()
            .contains("not held across a restart"),
        "{d}"
    );
    assert_eq!(d["passed"], false, "no channel: {d}");
    assert_eq!(d["failed"], json!(["alerts"]));
}
