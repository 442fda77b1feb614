//! The store suite: every test in `store_suite!` runs against each backend (SQLite, and
//! PostgreSQL on the server `scripts/test-postgres` starts) through the `Store` trait; the rest
//! exercise what only one backend has.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test fails loudly on anything unexpected"
)]

use std::collections::BTreeSet;

use breakglass_core::grant::RequestInput;
use breakglass_core::{
    Actor, EventDraft, EventKind, Grant, GrantId, Principal, PrincipalKind, Role, StateKind,
    Timestamp,
};
use breakglass_store::{ApiToken, NewCredential, SqliteStore, Store, StoreError};

use alerts::{
    a_delivered_alert_is_done, a_failed_alert_is_retried_when_due,
    a_router_that_cannot_route_an_event_yet_stops_before_it,
    alerts_are_routed_once_from_the_cursor, alerts_go_to_every_channel_named_or_none,
    an_alert_given_up_is_dead_and_recorded_once, claims_respect_due_times_and_leases,
    claims_skip_the_channels_asked, the_backlog_counts_each_channel,
    the_next_delivery_due_is_the_earliest_claimable,
};
use attestations::{
    a_content_is_in_force_from_when_it_first_loaded, a_notice_is_sent_once,
    the_latest_attestation_of_each_content_counts,
};
use auth::{
    disabling_ends_every_token_once, factors_change_by_compare_and_set,
    failures_lock_with_backoff_and_are_audited,
    refusals_while_locked_are_one_event_per_window_and_counters_are_pruned,
    sessions_keep_kind_scopes_and_step_up,
};
use drills::{
    a_drill_reads_its_alerts_deliveries_once_routed,
    a_drill_starts_with_its_grant_and_moves_on_over_its_version, an_overdue_date_is_recorded_once,
};
use lockdown::{
    a_batch_of_grant_updates_skips_only_the_stale,
    lockdowns_are_in_force_until_lifted_once_per_scope,
};
use reviews::{
    each_review_reminder_is_sent_once, reviews_are_recorded_once_over_the_grant_version,
};

// Kept under `store/` so that Cargo does not build them as test binaries of their own.
#[path = "store/alerts.rs"]
mod alerts;
#[path = "store/attestations.rs"]
mod attestations;
#[path = "store/auth.rs"]
mod auth;
#[path = "store/corrupt.rs"]
mod corrupt;
#[path = "store/drills.rs"]
mod drills;
#[path = "store/lockdown.rs"]
mod lockdown;
#[path = "store/pgdb.rs"]
mod pgdb;
#[path = "store/replicas.rs"]
mod replicas;
#[path = "store/reviews.rs"]
mod reviews;

const ROLE: &str = r#"
id = "db"
title = "t"
owner = "group:o"
requesters = ["group:sre"]
default_duration = "30m"
max_duration = "1h"
[approval]
quorum = 1
approvers = ["group:leads"]
[target]
kind = "token"
audience = "db"
scope = ["x"]
"#;

fn t(s: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_800_000_000_000 + s * 1000)
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

fn token(id: &str, who: &str) -> ApiToken {
    ApiToken {
        id: id.into(),
        principal: who.into(),
        secret_hash: [1; 32],
        created_at: t(0),
        expires_at: t(1000),
        revoked_at: None,
        kind: breakglass_store::TokenKind::Api,
        scopes: None,
        stepped_up_at: None,
    }
}

fn note(kind: EventKind) -> EventDraft {
    EventDraft::new(Actor::System("test"), None, kind)
}

fn created(name: &str) -> EventDraft {
    note(EventKind::PrincipalCreated {
        name: name.into(),
        kind: "human".into(),
        groups: vec![],
    })
}

async fn initialized(store: &dyn Store) {
    store
        .initialize(
            &user("admin", &["admins"]),
            &token("t0", "admin"),
            &[("jwt", vec![1, 2, 3])],
            &[created("admin")],
            t(0),
        )
        .await
        .unwrap();
    store
        .create_principal(&user("alice", &["sre"]), &[created("alice")], t(1))
        .await
        .unwrap();
    store
        .create_principal(&user("bob", &["leads"]), &[created("bob")], t(1))
        .await
        .unwrap();
}

fn request(id: u8) -> Grant {
    let role = Role::parse("db.toml", ROLE).unwrap();
    Grant::request(
        GrantId::from_bytes([id; 16]),
        &role,
        &user("alice", &["sre"]),
        RequestInput {
            reason: "r".into(),
            incident: None,
            duration: None,
        },
        t(2),
    )
    .unwrap()
    .grant
}

