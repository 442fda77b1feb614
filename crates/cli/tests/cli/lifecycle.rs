//! The rest of a grant's life: extensions, cancel, deny, time-out, and crash recovery of every
//! kind of open intent (invariant 3).

use breakglass_core::{Actor, Role, StateKind};
use breakglass_store::{SqliteStore, Store};

use super::*;

#[test]
fn extension_needs_approval_stays_within_max_and_reissues_the_credential() {
    let w = world();
    let id = active_grant(&w, "40m");
    let first = w.bg.cli_json(&w.alice, &["credential", &id])["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    let end0 = w.bg.cli_json(&w.alice, &["grants", "show", &id])["expires_at"]
        .as_str()
        .unwrap()
        .to_owned();

    let r = w.bg.cli(
        &w.alice,
        &[
            "extend",
            &id,
            "--duration",
            "30m",
            "--reason",
            "still broken",
        ],
    );
    assert_eq!(r.code, 6, "40m + 30m exceeds the 1h max: {r:?}");
    assert!(
        r.stderr
            .contains("would make it `70m` in total, over the role's `1h`"),
        "{}",
        r.stderr
    );

    let g = w.bg.cli_json(
        &w.alice,
        &[
            "extend",
            &id,
            "--duration",
            "20m",
            "--reason",
            "still broken",
        ],
    );
    assert_eq!(g["pending_extension"]["duration"], "20m");
    assert_eq!(
        g["expires_at"],
        end0.as_str(),
        "nothing changes until approved"
    );
    let r = w.bg.cli(&w.alice, &["approve", &id]);
    assert_eq!(
        r.code, 4,
        "the holder cannot approve their own extension: {r:?}"
    );

    let g = w.bg.cli_json(&w.carol, &["approve", &id]);
    assert_ne!(g["expires_at"], end0.as_str());
    assert_eq!(g["extensions"].as_array().unwrap().len(), 1);
    assert_eq!(g["total_duration"], "1h");

    let second = w.bg.cli_json(&w.alice, &["credential", &id])["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(first, second, "a fresh credential carries the new end");
    let c1 = verify_jwt(&w.bg, &first, "prod-db").unwrap();
    let c2 = verify_jwt(&w.bg, &second, "prod-db").unwrap();
    assert_eq!(
        c2["exp"].as_i64().unwrap() - c1["exp"].as_i64().unwrap(),
        20 * 60
    );

    let r = w.bg.cli(
        &w.alice,
        &["extend", &id, "--duration", "1m", "--reason", "more"],
    );
    assert_eq!(r.code, 6);
    assert!(
        r.stderr.contains("has used all 1 extensions"),
        "{}",
        r.stderr
    );
    let types = audit_types(&w, &id);
    assert!(
        types.contains(&"grant.extension_requested".to_owned())
            && types.contains(&"grant.extended".to_owned()),
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| *t == "credential.issued").count(),
        2
    );
}

#[test]
fn cancel_deny_and_time_out() {
    let w = world();
    let id = request(&w, "10m");
    let r = w.bg.cli(&w.bob, &["cancel", &id]);
    assert_eq!(r.code, 4, "only the requester cancels: {r:?}");
    assert_eq!(
        w.bg.cli_json(&w.alice, &["cancel", &id])["state"],
        "cancelled"
    );

    let id = request(&w, "10m");
    let g = w.bg.cli_json(
        &w.bob,
        &["deny", &id, "--reason", "use the runbook instead"],
    );
    assert_eq!(g["state"], "denied");
    assert_eq!(g["deny_reason"], "use the runbook instead");
    assert_eq!(
        g["reason"], "primary is down",
        "the requester's reason is kept"
    );
    let r = w.bg.cli(&w.carol, &["approve", &id]);
    assert_eq!(r.code, 6);
    assert!(
        r.stderr.contains("has already ended (`denied`)"),
        "{}",
        r.stderr
    );

    // payments-readonly has request_ttl = 3s and needs two approvals
    let pay = w.bg.cli_json(
        &w.alice,
        &["request", "payments-readonly", "--reason", "refunds"],
    );
    let pay = pay["id"].as_str().unwrap().to_owned();
    w.bg.cli_json(&w.bob, &["approve", &pay]);
    assert!(
        poll_until(DEADLINE, || state(&w, &pay) == "timed_out"),
        "request never timed out"
    );
    assert_eq!(audit_types(&w, &pay).last().unwrap(), "grant.timed_out");
    let r = w.bg.cli(&w.carol, &["approve", &pay]);
    assert_eq!(r.code, 6, "a timed-out request cannot be approved: {r:?}");
}

fn with_store<T>(w: &World, f: impl AsyncFnOnce(&SqliteStore) -> T) -> T {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&w.bg.data_dir().join("breakglass.db"))
            .await
            .unwrap();
        let out = f(&store).await;
        store.close().await;
        out
    })
}

