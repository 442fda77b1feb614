//! The alert outbox: deliveries routed from the audit log through the cursor, claimed with a
//! lease, retried, finished as delivered or dead, and counted per channel. The suite runs on both
//! backends; the upgrade and race tests at the bottom are SQLite's (PostgreSQL's are in
//! `replicas.rs`).

use std::path::Path;
use std::sync::Mutex;

use breakglass_core::{AuditEvent, EventKind, Timestamp};
use breakglass_store::{ChannelBacklog, Delivery, SqliteStore, Store};

use super::{created, initialized, note, t};

/// Sends every event to `channels`.
fn to(
    channels: &'static [&'static str],
) -> impl Fn(&AuditEvent) -> Option<Vec<String>> + Send + Sync {
    move |_| Some(channels.iter().map(|c| (*c).to_owned()).collect())
}

/// A lease of `s` seconds.
const fn secs(s: i64) -> i64 {
    s * 1000
}

/// An event that changes nothing else, like the `alert.failed` a dead letter records.
fn gave_up(channel: &str) -> breakglass_core::EventDraft {
    note(EventKind::AuthDenied {
        action: "alert".into(),
        code: "gave_up".into(),
        message: format!("gave up on `{channel}`"),
    })
}

fn backlog_of(all: &[ChannelBacklog], channel: &str) -> ChannelBacklog {
    all.iter()
        .find(|b| b.channel == channel)
        .unwrap_or_else(|| panic!("no backlog for `{channel}` in {all:?}"))
        .clone()
}

fn seqs(ds: &[Delivery]) -> Vec<u64> {
    ds.iter().map(|d| d.seq).collect()
}

/// Routes everything up to the end of the log, a few events at a time.
async fn route_all(
    store: &dyn Store,
    route: &(dyn Fn(&AuditEvent) -> Option<Vec<String>> + Send + Sync),
    now: Timestamp,
) {
    while store.route_alerts(5, route, now).await.unwrap() > 0 {}
}

pub(crate) async fn alerts_are_routed_once_from_the_cursor(store: &dyn Store) {
    initialized(store).await; // 3 events, seq 0..=2
    let seen = Mutex::new(Vec::new());
    let route = |e: &AuditEvent| {
        seen.lock().unwrap().push(e.seq);
        Some(vec!["ops".to_owned()])
    };
    assert_eq!(store.route_alerts(2, &route, t(10)).await.unwrap(), 2);
    assert_eq!(store.route_alerts(2, &route, t(10)).await.unwrap(), 1);
    assert_eq!(
        store.route_alerts(2, &route, t(10)).await.unwrap(),
        0,
        "the cursor is at the end of the log"
    );
    store
        .append(&[created("x"), created("y")], t(11))
        .await
        .unwrap();
    assert_eq!(store.route_alerts(100, &route, t(12)).await.unwrap(), 2);
    assert_eq!(store.route_alerts(100, &route, t(12)).await.unwrap(), 0);
    assert_eq!(
        *seen.lock().unwrap(),
        [0, 1, 2, 3, 4],
        "each event routed once"
    );

    let claimed = store
        .claim_deliveries(t(12), secs(30), 100, &[])
        .await
        .unwrap();
    assert_eq!(seqs(&claimed), [0, 1, 2, 3, 4], "oldest first");
    let log = store.audit_events(0, 100).await.unwrap();
    for (d, e) in claimed.iter().zip(&log) {
        assert_eq!(
            (d.seq, &d.bytes),
            (e.seq, &e.bytes),
            "the event's own bytes"
        );
        assert_eq!((d.channel.as_str(), d.attempts), ("ops", 0));
    }
    assert_eq!(claimed[0].created_at, t(10));
    assert_eq!(claimed[3].created_at, t(12));
}