/// Drives a fresh grant to `active` with a sealed credential, returning its version.
async fn activate(store: &dyn Store, id: u8) -> (Grant, i64) {
    activate_for(store, id, None).await
}

/// [`activate`] for `duration` (the role's default if `None`).
async fn activate_for(
    store: &dyn Store,
    id: u8,
    duration: Option<breakglass_core::Duration>,
) -> (Grant, i64) {
    let role = Role::parse("db.toml", ROLE).unwrap();
    let mut g = request(id);
    if let Some(d) = duration {
        g.duration = d;
    }
    store.insert_grant(&g, &[], t(2)).await.unwrap();
    let tr = g
        .approve(&role, &user("bob", &["leads"]), None, t(3))
        .unwrap();
    store
        .update_grant(&tr.grant, 1, None, &tr.events, t(3))
        .await
        .unwrap();
    let tr = tr
        .grant
        .begin_activation(Actor::System("test"), "h".into(), t(4))
        .unwrap();
    store
        .update_grant(&tr.grant, 2, None, &tr.events, t(4))
        .await
        .unwrap();
    let tr = tr
        .grant
        .activated(Actor::System("test"), "h", "fp1", t(5))
        .unwrap();
    let cred = NewCredential {
        fingerprint: "fp1".into(),
        ciphertext: vec![9; 40],
    };
    store
        .update_grant(&tr.grant, 3, Some(&cred), &tr.events, t(5))
        .await
        .unwrap();
    (tr.grant, 4)
}

async fn audit_seq_is_gapless_from_zero(store: &dyn Store) {
    initialized(store).await;
    activate(store, 1).await;
    let events = store.audit_tail(1000).await.unwrap();
    assert!(!events.is_empty());
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64);
        let v = e.to_json().unwrap();
        assert_eq!(v["seq"], i as u64, "the seq is inside the hashed bytes too");
        assert_eq!(v["v"], 1);
    }
    assert_eq!(store.audit_size().await.unwrap(), events.len() as u64);
    let tail = store.audit_tail(2).await.unwrap();
    assert_eq!(tail.len(), 2);
    assert!(tail[0].seq < tail[1].seq, "oldest first");
}

async fn initialize_runs_once(store: &dyn Store) {
    assert!(!store.initialized().await.unwrap());
    initialized(store).await;
    assert!(store.initialized().await.unwrap());
    let again = store
        .initialize(&user("admin2", &[]), &token("t9", "admin2"), &[], &[], t(9))
        .await
        .unwrap_err();
    assert!(matches!(again, StoreError::AlreadyInitialized));
    assert!(
        store.principal("admin2").await.unwrap().is_none(),
        "nothing of the second init stayed"
    );
    assert_eq!(store.secret("jwt").await.unwrap(), Some(vec![1, 2, 3]));
}

async fn duplicate_principal_is_refused_and_audits_nothing(store: &dyn Store) {
    initialized(store).await;
    let before = store.audit_size().await.unwrap();
    let err = store
        .create_principal(&user("alice", &[]), &[created("alice")], t(3))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "user `alice` already exists");
    assert_eq!(store.audit_size().await.unwrap(), before);
}

async fn stale_versions_conflict(store: &dyn Store) {
    initialized(store).await;
    let role = Role::parse("db.toml", ROLE).unwrap();
    let g = request(2);
    store.insert_grant(&g, &[], t(2)).await.unwrap();
    let a = g.cancel(&user("alice", &["sre"]), t(3)).unwrap();
    let b = g
        .approve(&role, &user("bob", &["leads"]), None, t(3))
        .unwrap();
    store
        .update_grant(&a.grant, 1, None, &a.events, t(3))
        .await
        .unwrap();
    let before = store.audit_size().await.unwrap();
    let err = store
        .update_grant(&b.grant, 1, None, &b.events, t(3))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict));
    assert_eq!(
        store.audit_size().await.unwrap(),
        before,
        "the losing write left no event"
    );
    let now = store.grant(g.id).await.unwrap().unwrap();
    assert_eq!(now.grant.state.name(), "cancelled");
    assert_eq!(now.version, 2);
}