/// A broker that died right after approving (before activation) or right after recording the
/// activation intent (before or while calling the provider) finishes the activation on restart.
#[test]
fn open_activation_intents_are_finished_after_a_crash() {
    let mut w = world();
    let approved_only = request(&w, "10m");
    let activating = request(&w, "10m");
    w.bg.kill9();
    let role = Role::parse("prod-db-admin.toml", DB_ROLE).unwrap();
    with_store(&w, async |store: &SqliteStore| {
        let bob = store.principal("bob").await.unwrap().unwrap();
        for (id, intent) in [(&approved_only, false), (&activating, true)] {
            let sg = store.grant(id.parse().unwrap()).await.unwrap().unwrap();
            let now = sg.grant.requested_at;
            let tr = sg.grant.approve(&role, &bob, None, now).unwrap();
            store
                .update_grant(&tr.grant, sg.version, None, &tr.events, now)
                .await
                .unwrap();
            if intent {
                // The token provider's handle for this window, as the broker would record it.
                let (_, ends) = tr.grant.activation_window(now);
                let handle = format!("{}/{}", tr.grant.id, ends.unix_seconds());
                let tr2 = tr
                    .grant
                    .begin_activation(Actor::User(bob.name.clone()), handle, now)
                    .unwrap();
                store
                    .update_grant(&tr2.grant, sg.version + 1, None, &tr2.events, now)
                    .await
                    .unwrap();
            }
        }
    });
    assert_eq!(
        with_store(&w, async |s: &SqliteStore| s
            .grants_in_states(&[StateKind::Approved, StateKind::Activating])
            .await
            .unwrap()
            .len()),
        2
    );
    w.bg.restart();
    for id in [&approved_only, &activating] {
        assert!(
            poll_until(DEADLINE, || state(&w, id) == "active"),
            "{id} not activated after restart"
        );
        let c = w.bg.cli_json(&w.alice, &["credential", id]);
        assert!(verify_jwt(&w.bg, c["credential"].as_str().unwrap(), "prod-db").is_ok());
    }
    let audit =
        w.bg.cli_json(&w.bg.admin_token, &["audit", "tail", "-n", "1000"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "grant.activated"
                && e["actor"] == "system:reconciler"
                && e["grant"] == activating.as_str()),
        "the reconciler finished the intent"
    );
}

/// A broker that died after recording `revoking` but before the provider confirmed finishes the
/// revoke on restart.
#[test]
fn open_revoke_intents_are_finished_after_a_crash() {
    let mut w = world();
    let id = active_grant(&w, "30m");
    w.bg.kill9();
    with_store(&w, async |store: &SqliteStore| {
        let alice = store.principal("alice").await.unwrap().unwrap();
        let sg = store.grant(id.parse().unwrap()).await.unwrap().unwrap();
        let now = sg.grant.updated_at;
        let tr = sg
            .grant
            .begin_revoke(None, &alice, "leaked in chat", now)
            .unwrap();
        store
            .update_grant(&tr.grant, sg.version, None, &tr.events, now)
            .await
            .unwrap();
    });
    w.bg.restart();
    assert!(
        poll_until(DEADLINE, || state(&w, &id) == "revoked"),
        "revoke not finished after restart"
    );
    let g = w.bg.cli_json(&w.alice, &["grants", "show", &id]);
    assert_eq!(g["revoke_reason"], "leaked in chat");
    let r = w.bg.cli(&w.alice, &["credential", &id]);
    assert_eq!(r.code, 6, "no credential after the grant ended: {r:?}");
}

