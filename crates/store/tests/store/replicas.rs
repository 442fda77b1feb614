//! PostgreSQL only: several stores on one database, each with its own pool, stand for broker
//! processes ("replicas") sharing it; and a server that cannot be reached or goes away.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use breakglass_core::{AuditEvent, EventKind, Role};
use breakglass_store::{PostgresStore, Store, StoreError};

use super::{
    ROLE, activate, created, initialized, note, nothing_was_kept, request, sign_in_state, t, token,
    tree_of, user, writes_fail_whole,
};
use crate::pgdb::{Proxy, TestDb, server_addr, via_proxy};

/// Two replicas open the same database.
async fn two_replicas(db: &TestDb) -> (PostgresStore, PostgresStore) {
    let a = PostgresStore::open(&db.url).await.unwrap();
    let b = PostgresStore::open(&db.url).await.unwrap();
    (a, b)
}

/// Takes `FOR UPDATE` on a grant's row from outside, so that the writes started next all wait
/// for it and then run at once.
async fn hold_grant(db: &TestDb, id: breakglass_core::GrantId) -> sqlx::PgConnection {
    let mut c = db.connect().await;
    sqlx::query("BEGIN").execute(&mut c).await.unwrap();
    sqlx::query("SELECT 1 FROM grants WHERE id = $1 FOR UPDATE")
        .bind(id.to_string())
        .execute(&mut c)
        .await
        .unwrap();
    c
}