/// `update_grant` hands back the grant as stored, at its new version: what a read returns, and
/// what the next update names.
async fn an_update_returns_the_grant_as_stored(store: &dyn Store) {
    initialized(store).await;
    let role = Role::parse("db.toml", ROLE).unwrap();
    let g = request(15);
    store.insert_grant(&g, &[], t(2)).await.unwrap();
    let tr = g
        .approve(&role, &user("bob", &["leads"]), None, t(3))
        .unwrap();
    let approved = store
        .update_grant(&tr.grant, 1, None, &tr.events, t(3))
        .await
        .unwrap();
    assert_eq!((&approved.grant, approved.version), (&tr.grant, 2));
    assert_eq!(store.grant(g.id).await.unwrap().as_ref(), Some(&approved));
    let tr = approved
        .grant
        .begin_activation(Actor::System("test"), "h".into(), t(4))
        .unwrap();
    let activating = store
        .update_grant(&tr.grant, approved.version, None, &tr.events, t(4))
        .await
        .unwrap();
    assert_eq!(activating.version, 3);
    assert_eq!(store.grant(g.id).await.unwrap(), Some(activating));
}

async fn credential_is_delivered_once(store: &dyn Store) {
    initialized(store).await;
    let (g, _) = activate(store, 3).await;
    let c = store
        .deliver_credential(g.id, &user("alice", &["sre"]), t(6))
        .await
        .unwrap();
    assert_eq!(c.ciphertext, vec![9; 40]);
    let err = store
        .deliver_credential(g.id, &user("alice", &["sre"]), t(7))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("the credential for grant `{}` was already delivered", g.id)
    );
    let last = store
        .audit_tail(1)
        .await
        .unwrap()
        .pop()
        .unwrap()
        .to_json()
        .unwrap();
    assert_eq!(last["type"], "credential.delivered");
    assert_eq!(last["fingerprint"], "fp1");
}

