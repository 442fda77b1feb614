//! Benchmark: the full request → approve → activate path through the HTTP API on SQLite.
//!
//! Run with `cargo bench -p breakglass-server`. Reported as grants/s and p50/p99 latency, and as
//! ratios to two floors measured in the same run on the same machine: a raw single-row SQLite
//! insert with `synchronous=FULL` in WAL mode (what one durable write costs here) and a
//! `GET /healthz` round trip (what one HTTP request to this server costs). These machines are
//! shared and noisy, so the ratios are the numbers to compare across runs, not the times.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a benchmark fails loudly"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use breakglass_core::SystemClock;
use breakglass_server::{ServeConfig, Server, datadir};
use serde_json::{Value, json};

#[path = "common/mod.rs"]
mod common;
use sqlx::ConnectOptions as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

const ROLE: &str = r#"
id = "bench"
title = "Benchmark role"
owner = "group:admins"
requesters = ["group:sre"]
default_duration = "30m"
max_duration = "1h"
[approval]
quorum = 1
approvers = ["group:leads"]
[target]
kind = "token"
audience = "bench"
scope = ["x"]
"#;

fn iterations() -> usize {
    std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn mean(d: &[Duration]) -> Duration {
    d.iter().sum::<Duration>() / u32::try_from(d.len()).unwrap()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One durable single-row insert per transaction, as the floor for a durable write.
async fn sqlite_floor(dir: &std::path::Path, n: usize) -> Vec<Duration> {
    let mut conn = SqliteConnectOptions::new()
        .filename(dir.join("floor.db"))
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
    let body = vec![7u8; 300];
    let mut out = Vec::with_capacity(n);
    for i in 0..n + 20 {
        let start = Instant::now();
        sqlx::query("INSERT INTO t (id, body) VALUES (?, ?)")
            .bind(i as i64)
            .bind(&body)
            .execute(&mut conn)
            .await
            .unwrap();
        if i >= 20 {
            out.push(start.elapsed());
        }
    }
    out
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> Value {
    let mut req = http.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "{status}: {v}");
    v
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let n = iterations();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let admin = datadir::init(&datadir::Location::Dir(data.clone()), &SystemClock)
        .await
        .unwrap();
    std::fs::write(data.join("roles").join("bench.toml"), ROLE).unwrap();
    let mut config = ServeConfig::new(data.clone(), "127.0.0.1:0".parse().unwrap());
    // One client sending as fast as it can is what a benchmark is: no per-source rate limit.
    config.limits.rate = None;
    let server = Server::start(config, Arc::new(SystemClock)).await.unwrap();
    let base = format!("http://{}", server.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = stop_rx.await;
    }));

    let http = reqwest::Client::new();
    let admin = admin.admin_token.expose().to_owned();
    let post = reqwest::Method::POST;
    // Approving and collecting a credential need a second factor: everyone enrols one.
    common::enroll(&http, &base, &admin).await;
    let (alice, _) = common::person(&http, &base, &admin, "alice", &["sre"], true).await;
    let (bob, _) = common::person(&http, &base, &admin, "bob", &["leads"], true).await;

    // Floor 1: an HTTP round trip to this server.
    let mut hello = Vec::with_capacity(n);
    for i in 0..n + 20 {
        let start = Instant::now();
        let r = http.get(format!("{base}/healthz")).send().await.unwrap();
        assert!(r.status().is_success());
        let _ = r.bytes().await.unwrap();
        if i >= 20 {
            hello.push(start.elapsed());
        }
    }

    // The measured path: request, then approve, which activates and commits the credential.
    let mut path = Vec::with_capacity(n);
    let wall = Instant::now();
    for i in 0..n + 20 {
        let start = Instant::now();
        let g = call(
            &http,
            post.clone(),
            format!("{base}/v1/grants"),
            &alice,
            Some(json!({"role": "bench", "reason": "benchmark"})),
        )
        .await;
        let id = g["id"].as_str().unwrap();
        let g = call(
            &http,
            post.clone(),
            format!("{base}/v1/grants/{id}/approve"),
            &bob,
            Some(json!({})),
        )
        .await;
        assert_eq!(g["state"], "active");
        if i >= 20 {
            path.push(start.elapsed());
        }
    }
    let wall = wall.elapsed();

    // Floor 2: the raw durable insert, measured after the server work on the same disk.
    let floor = sqlite_floor(tmp.path(), n).await;

    let _ = stop_tx.send(());
    serving.await.unwrap().unwrap();

    path.sort();
    hello.sort();
    let mut floor_sorted = floor.clone();
    floor_sorted.sort();
    let grants_per_s = n as f64 / path.iter().sum::<Duration>().as_secs_f64();
    println!(
        "breakglass grant path benchmark ({n} grants, after 20 warm-up; wall {:.1}s)",
        wall.as_secs_f64()
    );
    println!(
        "  request->approve->active: {grants_per_s:.1} grants/s, p50 {:.2} ms, p99 {:.2} ms, mean {:.2} ms",
        ms(percentile(&path, 0.5)),
        ms(percentile(&path, 0.99)),
        ms(mean(&path))
    );
    println!(
        "  floor: raw SQLite insert (WAL, synchronous=FULL): p50 {:.2} ms, mean {:.2} ms",
        ms(percentile(&floor_sorted, 0.5)),
        ms(mean(&floor))
    );
    println!(
        "  floor: GET /healthz round trip: p50 {:.3} ms, mean {:.3} ms",
        ms(percentile(&hello, 0.5)),
        ms(mean(&hello))
    );
    println!(
        "  ratio grant path / raw insert (p50):  {:.1}x",
        percentile(&path, 0.5).as_secs_f64() / percentile(&floor_sorted, 0.5).as_secs_f64()
    );
    println!(
        "  ratio grant path / raw insert (mean): {:.1}x",
        mean(&path).as_secs_f64() / mean(&floor).as_secs_f64()
    );
    println!(
        "  ratio grant path / healthz (p50):     {:.1}x",
        percentile(&path, 0.5).as_secs_f64() / percentile(&hello, 0.5).as_secs_f64()
    );
    println!(
        "  (one grant commits 4 durable transactions: the request; the approval with the activation intent; the activation; the signed audit checkpoint every activation gets, also fsynced to checkpoints.log)"
    );
}