async fn release(mut holder: sqlx::PgConnection) {
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_from_two_replicas_are_gapless_and_hash_to_the_head() {
    let db = TestDb::create().await;
    let (a, b) = two_replicas(&db).await;
    initialized(&a).await;
    let size0 = a.audit_size().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            for j in 0..20 {
                // One, two or three events per write.
                let events: Vec<_> = (0..=j % 3)
                    .map(|k| {
                        note(EventKind::TokenRevoked {
                            token_id: format!("t{i}-{j}-{k}"),
                            principal: "x".into(),
                        })
                    })
                    .collect();
                s.append(&events, t(100)).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let written = 16 * (7 + 7 * 2 + 6 * 3);
    let events = b.audit_tail(100_000).await.unwrap();
    assert_eq!(events.len() as u64, size0 + written);
    let mut ids = BTreeSet::new();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64, "gapless, in order, no duplicates");
        let v = e.to_json().unwrap();
        assert_eq!(v["seq"], i as u64, "the hashed bytes carry the same seq");
        if let Some(id) = v["token_id"].as_str() {
            assert!(ids.insert(id.to_owned()), "`{id}` written twice");
        }
    }
    assert_eq!(ids.len() as u64, written, "no write lost");
    let tree = tree_of(&events);
    assert_eq!(a.audit_head().await.unwrap(), tree);
    assert_eq!(b.audit_head().await.unwrap(), tree);
    assert_eq!(a.audit_size().await.unwrap(), tree.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_grant_updates_from_two_replicas_one_wins() {
    let db = TestDb::create().await;
    let (a, b) = two_replicas(&db).await;
    initialized(&a).await;
    let role = Role::parse("db.toml", ROLE).unwrap();
    let g = request(20);
    a.insert_grant(&g, &[], t(2)).await.unwrap();
    let size = a.audit_size().await.unwrap();
    let cancel = g.cancel(&user("alice", &["sre"]), t(3)).unwrap();
    let approve = g
        .approve(&role, &user("bob", &["leads"]), None, t(3))
        .unwrap();

    let holder = hold_grant(&db, g.id).await;
    let ta = tokio::spawn({
        let (a, g, ev) = (a.clone(), cancel.grant.clone(), cancel.events.clone());
        async move { a.update_grant(&g, 1, None, &ev, t(3)).await }
    });
    let tb = tokio::spawn({
        let (b, g, ev) = (b.clone(), approve.grant.clone(), approve.events.clone());
        async move { b.update_grant(&g, 1, None, &ev, t(3)).await }
    });
    db.wait_for_lock_waiters(2).await;
    release(holder).await;
    let (ra, rb) = (ta.await.unwrap(), tb.await.unwrap());

    let winner = match (&ra, &rb) {
        (Ok(_), Err(StoreError::Conflict)) => &cancel,
        (Err(StoreError::Conflict), Ok(_)) => &approve,
        other => panic!("exactly one update must win: {other:?}"),
    };
    let now = a.grant(g.id).await.unwrap().unwrap();
    assert_eq!(now.version, 2);
    assert_eq!(now.grant, winner.grant);
    let winning_events = winner.events.len();
    assert_eq!(
        a.audit_size().await.unwrap(),
        size + winning_events as u64,
        "only the winner's events were written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_deliveries_from_two_replicas_hand_over_once() {
    let db = TestDb::create().await;
    let (a, b) = two_replicas(&db).await;
    initialized(&a).await;
    let (g, _) = activate(&a, 21).await;

    let holder = hold_grant(&db, g.id).await;
    let ta = tokio::spawn({
        let a = a.clone();
        async move {
            a.deliver_credential(g.id, &user("alice", &["sre"]), t(6))
                .await
        }
    });
    let tb = tokio::spawn({
        let b = b.clone();
        async move {
            b.deliver_credential(g.id, &user("alice", &["sre"]), t(6))
                .await
        }
    });
    db.wait_for_lock_waiters(2).await;
    release(holder).await;
    let results = [ta.await.unwrap(), tb.await.unwrap()];

    let delivered: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(delivered.len(), 1, "{results:?}");
    assert_eq!(delivered[0].ciphertext, vec![9; 40]);
    let refused = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert_eq!(
        refused.to_string(),
        format!("the credential for grant `{}` was already delivered", g.id)
    );
    let deliveries = a
        .audit_tail(10_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.to_json().unwrap()["type"] == "credential.delivered")
        .count();
    assert_eq!(deliveries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_initialisations_leave_one_winner() {
    let db = TestDb::create().await;
    let (a, b) = two_replicas(&db).await;
    // Hold the claim on the marker so that both initialisations wait on it and then race.
    let mut holder = db.connect().await;
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("INSERT INTO meta (key, value) VALUES ('initialized', '\\x00')")
        .execute(&mut holder)
        .await
        .unwrap();
    let init = |s: PostgresStore, name: &'static str| {
        tokio::spawn(async move {
            s.initialize(
                &user(name, &["admins"]),
                &token(&format!("tok-{name}"), name),
                &[("jwt", name.as_bytes().to_vec())],
                &[created(name)],
                t(0),
            )
            .await
        })
    };
    let ta = init(a.clone(), "first");
    let tb = init(b.clone(), "second");
    db.wait_for_lock_waiters(2).await;
    release(holder).await;
    let results = [ta.await.unwrap(), tb.await.unwrap()];
    let won: Vec<_> = ["first", "second"]
        .into_iter()
        .zip(&results)
        .filter(|(_, r)| r.is_ok())
        .map(|(n, _)| n)
        .collect();
    assert_eq!(won.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(StoreError::AlreadyInitialized)))
    );
    let names: Vec<_> = a
        .principals()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name.to_string())
        .collect();
    assert_eq!(names, won);
    assert_eq!(
        a.secret("jwt").await.unwrap(),
        Some(won[0].as_bytes().to_vec())
    );
    assert_eq!(a.audit_size().await.unwrap(), 1);
}

/// Replicas starting at the same moment all migrate the same fresh database: the migrator's
/// advisory lock makes them take turns, and the schema is created once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_opening_at_once_migrate_once() {
    let db = TestDb::create().await;
    let opens: Vec<_> = (0..6)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { PostgresStore::open(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for o in opens {
        stores.push(o.await.unwrap().unwrap());
    }
    let mut c = db.connect().await;
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut c)
        .await
        .unwrap();
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!(applied as usize, migrations, "each migration applied once");
    initialized(&stores[0]).await;
    assert!(stores[5].initialized().await.unwrap());
}

/// Invariant 2 on PostgreSQL: when the audit row cannot be written, the state change does not
/// happen either.
#[tokio::test]
async fn a_failing_audit_write_rolls_back_the_state_change() {
    let db = TestDb::create().await;
    let store = PostgresStore::open(&db.url).await.unwrap();
    initialized(&store).await;
    let (g, v) = activate(&store, 6).await;
    sign_in_state(&store).await;
    let size = store.audit_size().await.unwrap();

    // Sabotage the audit table from outside, as a full disk or a broken schema would.
    let mut c = db.connect().await;
    sqlx::query(
        "CREATE FUNCTION audit_broken() RETURNS trigger LANGUAGE plpgsql
         AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$",
    )
    .execute(&mut c)
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER audit_broken BEFORE INSERT ON audit_log
         FOR EACH ROW EXECUTE FUNCTION audit_broken()",
    )
    .execute(&mut c)
    .await
    .unwrap();
    writes_fail_whole(&store, &g, v).await;
    sqlx::query("DROP TRIGGER audit_broken ON audit_log")
        .execute(&mut c)
        .await
        .unwrap();
    nothing_was_kept(&store, &g, size).await;
}

#[tokio::test]
async fn an_unreachable_server_fails_open_fast_and_is_unavailable() {
    // A port held (bound, so nothing else can take it) but not listening: connections to it are
    // refused.
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = held.local_addr().unwrap().port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/breakglass");
    let started = Instant::now();
    let err = PostgresStore::open(&url).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "a refused connection took {:?}",
        started.elapsed()
    );
    let err = PostgresStore::open_read_only(&url).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
}