async fn ending_a_grant_erases_an_uncollected_credential(store: &dyn Store) {
    initialized(store).await;
    let (g, v) = activate(store, 4).await;
    let tr = g.begin_expiry(t(10_000)).unwrap();
    store
        .update_grant(&tr.grant, v, None, &tr.events, t(10_000))
        .await
        .unwrap();
    let err = store
        .deliver_credential(g.id, &user("alice", &["sre"]), t(10_001))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is `revoking`"), "{err}");
    assert_eq!(store.due_for_expiry(t(10_000)).await.unwrap().len(), 0);
    assert_eq!(
        store
            .grants_in_states(&[StateKind::Revoking])
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn due_for_expiry_finds_only_ended_windows(store: &dyn Store) {
    initialized(store).await;
    let (g, _) = activate(store, 5).await;
    let end = g.expires_at().unwrap();
    assert!(
        store
            .due_for_expiry(Timestamp::from_unix_millis(end.unix_millis() - 1))
            .await
            .unwrap()
            .is_empty()
    );
    let due = store.due_for_expiry(end).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].grant.id, g.id);
    assert_eq!(
        store
            .grants(Some(StateKind::Active), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.grants(None, 10).await.unwrap().len(), 1);
    assert_eq!(
        store
            .grants(Some(StateKind::Denied), 10)
            .await
            .unwrap()
            .len(),
        0
    );
}

async fn the_next_expiry_is_the_earliest_active_end(store: &dyn Store) {
    initialized(store).await;
    assert_eq!(store.next_expiry().await.unwrap(), None, "no grant");
    store.insert_grant(&request(20), &[], t(2)).await.unwrap();
    assert_eq!(
        store.next_expiry().await.unwrap(),
        None,
        "a request has no end"
    );
    let (long, _) = activate(store, 21).await; // the role's 30m
    let (short, v) = activate_for(store, 22, Some("10m".parse().unwrap())).await;
    let (long_end, short_end) = (long.expires_at().unwrap(), short.expires_at().unwrap());
    assert!(short_end < long_end);
    assert_eq!(store.next_expiry().await.unwrap(), Some(short_end));
    // An end in the past still counts while the grant is active: the reaper has it to do now.
    assert_eq!(store.due_for_expiry(long_end).await.unwrap().len(), 2);
    assert_eq!(store.next_expiry().await.unwrap(), Some(short_end));
    // Once it is ending (revoking), the next is the other's.
    let tr = short.begin_expiry(short_end).unwrap();
    store
        .update_grant(&tr.grant, v, None, &tr.events, short_end)
        .await
        .unwrap();
    assert_eq!(store.next_expiry().await.unwrap(), Some(long_end));
}

async fn the_oldest_request_of_each_role_is_found(store: &dyn Store) {
    initialized(store).await;
    assert!(store.oldest_requests().await.unwrap().is_empty());
    let mut a = request(30);
    a.requested_at = t(7);
    let mut b = request(31);
    b.requested_at = t(3);
    let mut other = request(32);
    other.role = "web".parse().unwrap();
    other.requested_at = t(9);
    for g in [&a, &b, &other] {
        store.insert_grant(g, &[], g.requested_at).await.unwrap();
    }
    activate(store, 33).await; // requested at t(2), approved at t(3): not pending any more
    assert_eq!(
        store.oldest_requests().await.unwrap(),
        [("db".to_owned(), t(3)), ("web".to_owned(), t(9))],
        "by role, the oldest still pending"
    );
}

async fn appending_writes_wake_the_log_watchers(store: &dyn Store) {
    let mut watch = store.watch_appends();
    assert!(!watch.has_changed().unwrap());
    initialized(store).await;
    assert!(watch.has_changed().unwrap(), "writes with events");
    watch.borrow_and_update();
    // What appends nothing leaves the watchers asleep: a routing pass, a claim, a delivery done,
    // a checkpoint saved.
    store
        .route_alerts(
            10,
            &|_: &breakglass_core::AuditEvent| Some(vec!["ops".to_owned()]),
            t(3),
        )
        .await
        .unwrap();
    let claimed = store.claim_deliveries(t(3), 1000, 10, &[]).await.unwrap();
    store.delivery_succeeded(claimed[0].id, t(4)).await.unwrap();
    store.save_checkpoint(3, "note", t(4)).await.unwrap();
    assert!(!watch.has_changed().unwrap());
    store.append(&[created("carol")], t(5)).await.unwrap();
    assert!(watch.has_changed().unwrap(), "an append");
}

async fn tokens_revoke_once(store: &dyn Store) {
    initialized(store).await;
    store
        .create_token(&token("t1", "alice"), &[], t(3))
        .await
        .unwrap();
    let ev = note(EventKind::TokenRevoked {
        token_id: "t1".into(),
        principal: "alice".into(),
    });
    assert!(
        store
            .revoke_token("t1", std::slice::from_ref(&ev), t(4))
            .await
            .unwrap()
    );
    let before = store.audit_size().await.unwrap();
    assert!(!store.revoke_token("t1", &[ev], t(5)).await.unwrap());
    assert_eq!(store.audit_size().await.unwrap(), before);
    assert_eq!(
        store.token("t1").await.unwrap().unwrap().revoked_at,
        Some(t(4))
    );
    assert_eq!(store.tokens().await.unwrap().len(), 2);
}

async fn requested_before_finds_only_old_pending_requests(store: &dyn Store) {
    initialized(store).await;
    let g = request(8); // requested at t(2)
    store.insert_grant(&g, &[], t(2)).await.unwrap();
    assert!(store.requested_before(t(1)).await.unwrap().is_empty());
    assert_eq!(store.requested_before(t(2)).await.unwrap().len(), 1);
    activate(store, 9).await;
    assert_eq!(
        store.requested_before(t(100)).await.unwrap().len(),
        1,
        "an active grant is not pending"
    );
}

async fn roles_are_replaced_and_recorded(store: &dyn Store) {
    initialized(store).await;
    let role = |id: &str, hash: &str| breakglass_store::RoleRecord {
        id: id.into(),
        hash: hash.into(),
        file: format!("{id}.toml"),
    };
    let before = store.audit_size().await.unwrap();
    assert!(
        store
            .record_roles(
                &[],
                &[role("db", "h1"), role("app", "h2")],
                &[created("r")],
                t(3),
            )
            .await
            .unwrap()
    );
    let first = vec![role("app", "h2"), role("db", "h1")];
    assert_eq!(store.roles().await.unwrap(), first);
    // A caller that worked its changes out against an older record (another replica got there
    // first) writes nothing, events included.
    assert!(
        !store
            .record_roles(&[], &[role("db", "h1")], &[created("again")], t(4))
            .await
            .unwrap()
    );
    assert_eq!(store.roles().await.unwrap(), first);
    assert_eq!(store.audit_size().await.unwrap(), before + 1);
    assert!(
        store
            .record_roles(&first, &[role("db", "h3"), role("web", "h4")], &[], t(4))
            .await
            .unwrap()
    );
    assert_eq!(
        store.roles().await.unwrap(),
        vec![role("db", "h3"), role("web", "h4")]
    );
    assert_eq!(store.audit_size().await.unwrap(), before + 1);
    let names: Vec<_> = store
        .principals()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name.to_string())
        .collect();
    assert_eq!(names, ["admin", "alice", "bob"]);
}

