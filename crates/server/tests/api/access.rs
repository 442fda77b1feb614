//! The access fixes, each refused clearly and changing nothing: scopes, factors, resets, disable,
//! the owner's revoke, step-up for deny and cancel, token redaction, and the edges of input.

use serde_json::{Value, json};

use crate::harness::{Answer, Broker};

/// Introspects `jwt` as the holder of `token`.
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

/// The whole audit log as text, for looking for what must not be there.
async fn audit_text(b: &Broker) -> String {
    serde_json::to_string(&b.audit().await).unwrap()
}

pub(crate) async fn a_token_without_the_credential_scope_cannot_collect_a_credential(b: Broker) {
    let bob = b.user("bob", &["sre-leads"]).await;
    let bot = b.service("rotator", &["sre"], &["read", "request"]).await;
    let id = b.request(&bot, "10m").await;
    b.post(&format!("/v1/grants/{id}/approve"), &bob, json!({}))
        .await
        .ok();
    let size = b.audit().await.len();
    let r = b
        .post(&format!("/v1/grants/{id}/credential"), &bot, json!({}))
        .await;
    r.refused(403, "scope_missing");
    assert!(
        r.message()
            .contains("may be used for read, request, not `credential`"),
        "{}",
        r.message()
    );
    // Nothing was handed over; the refusal is on record, filed under the grant.
    let audit = b.audit().await;
    assert_eq!(audit.len(), size + 1);
    let last = &audit[size];
    assert_eq!(last["type"], "auth.denied");
    assert_eq!(last["action"], "credential.reveal");
    assert_eq!(last["code"], "scope_missing");
    assert_eq!(last["grant"], id.as_str());
    assert!(b.events("credential.delivered").await.is_empty());
}

pub(crate) async fn a_read_token_cannot_change_any_sign_in_factor(b: Broker) {
    let (alice, password) = b.person("alice", &["sre"]).await;
    // alice makes herself a read-only token, which is then stolen.
    let stolen = b.own_token(&alice, "alice", "1d", Some(&["read"])).await;
    let other = b
        .post(
            "/v1/tokens",
            &alice,
            json!({ "user": "alice", "ttl": "1d" }),
        )
        .await
        .ok();
    let size = b.audit().await.len();
    for (path, body) in [
        ("/v1/totp/enroll", json!({})),
        ("/v1/totp/confirm", json!({ "code": "123456" })),
        (
            "/v1/password",
            json!({ "current": password, "new": "a-new-password-of-the-thief" }),
        ),
        (
            &format!("/v1/tokens/{}/revoke", other["id"].as_str().unwrap()) as &str,
            json!({}),
        ),
    ] {
        let r = b.post(path, &stolen, body).await;
        r.refused(403, "scope_missing");
        assert!(
            r.message().ends_with("not `factors`"),
            "{path}: {}",
            r.message()
        );
    }
    let audit = b.audit().await;
    assert_eq!(
        audit.len(),
        size + 4,
        "only the four refusals were recorded"
    );
    assert!(audit[size..].iter().all(|e| e["type"] == "auth.denied"));
    // alice's own session still works, with her own password and authenticator.
    b.get("/v1/whoami", &alice).await.ok();
    let other_token = other["token"].as_str().unwrap();
    b.get("/v1/whoami", other_token).await.ok();
    // A service token can never be given the scope.
    b.step_up_admin().await;
    let admin = b.admin.clone();
    b.post(
        "/v1/users",
        &admin,
        json!({ "name": "bot", "kind": "service", "groups": ["sre"] }),
    )
    .await
    .ok();
    let r = b
        .post(
            "/v1/tokens",
            &admin,
            json!({ "user": "bot", "scopes": ["read", "factors"] }),
        )
        .await;
    r.refused(422, "invalid");
    assert!(
        r.message().contains("cannot have scope `factors`"),
        "{}",
        r.message()
    );
}