/// A session the server ends (a restart, an administrator) is replaced without the caller
/// noticing; a server that is gone makes every call fail as unavailable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_is_unavailable() {
    let db = TestDb::create().await;
    let proxy = Proxy::start(&server_addr()).await;
    let store = PostgresStore::open(&via_proxy(&proxy, &db.name))
        .await
        .unwrap();
    initialized(&store).await;

    let mut c = db.connect().await;
    sqlx::query(
        "SELECT pg_terminate_backend(pid, 30000) FROM pg_stat_activity
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&db.name)
    .execute(&mut c)
    .await
    .unwrap();
    store.append(&[created("after")], t(5)).await.unwrap();

    proxy.cut();
    let err = store.append(&[created("gone")], t(6)).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    let err = store.audit_size().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
}

#[tokio::test]
async fn a_read_only_store_reads_but_refuses_writes() {
    let db = TestDb::create().await;
    let err = PostgresStore::open_read_only(&db.url).await.unwrap_err();
    assert!(matches!(err, StoreError::NotInitialized), "{err}");
    let mut c = db.connect().await;
    let untouched: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NULL")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert!(untouched, "opening read-only created nothing");

    let store = PostgresStore::open(&db.url).await.unwrap();
    initialized(&store).await;
    let size = store.audit_size().await.unwrap();
    store.close().await;

    let ro = PostgresStore::open_read_only(&db.url).await.unwrap();
    assert!(ro.initialized().await.unwrap());
    assert_eq!(ro.audit_size().await.unwrap(), size);
    struct Count(u64);
    impl breakglass_store::AuditVisitor for Count {
        fn event(&mut self, _: u64, _: &[u8], _: Option<breakglass_audit::Hash>) {
            self.0 += 1;
        }
    }
    let mut count = Count(0);
    let snap = ro.audit_snapshot(&mut count).await.unwrap();
    assert_eq!((snap.head_size, count.0), (size, size));

    let err = ro.append(&[created("x")], t(5)).await.unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    assert!(
        err.is_unavailable(),
        "a read-only database cannot be written"
    );
    let err = ro
        .create_principal(&user("carol", &[]), &[created("carol")], t(5))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    assert!(
        ro.save_checkpoint(size, "note", t(5)).await.is_err(),
        "not even a checkpoint"
    );
    assert_eq!(ro.audit_size().await.unwrap(), size);
    assert!(ro.principal("carol").await.unwrap().is_none());
}

#[tokio::test]
async fn the_log_is_append_only_and_a_tree_behind_its_log_is_refused() {
    let db = TestDb::create().await;
    let store = PostgresStore::open(&db.url).await.unwrap();
    initialized(&store).await;
    store.save_checkpoint(1, "note", t(3)).await.unwrap();
    store.close().await;

    let mut c = db.connect().await;
    for (sql, table) in [
        ("UPDATE audit_log SET type = 'x'", "audit_log"),
        ("DELETE FROM audit_log", "audit_log"),
        ("TRUNCATE audit_log", "audit_log"),
        ("UPDATE audit_hashes SET hash = '\\x00'", "audit_hashes"),
        ("DELETE FROM audit_hashes", "audit_hashes"),
        ("TRUNCATE audit_hashes", "audit_hashes"),
        (
            "UPDATE audit_checkpoints SET note = 'forged'",
            "audit_checkpoints",
        ),
        ("DELETE FROM audit_checkpoints", "audit_checkpoints"),
        ("TRUNCATE audit_checkpoints", "audit_checkpoints"),
    ] {
        let err = sqlx::query(sql).execute(&mut c).await.unwrap_err();
        assert!(
            err.to_string().contains(&format!("{table} is append-only")),
            "{sql}: {err}"
        );
    }

    // A row the tree does not cover (written around the store) is damage: refuse to open.
    sqlx::query(
        "INSERT INTO audit_log (seq, type, grant_id, time, bytes) VALUES (999, 'x', NULL, 0, '\\x00')",
    )
    .execute(&mut c)
    .await
    .unwrap();
    let err = PostgresStore::open(&db.url).await.unwrap_err();
    assert!(err.to_string().contains("the audit tree covers"), "{err}");
}