pub(crate) async fn alerts_go_to_every_channel_named_or_none(store: &dyn Store) {
    initialized(store).await; // principal.created for admin, alice, bob
    let route = |e: &AuditEvent| match e.to_json().unwrap()["name"].as_str() {
        Some("alice") => Some(vec!["webhook".to_owned(), "email".to_owned()]),
        // Naming a channel twice delivers once.
        Some("bob") => Some(vec!["email".to_owned(), "email".to_owned()]),
        _ => Some(vec![]),
    };
    assert_eq!(store.route_alerts(10, &route, t(10)).await.unwrap(), 3);
    assert_eq!(
        store.route_alerts(10, &route, t(10)).await.unwrap(),
        0,
        "an event with no channel is routed all the same"
    );
    let claimed = store
        .claim_deliveries(t(10), secs(30), 10, &[])
        .await
        .unwrap();
    let got: Vec<_> = claimed
        .iter()
        .map(|d| (d.seq, d.channel.as_str()))
        .collect();
    assert_eq!(got, [(1, "webhook"), (1, "email"), (2, "email")]);
    let backlog = store.alert_backlog().await.unwrap();
    let channels: Vec<_> = backlog.iter().map(|b| b.channel.as_str()).collect();
    assert_eq!(channels, ["email", "webhook"]);
    assert_eq!(backlog_of(&backlog, "email").pending, 2);
}

pub(crate) async fn claims_respect_due_times_and_leases(store: &dyn Store) {
    initialized(store).await;
    store.route_alerts(2, &to(&["ops"]), t(10)).await.unwrap();
    assert!(
        store
            .claim_deliveries(t(9), secs(30), 10, &[])
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );
    let first = store
        .claim_deliveries(t(10), secs(30), 1, &[])
        .await
        .unwrap();
    assert_eq!(seqs(&first), [0]);
    let second = store
        .claim_deliveries(t(10), secs(30), 10, &[])
        .await
        .unwrap();
    assert_eq!(seqs(&second), [1], "a leased delivery is not claimed again");
    assert!(
        store
            .claim_deliveries(t(39), secs(30), 10, &[])
            .await
            .unwrap()
            .is_empty(),
        "both leases run to t(40)"
    );
    let again = store
        .claim_deliveries(t(40), secs(30), 10, &[])
        .await
        .unwrap();
    assert_eq!(seqs(&again), [0, 1], "an ended lease frees the delivery");
    assert_eq!(again[0].id, first[0].id);
    assert_eq!(
        again[0].attempts, 0,
        "a lease that ran out is not a failure"
    );
    assert!(
        store
            .claim_deliveries(t(40), secs(30), 0, &[])
            .await
            .unwrap()
            .is_empty()
    );
}

pub(crate) async fn a_delivered_alert_is_done(store: &dyn Store) {
    initialized(store).await;
    store.route_alerts(1, &to(&["ops"]), t(10)).await.unwrap();
    let d = store
        .claim_deliveries(t(10), secs(30), 10, &[])
        .await
        .unwrap();
    assert_eq!(d.len(), 1);
    store.delivery_succeeded(d[0].id, t(11)).await.unwrap();
    store.delivery_succeeded(d[0].id, t(12)).await.unwrap();
    assert!(
        store
            .claim_deliveries(t(1000), secs(30), 10, &[])
            .await
            .unwrap()
            .is_empty()
    );
    let size = store.audit_size().await.unwrap();
    assert!(
        !store
            .delivery_failed(d[0].id, "late", None, &[gave_up("ops")], t(13))
            .await
            .unwrap(),
        "another replica delivered it"
    );
    assert_eq!(store.audit_size().await.unwrap(), size, "nothing written");
    let ops = backlog_of(&store.alert_backlog().await.unwrap(), "ops");
    assert_eq!((ops.pending, ops.delivered, ops.dead), (0, 1, 0));
}

