//! Benchmark: the tamper-evident audit log.
//!
//! Run with `cargo bench -p breakglass-server --bench audit`. Reports
//! 1. audit appends/s through the store (group commit) with 1, 8 and 64 concurrent writers, as
//!    ratios to raw SQLite `synchronous=FULL` inserts measured in the same run: one row per
//!    transaction, and 100 rows per transaction;
//! 2. `audit verify` over `BENCH_EVENTS` events (default 1,000,000) as a ratio to hashing the same
//!    bytes with raw SHA-256.
//!
//! The machines are shared and noisy: compare the ratios, not the times.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a benchmark fails loudly"
)]

use std::time::{Duration, Instant};

use breakglass_core::{Actor, EventDraft, EventKind, SystemClock, Timestamp};
use breakglass_server::datadir;
use breakglass_server::verify::{VerifyOptions, verify};
use breakglass_store::{SqliteStore, Store};
use sha2::{Digest, Sha256};
use sqlx::ConnectOptions as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn event(i: usize) -> EventDraft {
    EventDraft::new(
        Actor::System("bench"),
        None,
        EventKind::AuthDenied {
            action: "grant.approve".into(),
            code: "self_approval".into(),
            message: format!("benchmark event {i} with a realistic amount of text in it"),
        },
    )
}

async fn raw_floor(dir: &std::path::Path, rows: usize, per_tx: usize) -> f64 {
    let mut conn = SqliteConnectOptions::new()
        .filename(dir.join(format!("floor-{per_tx}.db")))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .connect()
        .await
        .unwrap();
    sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        .execute(&mut conn)
        .await
        .unwrap();
    let body = vec![7u8; 200];
    let start = Instant::now();
    let mut id = 0i64;
    for _ in 0..rows / per_tx {
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        for _ in 0..per_tx {
            sqlx::query("INSERT INTO t (id, body) VALUES (?, ?)")
                .bind(id)
                .bind(&body)
                .execute(&mut conn)
                .await
                .unwrap();
            id += 1;
        }
        sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
    }
    rows as f64 / start.elapsed().as_secs_f64()
}

async fn appends(store: &SqliteStore, writers: usize, total: usize) -> (f64, u64) {
    let commits0 = store.commits();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let s = store.clone();
        let n = total / writers;
        tasks.push(tokio::spawn(async move {
            for i in 0..n {
                s.append(
                    &[event(w * n + i)],
                    Timestamp::from_unix_millis(1_800_000_000_000),
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = (total / writers) * writers;
    (
        n as f64 / start.elapsed().as_secs_f64(),
        store.commits() - commits0,
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let appends_n = env_or("BENCH_APPENDS", 2000);
    let verify_n = env_or("BENCH_EVENTS", 1_000_000);

    // --- appends with group commit ---
    let store = SqliteStore::open(&tmp.path().join("appends.db"))
        .await
        .unwrap();
    let single = raw_floor(tmp.path(), appends_n, 1).await;
    let batch100 = raw_floor(tmp.path(), appends_n * 10, 100).await;
    println!("audit appends ({appends_n} per run; floors measured in the same run)");
    println!("  floor: raw SQLite insert, 1 row per transaction:    {single:>9.0} rows/s");
    println!("  floor: raw SQLite insert, 100 rows per transaction: {batch100:>9.0} rows/s");
    for writers in [1, 8, 64] {
        let (rate, commits) = appends(&store, writers, appends_n).await;
        println!(
            "  {writers:>2} writers: {rate:>9.0} appends/s ({commits} commits, {:.1} appends per commit) = {:.2}x the 1-row floor, {:.3}x the 100-row floor",
            appends_n as f64 / commits.max(1) as f64,
            rate / single,
            rate / batch100
        );
    }
    store.close().await;

    // --- verify a large log ---
    let data = tmp.path().join("data");
    datadir::init(&datadir::Location::Dir(data.clone()), &SystemClock)
        .await
        .unwrap();
    let store = SqliteStore::open(&data.join(datadir::DB_FILE))
        .await
        .unwrap();
    let fill = Instant::now();
    let chunk: Vec<EventDraft> = (0..1000).map(event).collect();
    let mut written = store.audit_size().await.unwrap() as usize;
    while written < verify_n {
        let n = chunk.len().min(verify_n - written);
        store
            .append(&chunk[..n], Timestamp::from_unix_millis(1_800_000_000_000))
            .await
            .unwrap();
        written += n;
    }
    store.close().await;
    println!(
        "verify ({written} events; writing them took {:.1}s)",
        fill.elapsed().as_secs_f64()
    );

    let start = Instant::now();
    let report = verify(&VerifyOptions {
        data_dir: Some(data.clone()),
        ..VerifyOptions::default()
    })
    .await
    .unwrap();
    let verify_time = start.elapsed();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.events as usize, written);

    // floor: SHA-256 over exactly the stored bytes, read the same way
    let reader = SqliteStore::open_read_only(&data.join(datadir::DB_FILE))
        .await
        .unwrap();
    struct Blobs(Vec<Vec<u8>>);
    impl breakglass_store::AuditVisitor for Blobs {
        fn event(&mut self, _: u64, bytes: &[u8], _: Option<breakglass_audit::Hash>) {
            self.0.push(bytes.to_vec());
        }
    }
    let mut blobs = Blobs(Vec::with_capacity(written));
    reader.audit_snapshot(&mut blobs).await.unwrap();
    let blobs = blobs.0;
    let bytes_total: usize = blobs.iter().map(Vec::len).sum();
    reader.close().await;
    let start = Instant::now();
    let mut acc = [0u8; 32];
    for b in &blobs {
        let h: [u8; 32] = Sha256::digest(b).into();
        acc[0] ^= h[0];
    }
    let sha = start.elapsed().max(Duration::from_micros(1));
    println!(
        "  audit verify: {:.2}s ({:.0} events/s)",
        verify_time.as_secs_f64(),
        written as f64 / verify_time.as_secs_f64()
    );
    println!(
        "  floor: raw SHA-256 of the same {:.1} MB: {:.3}s (checksum {})",
        bytes_total as f64 / 1e6,
        sha.as_secs_f64(),
        acc[0]
    );
    println!(
        "  ratio audit verify / raw SHA-256: {:.1}x",
        verify_time.as_secs_f64() / sha.as_secs_f64()
    );
}