async fn secrets_are_added_once(store: &dyn Store) {
    initialized(store).await;
    let before = store.audit_size().await.unwrap();
    let secrets = [("k1", vec![1]), ("k2", vec![2])];
    assert!(
        store
            .add_secrets(&secrets, &[created("k")], t(3))
            .await
            .unwrap()
    );
    assert_eq!(store.secret("k2").await.unwrap(), Some(vec![2]));
    let again = [("k1", vec![9]), ("k3", vec![3])];
    assert!(
        !store
            .add_secrets(&again, &[created("k")], t(4))
            .await
            .unwrap()
    );
    assert_eq!(store.secret("k1").await.unwrap(), Some(vec![1]));
    assert_eq!(store.secret("k3").await.unwrap(), None, "nothing written");
    assert!(!store.add_secrets(&[], &[], t(5)).await.unwrap());
    assert_eq!(store.audit_size().await.unwrap(), before + 1);
}

async fn checkpoints_keep_the_first_of_a_size(store: &dyn Store) {
    initialized(store).await;
    assert!(store.latest_checkpoint().await.unwrap().is_none());
    store.save_checkpoint(3, "first", t(3)).await.unwrap();
    store.save_checkpoint(3, "second", t(4)).await.unwrap();
    store.save_checkpoint(1, "older", t(5)).await.unwrap();
    let latest = store.latest_checkpoint().await.unwrap().unwrap();
    assert_eq!((latest.size, latest.note.as_str()), (3, "first"));
    assert_eq!(latest.signed_at, t(3));
    struct Seen(Vec<u64>, u64);
    impl breakglass_store::AuditVisitor for Seen {
        fn checkpoints(&mut self, c: &[breakglass_store::StoredCheckpoint]) {
            self.0 = c.iter().map(|c| c.size).collect();
        }
        fn event(&mut self, _: u64, _: &[u8], _: Option<breakglass_audit::Hash>) {
            self.1 += 1;
        }
    }
    let mut seen = Seen(vec![], 0);
    let snap = store.audit_snapshot(&mut seen).await.unwrap();
    assert_eq!(seen.0, [1, 3]);
    assert_eq!(snap.checkpoints.len(), 2);
    assert_eq!(seen.1, snap.head_size);
}

/// The events as read back, the recorded leaves, the head and the stored subtree hashes all
/// describe one tree: the one recomputed from the bytes.
async fn audit_reads_agree_with_the_tree(store: &dyn Store) {
    initialized(store).await;
    activate(store, 11).await;
    activate(store, 12).await;
    let size = store.audit_size().await.unwrap();
    let mut paged = Vec::new();
    while (paged.len() as u64) < size {
        let page = store.audit_events(paged.len() as u64, 3).await.unwrap();
        assert!(!page.is_empty() && page.len() <= 3);
        paged.extend(page);
    }
    assert_eq!(paged, store.audit_tail(10_000).await.unwrap());
    let (head_size, root) = store.audit_head().await.unwrap();
    assert_eq!((head_size, root), tree_of(&paged));

    struct Leaves(Vec<(u64, Vec<u8>, Option<breakglass_audit::Hash>)>);
    impl breakglass_store::AuditVisitor for Leaves {
        fn event(&mut self, seq: u64, bytes: &[u8], leaf: Option<breakglass_audit::Hash>) {
            self.0.push((seq, bytes.to_vec(), leaf));
        }
    }
    let mut leaves = Leaves(vec![]);
    let snap = store.audit_snapshot(&mut leaves).await.unwrap();
    assert_eq!((snap.head_size, snap.head_root), (head_size, root));
    for ((seq, bytes, leaf), e) in leaves.0.iter().zip(&paged) {
        assert_eq!((*seq, bytes), (e.seq, &e.bytes));
        assert_eq!(*leaf, Some(breakglass_audit::leaf_hash(bytes)));
    }
    assert_eq!(leaves.0.len() as u64, size);

    let index = size / 2;
    let ids = breakglass_audit::needed_for_inclusion(index, size).unwrap();
    let stored = store.audit_hashes(&ids).await.unwrap();
    assert!(!stored.is_empty());
    let proof =
        breakglass_audit::inclusion_proof(index, size, &mut |id| stored.get(&id).copied()).unwrap();
    let leaf = breakglass_audit::leaf_hash(&paged[index as usize].bytes);
    assert!(breakglass_audit::verify_inclusion(
        index, size, &leaf, &proof, &root
    ));
    assert!(
        store
            .audit_hashes(&BTreeSet::new())
            .await
            .unwrap()
            .is_empty()
    );
}