pub(crate) async fn a_failed_alert_is_retried_when_due(store: &dyn Store) {
    initialized(store).await;
    store.route_alerts(1, &to(&["ops"]), t(10)).await.unwrap();
    let d = store
        .claim_deliveries(t(10), secs(30), 10, &[])
        .await
        .unwrap();
    let size = store.audit_size().await.unwrap();
    assert!(
        store
            .delivery_failed(d[0].id, "connection refused", Some(t(70)), &[], t(11))
            .await
            .unwrap()
    );
    assert_eq!(store.audit_size().await.unwrap(), size);
    let ops = backlog_of(&store.alert_backlog().await.unwrap(), "ops");
    assert_eq!((ops.pending, ops.failing, ops.dead), (1, 1, 0));
    assert!(
        store
            .claim_deliveries(t(69), secs(30), 10, &[])
            .await
            .unwrap()
            .is_empty(),
        "the lease is released, but the retry is not due yet"
    );
    let retry = store
        .claim_deliveries(t(70), secs(30), 10, &[])
        .await
        .unwrap();
    assert_eq!((retry[0].id, retry[0].attempts), (d[0].id, 1));
    // A long error is kept, cut at a character boundary.
    let long = format!("x{}", "é".repeat(2000));
    assert!(
        store
            .delivery_failed(d[0].id, &long, Some(t(80)), &[], t(71))
            .await
            .unwrap()
    );
    let retry = store
        .claim_deliveries(t(80), secs(30), 10, &[])
        .await
        .unwrap();
    assert_eq!(retry[0].attempts, 2);
    store.delivery_succeeded(d[0].id, t(81)).await.unwrap();
    let ops = backlog_of(&store.alert_backlog().await.unwrap(), "ops");
    assert_eq!((ops.pending, ops.failing, ops.delivered), (0, 0, 1));
}

pub(crate) async fn an_alert_given_up_is_dead_and_recorded_once(store: &dyn Store) {
    initialized(store).await;
    store.route_alerts(1, &to(&["ops"]), t(10)).await.unwrap();
    let d = store
        .claim_deliveries(t(10), secs(30), 10, &[])
        .await
        .unwrap();
    let size = store.audit_size().await.unwrap();
    assert!(
        store
            .delivery_failed(d[0].id, "HTTP 500", None, &[gave_up("ops")], t(11))
            .await
            .unwrap()
    );
    assert_eq!(store.audit_size().await.unwrap(), size + 1);
    let last = store.audit_tail(1).await.unwrap().pop().unwrap();
    assert_eq!(last.to_json().unwrap()["message"], "gave up on `ops`");
    assert!(
        store
            .claim_deliveries(t(100_000), secs(30), 10, &[])
            .await
            .unwrap()
            .is_empty(),
        "a dead letter is never claimed"
    );
    assert!(
        !store
            .delivery_failed(d[0].id, "HTTP 500", None, &[gave_up("ops")], t(12))
            .await
            .unwrap(),
        "already dead"
    );
    assert!(
        !store
            .delivery_failed(d[0].id + 1000, "x", Some(t(13)), &[], t(12))
            .await
            .unwrap(),
        "no such delivery"
    );
    assert_eq!(store.audit_size().await.unwrap(), size + 1, "recorded once");
    store.delivery_succeeded(d[0].id, t(13)).await.unwrap();
    let ops = backlog_of(&store.alert_backlog().await.unwrap(), "ops");
    assert_eq!(
        (ops.pending, ops.dead, ops.delivered, ops.failing),
        (0, 1, 0, 0),
        "a dead letter stays dead"
    );
    // The record of the dead letter is an event like any other, routed in its turn.
    let seen = Mutex::new(Vec::new());
    let route = |e: &AuditEvent| {
        seen.lock().unwrap().push(e.seq);
        Some(vec!["pager".to_owned()])
    };
    route_all(store, &route, t(14)).await;
    assert_eq!(*seen.lock().unwrap(), [1, 2, size]);
}