/// A broker that died after committing an approved extension but before issuing the credential
/// with the new end issues it on restart.
#[test]
fn an_extension_approved_just_before_a_crash_still_gets_its_credential() {
    let mut w = world();
    let id = active_grant(&w, "20m");
    let first = w.bg.cli_json(&w.alice, &["credential", &id])["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    w.bg.kill9();
    let role = Role::parse("prod-db-admin.toml", DB_ROLE).unwrap();
    with_store(&w, async |store: &SqliteStore| {
        let alice = store.principal("alice").await.unwrap().unwrap();
        let carol = store.principal("carol").await.unwrap().unwrap();
        let sg = store.grant(id.parse().unwrap()).await.unwrap().unwrap();
        let now = sg.grant.updated_at;
        let ext = sg
            .grant
            .request_extension(&role, &alice, "10m".parse().unwrap(), "more", now)
            .unwrap();
        let ok = ext.grant.approve(&role, &carol, None, now).unwrap();
        assert!(ok.grant.credential_due());
        let events: Vec<_> = ext.events.into_iter().chain(ok.events).collect();
        store
            .update_grant(&ok.grant, sg.version, None, &events, now)
            .await
            .unwrap();
    });
    w.bg.restart();
    let mut second = String::new();
    assert!(
        poll_until(DEADLINE, || {
            let r = w.bg.cli(&w.alice, &["credential", &id, "--output", "json"]);
            if r.code == 0 {
                second = r.json()["credential"].as_str().unwrap().to_owned();
            }
            r.code == 0
        }),
        "the owed credential was never issued"
    );
    let c1 = verify_jwt(&w.bg, &first, "prod-db").unwrap();
    let c2 = verify_jwt(&w.bg, &second, "prod-db").unwrap();
    assert_eq!(
        c2["exp"].as_i64().unwrap() - c1["exp"].as_i64().unwrap(),
        10 * 60
    );
}

/// A request approved after its role changed must not hand out what the role no longer allows.
#[test]
fn approval_rechecks_the_requester_and_the_role() {
    let w = world();
    let id = request(&w, "10m");
    // the role now grants less than what was requested
    w.bg.write_role(
        "prod-db-admin.toml",
        &DB_ROLE.replace("scope = [\"db:admin\"]", "scope = [\"db:read\"]"),
    );
    w.bg.signal("HUP");
    assert!(poll_until(DEADLINE, || w
        .bg
        .cli_json(&w.alice, &["roles", "show", "prod-db-admin"])["target"]
        ["scope"][0]
        == "db:read"));
    let r = w.bg.cli(&w.bob, &["approve", &id]);
    assert_eq!(r.code, 6, "{r:?}");
    assert!(
        r.stderr
            .contains("grants something different now than when grant"),
        "{}",
        r.stderr
    );

    // alice is no longer among the requesters
    let id = request_with(&w, &w.bg.user("carl", &["sre"]));
    w.bg.write_role(
        "prod-db-admin.toml",
        &DB_ROLE.replace(
            "requesters = [\"group:sre\"]",
            "requesters = [\"user:nobody-else\"]",
        ),
    );
    w.bg.signal("HUP");
    assert!(poll_until(DEADLINE, || w
        .bg
        .cli_json(&w.alice, &["roles", "show", "prod-db-admin"])["requesters"]
        [0]
        == "user:nobody-else"));
    let r = w.bg.cli(&w.bob, &["approve", &id]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stderr
            .contains("`carl` may no longer request role `prod-db-admin`"),
        "{}",
        r.stderr
    );
    assert_eq!(state(&w, &id), "requested", "nothing moved");
}

fn request_with(w: &World, token: &str) -> String {
    let g = w.bg.cli_json(
        token,
        &[
            "request",
            "prod-db-admin",
            "--reason",
            "db down",
            "--incident",
            "INC-9",
        ],
    );
    g["id"].as_str().unwrap().to_owned()
}