/// The size and root of the tree over these events' bytes.
fn tree_of(events: &[breakglass_core::AuditEvent]) -> (u64, breakglass_audit::Hash) {
    let mut f = breakglass_audit::Frontier::new();
    for e in events {
        f.append(breakglass_audit::leaf_hash(&e.bytes));
    }
    (f.size(), f.root())
}

async fn grants_list_by_state(store: &dyn Store) {
    initialized(store).await;
    store.insert_grant(&request(13), &[], t(2)).await.unwrap();
    activate(store, 14).await;
    let states = |gs: Vec<breakglass_store::StoredGrant>| {
        gs.into_iter()
            .map(|g| g.grant.state.name())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        states(
            store
                .grants_in_states(&[StateKind::Active, StateKind::Requested])
                .await
                .unwrap()
        ),
        ["requested", "active"]
    );
    assert_eq!(
        states(store.grants_in_states(&[StateKind::Denied]).await.unwrap()).len(),
        0
    );
    assert_eq!(store.grants(None, 1).await.unwrap().len(), 1);
    let counts = store.grant_counts().await.unwrap();
    // Keyed by `StateKind` now, so in the order of the lifecycle rather than of the names.
    assert_eq!(
        counts.into_iter().collect::<Vec<_>>(),
        [(StateKind::Requested, 1), (StateKind::Active, 1)]
    );
}

async fn settings_change_once_with_their_events(store: &dyn Store) {
    initialized(store).await;
    let before = store.audit_size().await.unwrap();
    assert_eq!(store.setting("config-hash").await.unwrap(), None);
    assert!(
        store
            .record_setting("config-hash", b"h1", &[created("c1")], t(3))
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_setting("config-hash", b"h1", &[created("c1-again")], t(4))
            .await
            .unwrap(),
        "the same value again changes nothing, events included"
    );
    assert_eq!(store.audit_size().await.unwrap(), before + 1);
    assert!(
        store
            .record_setting("config-hash", b"h2", &[created("c2")], t(5))
            .await
            .unwrap()
    );
    assert_eq!(
        store.setting("config-hash").await.unwrap().as_deref(),
        Some(&b"h2"[..])
    );
    assert_eq!(store.audit_size().await.unwrap(), before + 2);
    assert_eq!(
        store.secret("config-hash").await.unwrap(),
        None,
        "not a secret"
    );
}

macro_rules! store_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = breakglass_store::SqliteStore::open(&dir.path().join("bg.db")).await.unwrap();
                    super::$name(&store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = crate::pgdb::TestDb::create().await;
                    let store = breakglass_store::PostgresStore::open(&db.url).await.unwrap();
                    super::$name(&store).await;
                    store.close().await;
                }
            )*
        }
    };
}

store_suite!(
    a_drill_starts_with_its_grant_and_moves_on_over_its_version,
    a_drill_reads_its_alerts_deliveries_once_routed,
    an_overdue_date_is_recorded_once,
    audit_seq_is_gapless_from_zero,
    initialize_runs_once,
    duplicate_principal_is_refused_and_audits_nothing,
    stale_versions_conflict,
    an_update_returns_the_grant_as_stored,
    credential_is_delivered_once,
    ending_a_grant_erases_an_uncollected_credential,
    due_for_expiry_finds_only_ended_windows,
    tokens_revoke_once,
    requested_before_finds_only_old_pending_requests,
    the_next_expiry_is_the_earliest_active_end,
    the_oldest_request_of_each_role_is_found,
    appending_writes_wake_the_log_watchers,
    the_next_delivery_due_is_the_earliest_claimable,
    roles_are_replaced_and_recorded,
    secrets_are_added_once,
    checkpoints_keep_the_first_of_a_size,
    audit_reads_agree_with_the_tree,
    grants_list_by_state,
    alerts_are_routed_once_from_the_cursor,
    alerts_go_to_every_channel_named_or_none,
    claims_respect_due_times_and_leases,
    a_delivered_alert_is_done,
    a_failed_alert_is_retried_when_due,
    an_alert_given_up_is_dead_and_recorded_once,
    the_backlog_counts_each_channel,
    a_router_that_cannot_route_an_event_yet_stops_before_it,
    settings_change_once_with_their_events,
    claims_skip_the_channels_asked,
    sessions_keep_kind_scopes_and_step_up,
    factors_change_by_compare_and_set,
    disabling_ends_every_token_once,
    failures_lock_with_backoff_and_are_audited,
    refusals_while_locked_are_one_event_per_window_and_counters_are_pruned,
    lockdowns_are_in_force_until_lifted_once_per_scope,
    a_content_is_in_force_from_when_it_first_loaded,
    the_latest_attestation_of_each_content_counts,
    a_notice_is_sent_once,
    reviews_are_recorded_once_over_the_grant_version,
    each_review_reminder_is_sent_once,
    a_batch_of_grant_updates_skips_only_the_stale,
);