pub(crate) async fn the_backlog_counts_each_channel(store: &dyn Store) {
    assert!(store.alert_backlog().await.unwrap().is_empty());
    initialized(store).await; // seq 0..=2
    store.route_alerts(1, &to(&["a"]), t(10)).await.unwrap();
    route_all(store, &to(&["a", "b"]), t(20)).await;
    // a: seq 0 (t10), 1, 2 (t20); b: seq 1, 2 (t20).
    let claimed = store
        .claim_deliveries(t(20), secs(30), 10, &[])
        .await
        .unwrap();
    let find = |seq: u64, channel: &str| {
        claimed
            .iter()
            .find(|d| d.seq == seq && d.channel == channel)
            .unwrap()
            .id
    };
    store.delivery_succeeded(find(1, "a"), t(21)).await.unwrap();
    store
        .delivery_failed(find(2, "a"), "timeout", Some(t(60)), &[], t(21))
        .await
        .unwrap();
    store
        .delivery_failed(find(1, "b"), "refused", None, &[], t(21))
        .await
        .unwrap();
    store.delivery_succeeded(find(2, "b"), t(21)).await.unwrap();
    let backlog = store.alert_backlog().await.unwrap();
    assert_eq!(
        backlog,
        [
            ChannelBacklog {
                channel: "a".into(),
                pending: 2,
                oldest_pending: Some(t(10)),
                dead: 0,
                delivered: 1,
                failing: 1,
            },
            ChannelBacklog {
                channel: "b".into(),
                pending: 0,
                oldest_pending: None,
                dead: 1,
                delivered: 1,
                failing: 0,
            },
        ]
    );
}

/// A database made before alerts existed (migrations 0001-0003) with events in its log: the
/// upgrade starts the cursor at the end of the log, so history raises no alert.
#[tokio::test]
async fn an_upgraded_sqlite_database_alerts_only_on_new_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bg.db");
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let migrator = sqlx::migrate::Migrator::new(migrations.as_path())
        .await
        .unwrap();
    migrator.run_to(3, &pool).await.unwrap();
    // The log as the previous version wrote it; its tree is built when the new version opens it.
    for seq in 0..4_u64 {
        let encoded = created(&format!("old{seq}")).encode(seq, t(1));
        sqlx::query(
            "INSERT INTO audit_log (seq, type, grant_id, time, bytes) VALUES (?, ?, NULL, ?, ?)",
        )
        .bind(i64::try_from(seq).unwrap())
        .bind(encoded.type_name)
        .bind(t(1).unix_millis())
        .bind(encoded.bytes)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.audit_size().await.unwrap(), 4);
    let seen = Mutex::new(Vec::new());
    let route = |e: &AuditEvent| {
        seen.lock().unwrap().push(e.seq);
        Some(vec!["ops".to_owned()])
    };
    assert_eq!(store.route_alerts(10, &route, t(10)).await.unwrap(), 0);
    store.append(&[created("new")], t(11)).await.unwrap();
    assert_eq!(store.route_alerts(10, &route, t(12)).await.unwrap(), 1);
    assert_eq!(*seen.lock().unwrap(), [4]);
    store.close().await;

    // Opening again migrates nothing more and keeps the cursor where it is.
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.route_alerts(10, &route, t(13)).await.unwrap(), 0);
    assert_eq!(*seen.lock().unwrap(), [4]);
}

/// Two stores on one file (two processes, as far as SQLite can tell) route at once, each several
/// passes at a time: every event gets exactly one routing pass. Each store names a channel of its
/// own, so an event routed twice would show up as two deliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_sqlite_stores_on_one_file_route_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bg.db");
    let a = SqliteStore::open(&path).await.unwrap();
    let b = SqliteStore::open(&path).await.unwrap();
    initialized(&a).await;
    for i in 0..60 {
        a.append(&[created(&format!("e{i}"))], t(5)).await.unwrap();
    }
    let routers: Vec<_> = (0..6)
        .map(|i| {
            let (s, channel) = if i % 2 == 0 {
                (a.clone(), "via-a")
            } else {
                (b.clone(), "via-b")
            };
            tokio::spawn(async move {
                let route = move |_: &AuditEvent| Some(vec![channel.to_owned()]);
                while s.route_alerts(2, &route, t(10)).await.unwrap() > 0 {}
            })
        })
        .collect();
    for r in routers {
        r.await.unwrap();
    }
    let size = a.audit_size().await.unwrap();
    let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .unwrap();
    let routed: Vec<(i64, i64)> =
        sqlx::query_as("SELECT seq, COUNT(*) FROM alert_deliveries GROUP BY seq ORDER BY seq")
            .fetch_all(&mut c)
            .await
            .unwrap();
    assert_eq!(routed.len() as u64, size, "every event routed");
    for (i, (seq, n)) in routed.iter().enumerate() {
        assert_eq!((*seq, *n), (i as i64, 1), "seq {seq} routed {n} times");
    }
}

