//! Owner attestation, with the manual clock moved by days: a role nobody attests lapses and
//! refuses new requests (emergency ones included) while grants already active go on; reminders
//! and the lapse are alerted once each; only a person in the owner group attests, with a fresh
//! step-up; a changed role file needs a fresh attestation.

use serde_json::{Value, json};

use crate::harness::{Broker, DB_ROLE};

const DAY_MS: i64 = 86_400_000;

/// Long-lived tokens for the people of these tests: a session lasts 8 hours, the tests span weeks.
async fn people(b: &Broker) -> (String, String, String) {
    let mut out = Vec::new();
    for (name, group) in [("alice", "sre"), ("bob", "sre-leads"), ("dana", "dba")] {
        let session = b.user(name, &[group]).await;
        out.push(b.own_token(&session, name, "60d", None).await);
    }
    let dana = out.pop().unwrap();
    let bob = out.pop().unwrap();
    let alice = out.pop().unwrap();
    (alice, bob, dana)
}

async fn role(b: &Broker, id: &str) -> Value {
    let admin = b.admin.clone();
    b.get(&format!("/v1/roles/{id}"), &admin).await.ok()
}

async fn remind(b: &Broker) {
    breakglass_server::governance::attestations::remind(&b.app)
        .await
        .unwrap();
}

fn request_body(emergency: bool) -> Value {
    json!({ "role": "db", "reason": "primary is down", "duration": "30m", "emergency": emergency })
}

pub(crate) async fn attestation_lapse_blocks_a_request(b: Broker) {
    let (alice, bob, dana) = people(&b).await;
    let loaded = b.now_ms();
    // A role nobody has attested yet is due two weeks after it loaded, and reminded at once.
    let r = role(&b, "db").await;
    assert_eq!(r["attestation"]["status"], "due_soon", "{r}");
    assert_eq!(r["attestation"]["last_attested"], Value::Null);
    assert_eq!(r["attestation"]["on_lapse"], "disable");
    let due = breakglass_core::Timestamp::from_unix_millis(loaded + 14 * DAY_MS);
    assert_eq!(r["attestation"]["due"], due.to_rfc3339());
    remind(&b).await;
    remind(&b).await;
    let reminders = b.events("role.attestation_due").await;
    assert_eq!(reminders.len(), 1, "once per due date: {reminders:?}");
    assert_eq!(reminders[0]["role"], "db");
    assert_eq!(reminders[0]["owner"], "group:dba");
    assert_eq!(reminders[0]["due"], due.to_rfc3339());

    // Ten minutes before the lapse a grant is approved; it outlives the lapse.
    b.advance_ms(14 * DAY_MS - 10 * 60_000);
    b.step_up(&bob, "bob").await;
    let active = b.active(&alice, &bob, "30m").await;
    b.advance("5m");
    // Requests wait 10 minutes for approval: this one still waits when the role lapses.
    let waiting = b.request(&alice, "30m").await;
    b.advance("5m");
    assert_eq!(role(&b, "db").await["attestation"]["status"], "lapsed");

    // New requests are refused, emergency ones too, and nothing is written.
    let before = b.get("/v1/grants", &b.admin.clone()).await.ok();
    let refused = b.post("/v1/grants", &alice, request_body(false)).await;
    refused.refused(403, "role_lapsed");
    assert!(
        refused
            .message()
            .contains("role `db` is disabled: its attestation lapsed at"),
        "{}",
        refused.message()
    );
    let help = refused.body["error"]["help"].as_str().unwrap();
    assert!(help.contains("group:dba"), "{help}");
    assert!(help.contains("breakglass roles attest db --note"), "{help}");
    b.step_up(&alice, "alice").await;
    b.post("/v1/grants", &alice, request_body(true))
        .await
        .refused(403, "role_lapsed");
    assert_eq!(b.get("/v1/grants", &b.admin.clone()).await.ok(), before);
    // The grant already active is not cut; a request still waiting is not activated.
    assert_eq!(b.grant(&active).await["state"], "active");
    b.step_up(&bob, "bob").await;
    b.post(&format!("/v1/grants/{waiting}/approve"), &bob, json!({}))
        .await
        .refused(403, "role_lapsed");
    assert_eq!(b.grant(&waiting).await["state"], "requested");

    // The lapse is alerted once.
    remind(&b).await;
    remind(&b).await;
    let lapsed = b.events("role.lapsed").await;
    assert_eq!(lapsed.len(), 1, "{lapsed:?}");
    assert_eq!(lapsed[0]["cause"], "attestation");
    assert_eq!(lapsed[0]["on_lapse"], "disable");
    assert_eq!(lapsed[0]["since"], due.to_rfc3339());

    // Bad input changes nothing: someone outside the owner group, an unknown role.
    let note = json!({ "note": "still needed for database recovery" });
    let outsider = b.post("/v1/roles/db/attest", &alice, note.clone()).await;
    outsider.refused(403, "not_owner");
    assert!(
        outsider.body["error"]["help"]
            .as_str()
            .unwrap()
            .contains("group:dba"),
        "{}",
        outsider.body
    );
    b.post("/v1/roles/nope/attest", &dana, note.clone())
        .await
        .refused(404, "unknown_role");
    // The owner, without a fresh second factor.
    b.post("/v1/roles/db/attest", &dana, note.clone())
        .await
        .refused(401, "step_up_required");
    assert!(b.events("role.attested").await.is_empty());
    assert_eq!(role(&b, "db").await["attestation"]["status"], "lapsed");
    let denied = b.events("auth.denied").await;
    assert!(
        denied
            .iter()
            .any(|e| e["action"] == "role.attest" && e["code"] == "not_owner"),
        "{denied:?}"
    );

    // The owner attests with a fresh step-up; the role takes requests again.
    b.step_up(&dana, "dana").await;
    let a = b.post("/v1/roles/db/attest", &dana, note).await.ok();
    assert_eq!(a["by"], "dana");
    assert_eq!(a["attestation"]["status"], "current");
    let next_due = breakglass_core::Timestamp::from_unix_millis(b.now_ms() + 180 * DAY_MS);
    assert_eq!(a["next_due"], next_due.to_rfc3339());
    let attested = b.events("role.attested").await;
    assert_eq!(attested.len(), 1);
    assert_eq!(attested[0]["actor"], "user:dana");
    assert_eq!(attested[0]["note"], "still needed for database recovery");
    assert_eq!(attested[0]["next_due"], next_due.to_rfc3339());
    let r = role(&b, "db").await;
    assert_eq!(r["attestation"]["last_attested_by"], "dana");
    assert_eq!(attested[0]["hash"], r["hash"]);
    b.request(&alice, "30m").await;
}