/// Invariant 2 on a real SQLite file: when the audit row cannot be written, the state change does
/// not happen either.
#[tokio::test]
async fn a_failing_audit_write_rolls_back_the_state_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bg.db");
    let store = SqliteStore::open(&path).await.unwrap();
    initialized(&store).await;
    let (g, v) = activate(&store, 6).await;
    sign_in_state(&store).await;
    let size = store.audit_size().await.unwrap();

    // Sabotage the audit table from outside, as a full disk or a broken schema would.
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .unwrap();
    sqlx::query("CREATE TRIGGER audit_broken BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        .execute(&mut conn)
        .await
        .unwrap();
    writes_fail_whole(&store, &g, v).await;
    sqlx::query("DROP TRIGGER audit_broken")
        .execute(&mut conn)
        .await
        .unwrap();
    nothing_was_kept(&store, &g, size).await;
}

/// A person with sign-in factors and a token, for `writes_fail_whole` to try to change.
async fn sign_in_state(store: &dyn Store) {
    store
        .put_login("alice", "{}", None, false, &[], t(10))
        .await
        .unwrap();
    store
        .create_token(&token("t9", "alice"), &[], t(10))
        .await
        .unwrap();
}

/// With the audit log refusing inserts, every state-changing write fails and changes nothing.
async fn writes_fail_whole(store: &dyn Store, g: &Grant, v: i64) {
    let fresh = request(7);
    let ev = EventDraft::new(
        Actor::System("t"),
        Some(fresh.id),
        EventKind::GrantCancelled { by: "x".into() },
    );
    assert!(store.insert_grant(&fresh, &[ev], t(20)).await.is_err());
    assert!(
        store.grant(fresh.id).await.unwrap().is_none(),
        "grant without its audit event must not exist"
    );

    let tr = g
        .begin_revoke(None, &user("alice", &["sre"]), "done", t(21))
        .unwrap();
    assert!(
        store
            .update_grant(&tr.grant, v, None, &tr.events, t(21))
            .await
            .is_err()
    );
    let still = store.grant(g.id).await.unwrap().unwrap();
    assert_eq!(still.grant.state.name(), "active");
    assert_eq!(still.version, v);

    assert!(
        store
            .deliver_credential(g.id, &user("alice", &["sre"]), t(22))
            .await
            .is_err()
    );

    // Sign-in state is audited state too: a used-up code, a step-up, a lock, a disabled user.
    let ev = || {
        EventDraft::new(
            Actor::System("t"),
            None,
            EventKind::GrantCancelled { by: "x".into() },
        )
    };
    assert!(
        store
            .put_login("alice", "{\"used\":1}", Some(1), true, &[ev()], t(24))
            .await
            .is_err()
    );
    assert!(store.step_up("t9", &[ev()], t(24)).await.is_err());
    assert!(
        store
            .set_disabled("alice", true, &[ev()], t(24))
            .await
            .is_err()
    );
    let policy = breakglass_store::ThrottlePolicy {
        free: 0,
        base_ms: 1000,
        cap_ms: 1000,
    };
    assert!(
        store
            .record_auth_failure(&[("account alice".into(), policy)], &[ev()], t(24))
            .await
            .is_err()
    );
}

/// Once the audit log takes inserts again: the log did not grow and the credential is still there.
async fn nothing_was_kept(store: &dyn Store, g: &Grant, size: u64) {
    assert_eq!(store.audit_size().await.unwrap(), size);
    let login = store.login("alice").await.unwrap().unwrap();
    assert_eq!((login.body.as_str(), login.version), ("{}", 1));
    assert_eq!(
        store.token("t9").await.unwrap().unwrap().stepped_up_at,
        None
    );
    assert!(!store.principal("alice").await.unwrap().unwrap().disabled);
    assert!(
        store
            .throttles(&["account alice".into()])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .deliver_credential(g.id, &user("alice", &["sre"]), t(23))
            .await
            .is_ok(),
        "the failed delivery did not consume the credential"
    );
}