pub(crate) async fn a_router_that_cannot_route_an_event_yet_stops_before_it(store: &dyn Store) {
    initialized(store).await; // seq 0..=2
    // The caller looked up what it needed for seq 0 and 1 only.
    let route = |e: &AuditEvent| (e.seq < 2).then(|| vec!["ops".to_owned()]);
    assert_eq!(store.route_alerts(10, &route, t(10)).await.unwrap(), 2);
    assert_eq!(
        store.alert_cursor().await.unwrap(),
        2,
        "stopped before seq 2"
    );
    assert_eq!(
        store.route_alerts(10, &route, t(10)).await.unwrap(),
        0,
        "nothing routed, nothing skipped"
    );
    assert_eq!(store.alert_cursor().await.unwrap(), 2);
    route_all(store, &to(&["ops"]), t(11)).await;
    assert_eq!(store.alert_cursor().await.unwrap(), 3);
    let claimed = store
        .claim_deliveries(t(11), secs(30), 10, &[])
        .await
        .unwrap();
    assert_eq!(seqs(&claimed), [0, 1, 2]);
}

pub(crate) async fn claims_skip_the_channels_asked(store: &dyn Store) {
    initialized(store).await; // seq 0..=2
    route_all(store, &to(&["stuck", "ok"]), t(10)).await;
    let claimed = store
        .claim_deliveries(t(10), secs(30), 10, &["stuck".to_owned()])
        .await
        .unwrap();
    assert_eq!(seqs(&claimed), [0, 1, 2]);
    assert!(claimed.iter().all(|d| d.channel == "ok"));
    let rest = store
        .claim_deliveries(t(10), secs(30), 10, &[])
        .await
        .unwrap();
    assert!(rest.iter().all(|d| d.channel == "stuck") && rest.len() == 3);
}

pub(crate) async fn the_next_delivery_due_is_the_earliest_claimable(store: &dyn Store) {
    initialized(store).await;
    assert_eq!(
        store.next_delivery_due().await.unwrap(),
        None,
        "none routed"
    );
    store.route_alerts(2, &to(&["ops"]), t(10)).await.unwrap();
    assert_eq!(store.next_delivery_due().await.unwrap(), Some(t(10)));
    // One leased until t(40): the other is still due at t(10).
    let first = store
        .claim_deliveries(t(10), secs(30), 1, &[])
        .await
        .unwrap();
    assert_eq!(store.next_delivery_due().await.unwrap(), Some(t(10)));
    // Both leased: due again when the first lease ends.
    let second = store
        .claim_deliveries(t(12), secs(30), 1, &[])
        .await
        .unwrap();
    assert_eq!(store.next_delivery_due().await.unwrap(), Some(t(40)));
    // A failure due again at t(20) is earlier than either lease.
    store
        .delivery_failed(first[0].id, "refused", Some(t(20)), &[], t(13))
        .await
        .unwrap();
    assert_eq!(store.next_delivery_due().await.unwrap(), Some(t(20)));
    assert_eq!(
        seqs(
            &store
                .claim_deliveries(t(19), secs(30), 10, &[])
                .await
                .unwrap()
        ),
        [] as [u64; 0],
        "and not claimable before it"
    );
    // Done or dead: nothing left to wake for.
    store.delivery_succeeded(second[0].id, t(14)).await.unwrap();
    store
        .delivery_failed(first[0].id, "gave up", None, &[gave_up("ops")], t(15))
        .await
        .unwrap();
    assert_eq!(store.next_delivery_due().await.unwrap(), None);
}