/// A database made before alerts existed (schema version 1) with events in its log: the upgrade
/// starts the alert cursor at the end of the log, so history raises no alert.
#[tokio::test]
async fn an_upgraded_database_alerts_only_on_new_events() {
    let db = TestDb::create().await;
    let store = PostgresStore::open(&db.url).await.unwrap();
    initialized(&store).await;
    let size = store.audit_size().await.unwrap();
    store.close().await;
    // Back to version 1, as if the alert tables had never been made.
    let mut c = db.connect().await;
    for sql in [
        "DROP TABLE alert_deliveries, alert_cursor",
        "DELETE FROM _sqlx_migrations WHERE version = 2",
    ] {
        sqlx::query(sql).execute(&mut c).await.unwrap();
    }

    let store = PostgresStore::open(&db.url).await.unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    let route = |e: &AuditEvent| {
        seen.lock().unwrap().push(e.seq);
        Some(vec!["ops".to_owned()])
    };
    assert_eq!(store.route_alerts(10, &route, t(10)).await.unwrap(), 0);
    store.append(&[created("new")], t(11)).await.unwrap();
    assert_eq!(store.route_alerts(10, &route, t(12)).await.unwrap(), 1);
    assert_eq!(*seen.lock().unwrap(), [size]);
}

/// Two replicas route while a third appends: every event gets exactly one routing pass. Each
/// replica names a channel of its own, so an event routed twice would show up as two deliveries
/// (the unique key on (seq, channel) could not hide it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_route_every_event_exactly_once() {
    let db = TestDb::create().await;
    let (a, b) = two_replicas(&db).await;
    initialized(&a).await;
    for i in 0..30 {
        a.append(&[created(&format!("before{i}"))], t(5))
            .await
            .unwrap();
    }
    let appended = Arc::new(AtomicBool::new(false));
    // Both routers wait on the cursor, then race from the same point.
    let mut holder = db.connect().await;
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT 1 FROM alert_cursor WHERE id = 1 FOR UPDATE")
        .execute(&mut holder)
        .await
        .unwrap();
    let router = |s: PostgresStore, channel: &'static str| {
        let appended = Arc::clone(&appended);
        tokio::spawn(async move {
            let route = move |_: &AuditEvent| Some(vec![channel.to_owned()]);
            let mut passes = 0;
            loop {
                let done = appended.load(Ordering::SeqCst);
                let n = s.route_alerts(3, &route, t(10)).await.unwrap();
                passes += usize::from(n > 0);
                if n == 0 && done {
                    return passes;
                }
            }
        })
    };
    let ra = router(a.clone(), "via-a");
    let rb = router(b.clone(), "via-b");
    db.wait_for_lock_waiters(2).await;
    let appender = tokio::spawn({
        let (a, appended) = (a.clone(), Arc::clone(&appended));
        async move {
            for i in 0..40 {
                a.append(&[created(&format!("during{i}"))], t(6))
                    .await
                    .unwrap();
            }
            appended.store(true, Ordering::SeqCst);
        }
    });
    release(holder).await;
    appender.await.unwrap();
    let passes = ra.await.unwrap() + rb.await.unwrap();
    assert!(passes > 0);

    let size = a.audit_size().await.unwrap();
    let mut c = db.connect().await;
    let routed: Vec<(i64, i64)> =
        sqlx::query_as("SELECT seq, COUNT(*) FROM alert_deliveries GROUP BY seq ORDER BY seq")
            .fetch_all(&mut c)
            .await
            .unwrap();
    assert_eq!(routed.len() as u64, size, "every event routed");
    for (i, (seq, n)) in routed.iter().enumerate() {
        assert_eq!((*seq, *n), (i as i64, 1), "seq {seq} routed {n} times");
    }
    let cursor: i64 = sqlx::query_scalar("SELECT next_seq FROM alert_cursor")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(cursor as u64, size);
}

/// Four workers on two replicas claim at once until nothing is left: no delivery is handed to
/// two of them, and none is left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_never_claim_the_same_delivery() {
    let db = TestDb::create().await;
    let (a, b) = two_replicas(&db).await;
    initialized(&a).await;
    for i in 0..47 {
        a.append(&[created(&format!("e{i}"))], t(5)).await.unwrap();
    }
    let route = |_: &AuditEvent| Some(vec!["ops".to_owned(), "email".to_owned()]);
    while a.route_alerts(100, &route, t(10)).await.unwrap() > 0 {}
    let total = 2 * a.audit_size().await.unwrap();

    let workers: Vec<_> = (0..4)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let mut ids = Vec::new();
                loop {
                    // One `now` for all: a lease taken here never ends during the test.
                    let claimed = s.claim_deliveries(t(20), 60_000, 3, &[]).await.unwrap();
                    if claimed.is_empty() {
                        return ids;
                    }
                    ids.extend(claimed.iter().map(|d| d.id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let distinct: BTreeSet<_> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "a delivery was claimed twice");
    assert_eq!(all.len() as u64, total, "every delivery claimed");
}