pub(crate) async fn a_changed_role_file_needs_a_fresh_attestation(b: Broker) {
    let (alice, _bob, dana) = people(&b).await;
    b.step_up(&dana, "dana").await;
    b.post(
        "/v1/roles/db/attest",
        &dana,
        json!({ "note": "checked the scope" }),
    )
    .await
    .ok();
    b.advance("10d");
    assert_eq!(role(&b, "db").await["attestation"]["status"], "current");
    // The file changes: the old attestation does not cover the new content, which gets two
    // weeks from now (not from when the role first loaded).
    let dir = b.app.catalog.roles_dir().to_owned();
    std::fs::write(
        dir.join("db.toml"),
        format!("{DB_ROLE}[governance]\nattest_every = \"30d\"\non_lapse = \"warn\"\n"),
    )
    .unwrap();
    b.app.reload_roles().await.unwrap();
    let r = role(&b, "db").await;
    assert_eq!(r["attestation"]["status"], "due_soon", "{r}");
    assert_eq!(r["attestation"]["last_attested"], Value::Null);
    assert_eq!(r["attestation"]["on_lapse"], "warn");
    // With `warn`, a lapse is alerted but requests go on.
    b.advance("14d");
    assert_eq!(role(&b, "db").await["attestation"]["status"], "lapsed");
    b.request(&alice, "30m").await;
    remind(&b).await;
    let lapsed = b.events("role.lapsed").await;
    assert_eq!(lapsed.len(), 1, "{lapsed:?}");
    assert_eq!(lapsed[0]["on_lapse"], "warn");
    assert_eq!(lapsed[0]["hash"], role(&b, "db").await["hash"]);
}

pub(crate) async fn an_expired_role_refuses_even_when_attested(b: Broker) {
    let (alice, _bob, dana) = people(&b).await;
    // Valid through 5 December (UTC); the clock starts on 30 November.
    let dir = b.app.catalog.roles_dir().to_owned();
    std::fs::write(
        dir.join("db.toml"),
        format!("{DB_ROLE}[governance]\nexpires = \"2026-12-05\"\n"),
    )
    .unwrap();
    b.app.reload_roles().await.unwrap();
    b.step_up(&dana, "dana").await;
    b.post(
        "/v1/roles/db/attest",
        &dana,
        json!({ "note": "needed until the migration" }),
    )
    .await
    .ok();
    b.request(&alice, "30m").await;
    b.advance("6d");
    let r = role(&b, "db").await;
    assert_eq!(r["attestation"]["status"], "expired", "{r}");
    assert_eq!(r["attestation"]["expires"], "2026-12-06T00:00:00.000Z");
    let refused = b.post("/v1/grants", &alice, request_body(false)).await;
    refused.refused(403, "role_lapsed");
    assert!(
        refused.message().contains("expired after `2026-12-05`"),
        "{}",
        refused.message()
    );
    let help = refused.body["error"]["help"].as_str().unwrap();
    assert!(
        help.contains("expires") && help.contains("db.toml"),
        "{help}"
    );
    remind(&b).await;
    let lapsed = b.events("role.lapsed").await;
    assert_eq!(lapsed.len(), 1, "{lapsed:?}");
    assert_eq!(lapsed[0]["cause"], "expired");
    assert_eq!(lapsed[0]["since"], "2026-12-06T00:00:00.000Z");
}