async fn lock_exclusively(path: &std::path::Path) -> sqlx::SqliteConnection {
    let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut c)
        .await
        .unwrap();
    c
}

/// Polls until `n` writes have been handed to the writer since `base`.
async fn wait_for_submitted(store: &SqliteStore, base: u64, n: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.submitted_writes() - base < n {
        assert!(
            std::time::Instant::now() < deadline,
            "writes never reached the writer"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Group commit: writes that wait together share one transaction (one fsync), and each caller
/// returns only after its own write is durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bg.db");
    let store = SqliteStore::open(&path).await.unwrap();
    initialized(&store).await;
    let before = store.commits();
    let size0 = store.audit_size().await.unwrap();

    // Hold the database so the writer stalls on its first batch while the rest queue up.
    let mut lock = lock_exclusively(&path).await;
    let base = store.submitted_writes();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let ev = note(EventKind::TokenRevoked {
                token_id: format!("t{i}"),
                principal: "x".into(),
            });
            s.append(&[ev], t(100)).await
        }));
    }
    // All 64 are with the writer: some in the batch stalled on the lock, the rest queued behind it.
    wait_for_submitted(&store, base, 64).await;
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let commits = store.commits() - before;
    assert!(
        commits <= 2,
        "64 writes took {commits} commits: those that waited together share one"
    );
    let events = store.audit_tail(10_000).await.unwrap();
    assert_eq!(events.len() as u64, size0 + 64);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64, "gapless across the batch");
    }
}

/// A write that fails inside a batch is undone alone; the others (in its batch or not) commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_in_a_batch_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bg.db");
    let store = SqliteStore::open(&path).await.unwrap();
    initialized(&store).await;
    let size0 = store.audit_size().await.unwrap();
    let mut lock = lock_exclusively(&path).await;
    let base = store.submitted_writes();
    let first = {
        let s = store.clone();
        tokio::spawn(async move {
            s.create_principal(&user("first", &[]), &[created("first")], t(5))
                .await
        })
    };
    let mut tasks = Vec::new();
    for name in ["xavier", "alice", "yvonne"] {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.create_principal(&user(name, &[]), &[created(name)], t(6))
                .await
        }));
    }
    wait_for_submitted(&store, base, 4).await;
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    first.await.unwrap().unwrap();
    let results: Vec<_> = futures_join(tasks).await;
    assert!(results[0].is_ok());
    assert_eq!(
        results[1].as_ref().unwrap_err().to_string(),
        "user `alice` already exists"
    );
    assert!(results[2].is_ok());
    assert!(store.principal("xavier").await.unwrap().is_some());
    assert!(store.principal("yvonne").await.unwrap().is_some());
    let events = store.audit_tail(10_000).await.unwrap();
    assert_eq!(
        events.len() as u64,
        size0 + 3,
        "the failed write left no event"
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64);
    }
}

async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// The head row always describes the tree of the stored bytes; a database that predates the tree
/// gets it built from the bytes on open, but a tree that fell behind is refused.
#[tokio::test]
async fn the_tree_head_matches_the_stored_bytes_and_is_rebuilt_if_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bg.db");
    let store = SqliteStore::open(&path).await.unwrap();
    initialized(&store).await;
    activate(&store, 9).await;
    let rebuild = |events: &[breakglass_core::AuditEvent]| {
        let mut f = breakglass_audit::Frontier::new();
        for e in events {
            f.append(breakglass_audit::leaf_hash(&e.bytes));
        }
        (f.size(), f.root())
    };
    let events = store.audit_tail(10_000).await.unwrap();
    assert_eq!(store.audit_head().await.unwrap(), rebuild(&events));
    store.close().await;

    let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .unwrap();
    sqlx::query("DROP TRIGGER audit_hashes_no_delete")
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_hashes")
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_head SET size = 0, frontier = x''")
        .execute(&mut c)
        .await
        .unwrap();
    drop(c);
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.audit_head().await.unwrap(), rebuild(&events));
    store.close().await;

    // A head that falls behind a log that already had a tree is damage, not history: refuse.
    let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .unwrap();
    sqlx::query("INSERT INTO audit_log (seq, type, grant_id, time, bytes) VALUES (999, 'x', NULL, 0, x'00')")
        .execute(&mut c)
        .await
        .unwrap();
    drop(c);
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(err.to_string().contains("the audit tree covers"), "{err}");
}
