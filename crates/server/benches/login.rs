//! Benchmark: `POST /v1/login` end to end (HTTP, throttle check, Argon2id verify on the blocking
//! pool, session token with its audit event), against a raw Argon2id hash with the same OWASP
//! parameters called straight on the argon2 crate: what any password check must cost. Also the
//! `GET /healthz` round trip, for what one HTTP request to this server costs.
//!
//! Run with `cargo bench -p breakglass-server --bench login`. Sequential logins and logins from
//! two concurrent clients (this machine has 2 cores). These machines are shared and noisy: the
//! ratios are the numbers to compare across runs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a benchmark fails loudly"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, Version};
use breakglass_core::SystemClock;
use breakglass_server::{ServeConfig, Server, datadir};
use serde_json::json;

#[path = "common/mod.rs"]
mod common;

fn iterations() -> usize {
    std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[idx.min(v.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(name: &str, v: &mut [Duration], wall: Duration, floor_p50: Duration) {
    let p50 = pct(v, 0.5);
    let p99 = pct(v, 0.99);
    println!(
        "{name:<34} {:>8.1}/s  p50 {:>7.2} ms  p99 {:>7.2} ms  p50 = {:.2}x raw Argon2id",
        v.len() as f64 / wall.as_secs_f64(),
        ms(p50),
        ms(p99),
        p50.as_secs_f64() / floor_p50.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let n = iterations();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let init = datadir::init(&datadir::Location::Dir(data.clone()), &SystemClock)
        .await
        .unwrap();
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
    let admin = init.admin_token.expose().to_owned();
    common::enroll(&http, &base, &admin).await;
    // Password-only people: a TOTP code works once per 30 s step, which would bound the loop.
    let (_, pw_a) = common::person(&http, &base, &admin, "alice", &["sre"], false).await;
    let (_, pw_b) = common::person(&http, &base, &admin, "bob", &["sre", "x"], false).await;

    // Floor: a raw Argon2id hash, OWASP parameters (m=19456 KiB, t=2, p=1).
    let raw = Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(19_456, 2, 1, None).unwrap(),
    );
    let mut floor = Vec::with_capacity(n);
    let wall = Instant::now();
    for _ in 0..n {
        let start = Instant::now();
        let mut out = [0u8; 32];
        raw.hash_password_into(b"correct-horse-battery-staple", &[7u8; 16], &mut out)
            .unwrap();
        std::hint::black_box(out);
        floor.push(start.elapsed());
    }
    let floor_wall = wall.elapsed();
    let floor_p50 = pct(&mut floor, 0.5);

    let mut hello = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let r = http.get(format!("{base}/healthz")).send().await.unwrap();
        assert!(r.status().is_success());
        let _ = r.bytes().await.unwrap();
        hello.push(start.elapsed());
    }

    let login = |user: &'static str, password: String| {
        let http = http.clone();
        let url = format!("{base}/v1/login");
        async move {
            let start = Instant::now();
            let v = common::post(
                &http,
                url,
                None,
                json!({ "user": user, "password": password }),
            )
            .await;
            assert!(v["token"].is_string());
            start.elapsed()
        }
    };

    let mut seq = Vec::with_capacity(n);
    let wall = Instant::now();
    for _ in 0..n {
        seq.push(login("alice", pw_a.clone()).await);
    }
    let seq_wall = wall.elapsed();

    let mut par = Vec::with_capacity(n);
    let wall = Instant::now();
    for _ in 0..n / 2 {
        let (a, b) = tokio::join!(login("alice", pw_a.clone()), login("bob", pw_b.clone()));
        par.extend([a, b]);
    }
    let par_wall = wall.elapsed();

    println!("login benchmark, {n} logins each, 2 cores");
    report(
        "raw Argon2id hash (floor)",
        &mut floor,
        floor_wall,
        floor_p50,
    );
    let mut h = hello.clone();
    let hello_p50 = pct(&mut h, 0.5);
    println!(
        "{:<34} p50 {:>7.3} ms (HTTP floor)",
        "GET /healthz",
        ms(hello_p50)
    );
    report("POST /v1/login, one client", &mut seq, seq_wall, floor_p50);
    report("POST /v1/login, two clients", &mut par, par_wall, floor_p50);
    println!(
        "throughput: one client {:.2}x the raw hash rate, two clients {:.2}x",
        (n as f64 / seq_wall.as_secs_f64()) / (n as f64 / floor_wall.as_secs_f64()),
        (par.len() as f64 / par_wall.as_secs_f64()) / (n as f64 / floor_wall.as_secs_f64())
    );
    let _ = stop_tx.send(());
    serving.await.unwrap().unwrap();
}