pub(crate) async fn replacing_an_authenticator_needs_a_fresh_step_up_with_it(b: Broker) {
    let alice = b.user("alice", &["sre"]).await;
    b.advance("10m");
    let r = b.post("/v1/totp/enroll", &alice, json!({})).await;
    r.refused(401, "step_up_required");
    // With a fresh step-up (proving the authenticator she has) she may replace it.
    b.step_up(&alice, "alice").await;
    b.enroll(&alice, "alice").await;
    let enrolled = b.events("user.totp_enrolled").await;
    assert_eq!(
        enrolled
            .iter()
            .filter(|e| e["principal"] == "alice")
            .count(),
        2
    );
    // The new authenticator is the one that works now.
    b.advance("1m");
    b.step_up(&alice, "alice").await;
}

pub(crate) async fn a_wrong_current_password_is_a_failed_sign_in(b: Broker) {
    let (alice, password) = b.person("alice", &["sre"]).await;
    let change =
        |current: &str| json!({ "current": current, "new": "a-fresh-passphrase-of-my-own" });
    for i in 0..6 {
        let r = b
            .post("/v1/password", &alice, change("not-my-password"))
            .await;
        r.refused(401, "sign_in_failed");
        assert_eq!(b.events("auth.failed").await.len(), i + 1);
    }
    // The sixth failure locked the account: even the right password waits.
    assert_eq!(b.events("auth.locked").await.len(), 1);
    b.post("/v1/password", &alice, change(&password))
        .await
        .refused(429, "locked");
    b.advance("2s");
    b.step_up(&alice, "alice").await;
    b.post("/v1/password", &alice, change(&password)).await.ok();
    let failed = b.events("auth.failed").await;
    assert!(
        failed.iter().all(|e| e["principal"] == "alice"
            && e["reason"] == "password change: wrong current password")
    );
}

pub(crate) async fn a_reset_ends_every_token_of_the_person(b: Broker) {
    let alice = b.user("alice", &["sre"]).await;
    let api = b.own_token(&alice, "alice", "30d", None).await;
    b.get("/v1/whoami", &api).await.ok();
    b.step_up_admin().await;
    let admin = b.admin.clone();
    b.post("/v1/users/alice/password-reset", &admin, json!({}))
        .await
        .ok();
    for t in [&alice, &api] {
        let r = b.get("/v1/whoami", t).await;
        r.refused(401, "unauthenticated");
        assert!(r.message().contains("was revoked"), "{}", r.message());
    }
    // The same for an authenticator reset: a new session and a new API token both end.
    let session = b.user("carol", &["sre"]).await;
    let api = b.own_token(&session, "carol", "30d", None).await;
    b.step_up_admin().await;
    b.post("/v1/users/carol/totp-reset", &admin, json!({}))
        .await
        .ok();
    for t in [&session, &api] {
        b.get("/v1/whoami", t).await.refused(401, "unauthenticated");
    }
}

