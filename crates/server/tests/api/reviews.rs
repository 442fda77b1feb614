//! Post-use reviews through the API: who may record one, which grants can take one, one final
//! review, the emergency block it lifts, the overdue alerts (by advancing the manual clock), and
//! evidence whose every event proves against the signed checkpoint.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use breakglass_audit::{Checkpoint, Hash, NoteVerifier, SignedNote, leaf_hash, verify_inclusion};
use serde_json::{Value, json};

use crate::harness::Broker;

fn review(outcome: &str) -> Value {
    json!({ "outcome": outcome, "notes": "checked the timeline against INC-7" })
}

/// What a refused review must leave as it was: the grant, the reviews, the `review.*` events.
async fn snapshot(b: &Broker, id: &str) -> (Value, usize, usize) {
    let g = b.grant(id).await;
    let admin = b.admin.clone();
    let reviews = b.get("/v1/reviews", &admin).await.ok();
    let n = reviews.as_array().unwrap().len();
    let recorded = b.events("review.recorded").await.len();
    (g, n, recorded)
}

pub(crate) async fn bad_reviews_are_refused_and_change_nothing(b: Broker) {
    let alice = b.user("alice", &["sre"]).await;
    let bob = b.user("bob", &["sre-leads", "dba"]).await;
    let dana = b.user("dana", &["dba"]).await;
    let erin = b.user("erin", &["sre"]).await;
    // A request that never became active.
    let denied = b.request(&alice, "10m").await;
    b.step_up(&bob, "bob").await;
    b.post(
        &format!("/v1/grants/{denied}/deny"),
        &bob,
        json!({ "reason": "not now" }),
    )
    .await
    .ok();
    // A grant still active: approved by bob, who is also in the owner group.
    let id = b.active(&alice, &bob, "10m").await;
    b.step_up(&dana, "dana").await;
    let path = format!("/v1/grants/{id}/review");
    b.post(&path, &dana, review("legitimate"))
        .await
        .refused(409, "still_active");
    b.post(
        &format!("/v1/grants/{denied}/review"),
        &dana,
        review("legitimate"),
    )
    .await
    .refused(409, "never_active");
    // It ends; now the requester, the approver and a stranger are refused.
    b.advance("10m");
    b.reap().await;
    assert_eq!(b.grant(&id).await["state"], "expired");
    let before = snapshot(&b, &id).await;
    assert_eq!(before.1, 1, "the expired grant is owed a review now");
    b.step_up(&alice, "alice").await;
    let own = b.post(&path, &alice, review("legitimate")).await;
    // alice is not a reviewer of the role at all: the core says so before anything else.
    own.refused(403, "not_reviewer");
    b.step_up(&bob, "bob").await;
    let approver = b.post(&path, &bob, review("legitimate")).await;
    approver.refused(403, "approver_review");
    assert!(
        approver.message().contains("approved grant"),
        "{}",
        approver.message()
    );
    b.step_up(&erin, "erin").await;
    b.post(&path, &erin, review("legitimate"))
        .await
        .refused(403, "not_reviewer");
    b.step_up(&dana, "dana").await;
    b.post(&path, &dana, review("fine"))
        .await
        .refused(422, "invalid_field");
    b.post(
        &path,
        &dana,
        json!({ "outcome": "legitimate", "notes": " " }),
    )
    .await
    .refused(422, "invalid_field");
    // A reviewer without a fresh step-up.
    b.advance("10m");
    b.post(&path, &dana, review("legitimate"))
        .await
        .refused(401, "step_up_required");
    assert_eq!(snapshot(&b, &id).await, before, "refusals changed nothing");
    // The owner records it; a second final review is refused and changes nothing.
    b.step_up(&dana, "dana").await;
    let r = b.post(&path, &dana, review("legitimate")).await.ok();
    assert_eq!(r["outcome"], "legitimate");
    assert_eq!(r["final"], true);
    let after = snapshot(&b, &id).await;
    let again = b.post(&path, &dana, review("misuse")).await;
    again.refused(409, "already_reviewed");
    assert!(
        again.message().contains("`legitimate` by `dana`"),
        "{}",
        again.message()
    );
    assert_eq!(snapshot(&b, &id).await, after);
    let recorded = b.events("review.recorded").await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["reviewer"], "dana");
    assert_eq!(recorded[0]["grant"], id.as_str());
}

pub(crate) async fn the_requester_never_reviews_their_own_use(b: Broker) {
    // A role whose reviewers include the requesters' group: the requester is still refused.
    let alice = b.user("alice", &["sre", "dba"]).await;
    let bob = b.user("bob", &["sre-leads"]).await;
    b.step_up(&bob, "bob").await;
    let id = b.active(&alice, &bob, "10m").await;
    b.advance("10m");
    b.reap().await;
    b.step_up(&alice, "alice").await;
    let r = b
        .post(
            &format!("/v1/grants/{id}/review"),
            &alice,
            review("legitimate"),
        )
        .await;
    r.refused(403, "self_review");
    assert!(b.events("review.recorded").await.is_empty());
}

pub(crate) async fn a_follow_up_stays_open_and_misuse_is_loud(b: Broker) {
    let alice = b.user("alice", &["sre"]).await;
    let bob = b.user("bob", &["sre-leads"]).await;
    let dana = b.user("dana", &["dba"]).await;
    b.step_up(&bob, "bob").await;
    let id = b.active(&alice, &bob, "10m").await;
    b.advance("10m");
    b.reap().await;
    b.get("/v1/reviews?owed=yes", &dana)
        .await
        .refused(400, "bad_request");
    let owed = b.get("/v1/reviews?owed=true", &dana).await.ok();
    assert_eq!(owed.as_array().unwrap().len(), 1, "{owed}");
    assert_eq!(owed[0]["status"], "owed");
    assert_eq!(owed[0]["may_record"], true);
    // The requester sees it too, but may not record it.
    let mine = b.get("/v1/reviews?mine=true", &alice).await.ok();
    assert!(mine.as_array().unwrap().is_empty(), "{mine}");
    b.step_up(&dana, "dana").await;
    let path = format!("/v1/grants/{id}/review");
    let r = b.post(&path, &dana, review("follow-up")).await.ok();
    assert_eq!(r["final"], false);
    let owed = b.get("/v1/reviews?owed=true", &dana).await.ok();
    assert_eq!(owed[0]["status"], "follow-up", "{owed}");
    assert_eq!(owed[0]["reviewer"], "dana");
    b.post(&path, &dana, review("misuse")).await.ok();
    let owed = b.get("/v1/reviews?owed=true", &dana).await.ok();
    assert!(owed.as_array().unwrap().is_empty(), "{owed}");
    let all = b.get("/v1/reviews", &dana).await.ok();
    assert_eq!(all[0]["status"], "misuse", "{all}");
    let recorded = b.events("review.recorded").await;
    assert_eq!(
        recorded
            .iter()
            .map(|e| e["outcome"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["follow-up", "misuse"]
    );
}

pub(crate) async fn a_final_review_lifts_the_emergency_block(b: Broker) {
    let session = b.user("alice", &["sre"]).await;
    let alice = b.own_token(&session, "alice", "30d", None).await;
    let dana_session = b.user("dana", &["dba"]).await;
    let dana = b.own_token(&dana_session, "dana", "30d", None).await;
    b.advance("30s");
    b.step_up(&alice, "alice").await;
    let emergency =
        json!({ "role": "db", "reason": "every approver is asleep", "emergency": true });
    let g = b.post("/v1/grants", &alice, emergency.clone()).await.ok();
    let id = g["id"].as_str().unwrap().to_owned();
    b.advance("15m");
    b.reap().await;
    b.advance("24h");
    b.step_up(&alice, "alice").await;
    b.post("/v1/grants", &alice, emergency.clone())
        .await
        .refused(403, "review_overdue");
    b.step_up(&dana, "dana").await;
    b.post(
        &format!("/v1/grants/{id}/review"),
        &dana,
        review("legitimate"),
    )
    .await
    .ok();
    assert!(b.grant(&id).await["reviewed_at"].is_string());
    b.step_up(&alice, "alice").await;
    let again = b.post("/v1/grants", &alice, emergency).await.ok();
    assert_eq!(again["state"], "active");
}

pub(crate) async fn an_overdue_review_alerts_once_then_escalates_once(b: Broker) {
    let alice = b.user("alice", &["sre"]).await;
    let bob = b.user("bob", &["sre-leads"]).await;
    b.step_up(&bob, "bob").await;
    let id = b.active(&alice, &bob, "10m").await;
    b.advance("10m");
    b.reap().await;
    let pass = || breakglass_server::workers::reviews::pass(&b.app);
    // Due 72 hours after the end (the default `[review] within`).
    let next = pass().await.unwrap().unwrap();
    assert_eq!(next.unix_millis(), b.now_ms() + 72 * 3_600_000);
    b.advance_ms(72 * 3_600_000 - 1);
    pass().await.unwrap();
    assert!(b.events("review.overdue").await.is_empty());
    b.advance_ms(1);
    let next = pass().await.unwrap().unwrap();
    pass().await.unwrap();
    let overdue = b.events("review.overdue").await;
    assert_eq!(overdue.len(), 1, "once: {overdue:?}");
    assert_eq!(overdue[0]["escalated"], false);
    assert_eq!(overdue[0]["grant"], id.as_str());
    assert_eq!(overdue[0]["reviewers"], json!(["group:dba"]));
    // Escalated after twice the window.
    assert_eq!(next.unix_millis(), b.now_ms() + 72 * 3_600_000);
    b.advance("72h");
    assert_eq!(pass().await.unwrap(), None, "nothing more to send");
    pass().await.unwrap();
    let overdue = b.events("review.overdue").await;
    assert_eq!(overdue.len(), 2);
    assert_eq!(overdue[1]["escalated"], true);
    let listed = b
        .get("/v1/reviews?overdue=true", &b.admin.clone())
        .await
        .ok();
    assert_eq!(listed[0]["escalated"], true, "{listed}");
}

pub(crate) async fn the_evidence_proves_every_event_against_the_signed_checkpoint(b: Broker) {
    let alice = b.user("alice", &["sre"]).await;
    let bob = b.user("bob", &["sre-leads"]).await;
    let dana = b.user("dana", &["dba"]).await;
    let erin = b.user("erin", &["sre"]).await;
    b.step_up(&bob, "bob").await;
    let id = b.request(&alice, "10m").await;
    b.post(
        &format!("/v1/grants/{id}/approve"),
        &bob,
        json!({ "comment": "go ahead" }),
    )
    .await
    .ok();
    b.step_up(&alice, "alice").await;
    b.post(&format!("/v1/grants/{id}/credential"), &alice, json!({}))
        .await
        .ok();
    b.post(
        &format!("/v1/grants/{id}/revoke"),
        &alice,
        json!({ "reason": "fixed" }),
    )
    .await
    .ok();
    let ev = b.get(&format!("/v1/grants/{id}/review"), &dana).await.ok();
    let s = &ev["summary"];
    assert_eq!(s["reason"], "primary is down");
    assert_eq!(s["approvals"][0]["approver"], "bob");
    assert_eq!(s["approvals"][0]["comment"], "go ahead");
    assert_eq!(s["collected"].as_array().unwrap().len(), 1, "{s}");
    assert_eq!(s["ended_how"], "revoked by alice: fixed");
    assert_eq!(ev["review"]["status"], "owed");
    assert_eq!(ev["grant"]["state"], "revoked");
    // Every event proves against the checkpoint, whose signature checks with the broker's key.
    let cp = &ev["checkpoint"];
    let key = NoteVerifier::parse(cp["verifier_key"].as_str().unwrap()).unwrap();
    let note = SignedNote::parse(cp["note"].as_str().unwrap()).unwrap();
    let text = key.verify(&note).unwrap();
    let checkpoint = Checkpoint::parse(text).unwrap();
    let events = ev["events"].as_array().unwrap();
    assert!(events.len() >= 7, "{events:?}");
    let mut types = Vec::new();
    for e in events {
        let bytes = B64.decode(e["leaf"].as_str().unwrap()).unwrap();
        let proof: Vec<Hash> = e["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| Hash::from_base64(h.as_str().unwrap()).unwrap())
            .collect();
        let seq = e["seq"].as_u64().unwrap();
        assert!(verify_inclusion(
            seq,
            checkpoint.size,
            &leaf_hash(&bytes),
            &proof,
            &checkpoint.root
        ));
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        types.push(v["type"].as_str().unwrap().to_owned());
    }
    assert!(
        types.contains(&"credential.delivered".to_owned()),
        "{types:?}"
    );
    assert!(types.contains(&"grant.revoked".to_owned()), "{types:?}");
    // The requester's own step-up inside the window is evidence too.
    assert!(
        events.iter().any(|e| e["about"] == "requester"),
        "{events:?}"
    );
    // Someone who may not see the grant is told it does not exist.
    b.get(&format!("/v1/grants/{id}/review"), &erin)
        .await
        .refused(404, "unknown_grant");
}