pub(crate) async fn disabling_a_person_revokes_their_grants_at_the_target(b: Broker) {
    let alice = b.user("alice", &["sre"]).await;
    let bob = b.user("bob", &["sre-leads"]).await;
    let active = b.active(&alice, &bob, "30m").await;
    let waiting = b.request(&alice, "30m").await;
    let jwt = b
        .post(
            &format!("/v1/grants/{active}/credential"),
            &alice,
            json!({}),
        )
        .await
        .ok()["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(introspect(&b, &bob, &jwt).await["active"], true);
    b.step_up_admin().await;
    let admin = b.admin.clone();
    let d = b
        .post("/v1/users/alice/disable", &admin, json!({}))
        .await
        .ok();
    assert_eq!(d["grants_ended"], 2, "{d}");
    let g = b.grant(&active).await;
    assert_eq!(g["state"], "revoked", "{g}");
    assert_eq!(g["revoked_by"], "admin");
    assert_eq!(g["revoke_reason"], "user `alice` was disabled");
    assert_eq!(introspect(&b, &bob, &jwt).await["active"], false);
    assert_eq!(b.grant(&waiting).await["state"], "cancelled");
    let revoking = b.events("grant.revoking").await;
    assert!(
        revoking
            .iter()
            .any(|e| e["grant"] == active.as_str() && e["cause"] == "principal_disabled"),
        "{revoking:?}"
    );
    // A broker that died between recording a disable and ending the grants: the reconciler
    // ends them on its next pass.
    let carol = b.user("carol", &["sre"]).await;
    let hers = b.active(&carol, &bob, "30m").await;
    let now = breakglass_core::Clock::now(&b.clock);
    b.app
        .store
        .set_disabled("carol", true, &[], now)
        .await
        .unwrap();
    assert_eq!(b.grant(&hers).await["state"], "active");
    b.reconcile().await;
    let g = b.grant(&hers).await;
    assert_eq!(g["state"], "revoked", "{g}");
    assert_eq!(g["revoked_by"], "system:reconciler");
}

pub(crate) async fn the_owner_may_revoke_the_roles_grants(b: Broker) {
    let alice = b.user("alice", &["sre"]).await;
    let bob = b.user("bob", &["sre-leads"]).await;
    let owner = b.user("olga", &["dba"]).await;
    let stranger = b.user("mallory", &["sre"]).await;
    let id = b.active(&alice, &bob, "30m").await;
    let r = b
        .post(
            &format!("/v1/grants/{id}/revoke"),
            &stranger,
            json!({ "reason": "x" }),
        )
        .await;
    r.refused(403, "policy_denied");
    let g = b
        .post(
            &format!("/v1/grants/{id}/revoke"),
            &owner,
            json!({ "reason": "not needed any more" }),
        )
        .await
        .ok();
    assert_eq!(g["state"], "revoked");
    assert_eq!(g["revoked_by"], "olga");
}

pub(crate) async fn deny_and_cancelling_anothers_request_need_a_step_up(b: Broker) {
    let alice = b.user("alice", &["sre"]).await;
    let bob = b.user("bob", &["sre-leads"]).await;
    let denied = b.request(&alice, "10m").await;
    let cancelled = b.request(&alice, "10m").await;
    let own = b.request(&alice, "10m").await;
    b.advance("6m");
    let admin = b.admin.clone();
    b.post(
        &format!("/v1/grants/{denied}/deny"),
        &bob,
        json!({ "reason": "not now" }),
    )
    .await
    .refused(401, "step_up_required");
    b.post(&format!("/v1/grants/{cancelled}/cancel"), &admin, json!({}))
        .await
        .refused(401, "step_up_required");
    // Cancelling one's own request needs none.
    b.post(&format!("/v1/grants/{own}/cancel"), &alice, json!({}))
        .await
        .ok();
    assert_eq!(b.grant(&denied).await["state"], "requested");
    assert_eq!(b.grant(&cancelled).await["state"], "requested");
    b.step_up(&bob, "bob").await;
    b.post(
        &format!("/v1/grants/{denied}/deny"),
        &bob,
        json!({ "reason": "not now" }),
    )
    .await
    .ok();
    b.step_up(&admin, "admin").await;
    let g = b
        .post(&format!("/v1/grants/{cancelled}/cancel"), &admin, json!({}))
        .await
        .ok();
    assert_eq!(g["cancelled_by"], "admin");
}

pub(crate) async fn a_token_typed_into_the_wrong_field_never_reaches_the_log(b: Broker) {
    let alice = b.user("alice", &["sre"]).await;
    let token = b.own_token(&alice, "alice", "1d", None).await;
    let secret = token.splitn(3, '_').nth(2).unwrap().to_owned();
    b.get(&format!("/v1/grants/{token}"), &alice)
        .await
        .refused(422, "invalid_grant_id");
    b.post(
        "/v1/grants",
        &alice,
        json!({ "role": token, "reason": "x" }),
    )
    .await
    .refused(404, "unknown_role");
    b.get(&format!("/v1/roles/{token}"), &alice)
        .await
        .refused(404, "unknown_role");
    b.step_up_admin().await;
    let admin = b.admin.clone();
    b.post(&format!("/v1/users/{token}/disable"), &admin, json!({}))
        .await
        .refused(404, "unknown_user");
    b.call(
        "POST",
        "/v1/login",
        None,
        json!({ "user": token, "password": "x" }),
    )
    .await
    .refused(401, "sign_in_failed");
    let audit = audit_text(&b).await;
    assert!(!audit.contains(&secret), "the secret reached the audit log");
    assert!(audit.contains("_[redacted]"), "{audit}");
}

pub(crate) async fn bodies_must_be_json_objects(b: Broker) {
    let alice = b.user("alice", &["sre"]).await;
    let bob = b.user("bob", &["sre-leads"]).await;
    let id = b.request(&alice, "10m").await;
    let size = b.audit().await.len();
    for (path, token, body) in [
        (format!("/v1/grants/{id}/approve"), &bob, "[]"),
        (
            "/v1/grants".to_owned(),
            &alice,
            r#"["db", "reason", null, "10m", false]"#,
        ),
        (format!("/v1/grants/{id}/approve"), &bob, r#""go""#),
        (format!("/v1/grants/{id}/cancel"), &alice, "42"),
    ] {
        let r: Answer = b
            .raw(
                "POST",
                &path,
                Some(token),
                "application/json",
                body.as_bytes().to_vec(),
            )
            .await;
        r.refused(400, "bad_request");
        assert!(
            r.message().contains("must be a JSON object"),
            "{}",
            r.message()
        );
    }
    assert_eq!(b.grant(&id).await["state"], "requested");
    let audit = b.audit().await;
    assert!(audit[size..].iter().all(|e| e["type"] == "auth.denied"));
    assert_eq!(
        b.get("/v1/grants", &alice)
            .await
            .ok()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

pub(crate) async fn out_of_range_numbers_are_a_400(b: Broker) {
    b.step_up_admin().await;
    let admin = b.admin.clone();
    for path in [
        "/v1/audit/export?from=9223372036854775808",
        "/v1/audit/export?from=99999999999999999999999",
        "/v1/audit/prove/9223372036854775808",
        "/v1/audit/consistency?from=0&to=18446744073709551615",
        "/v1/audit/tail?n=-1",
    ] {
        let r = b.get(path, &admin).await;
        r.refused(400, "bad_request");
    }
    // The largest position the log could hold is still a valid question, with an empty answer.
    let r = b
        .raw(
            "GET",
            "/v1/audit/export?from=9223372036854775807",
            Some(&admin),
            "application/json",
            vec![],
        )
        .await;
    assert_eq!(r.status.as_u16(), 200);
}

pub(crate) async fn free_text_refuses_what_reads_differently(b: Broker) {
    let alice = b.user("alice", &["sre"]).await;
    let bob = b.user("bob", &["sre-leads"]).await;
    for reason in [
        "pay invoice \u{202E}gnp.exe",
        "zero\u{200B}width",
        "isolate\u{2067}text",
        "bell\u{7}",
    ] {
        let r = b
            .post(
                "/v1/grants",
                &alice,
                json!({ "role": "db", "reason": reason }),
            )
            .await;
        r.refused(422, "invalid_field");
        assert!(
            r.message().starts_with("invalid `reason`: it contains"),
            "{}",
            r.message()
        );
    }
    let id = b.request(&alice, "10m").await;
    b.post(
        &format!("/v1/grants/{id}/approve"),
        &bob,
        json!({ "comment": "ok\u{202E}" }),
    )
    .await
    .refused(422, "invalid_field");
    b.post(
        &format!("/v1/grants/{id}/deny"),
        &bob,
        json!({ "reason": "\u{2066}no" }),
    )
    .await
    .refused(422, "invalid_field");
    assert_eq!(b.grant(&id).await["state"], "requested");
    // Ordinary text in any script is fine.
    b.post(
        "/v1/grants",
        &alice,
        json!({ "role": "db", "reason": "Datenbank — ключ утёк, 数据库\tok\nline" }),
    )
    .await
    .ok();
}

/// `system.` names are the broker's own (the drill reviewer `system.drills`): no principal may
/// take one, and nothing is written.
pub(crate) async fn a_name_kept_for_the_broker_is_refused_for_a_user(b: Broker) {
    b.step_up_admin().await;
    let admin = b.admin.clone();
    let size = b.audit().await.len();
    for kind in ["human", "service"] {
        let r = b
            .post(
                "/v1/users",
                &admin,
                json!({ "name": "system.drills", "kind": kind, "groups": ["sre"] }),
            )
            .await;
        r.refused(409, "reserved_name");
        assert!(r.message().contains("system.drills"), "{}", r.message());
    }
    let users = b.get("/v1/users", &admin).await.ok();
    assert!(!users.to_string().contains("system.drills"), "{users}");
    assert!(
        b.audit()
            .await
            .iter()
            .skip(size)
            .all(|e| e["type"] != "principal.created"),
    );
}
