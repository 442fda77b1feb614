//! Benchmark: the alert outbox, and whether its channels ever slow the grant path.
//!
//! Run with `cargo bench -p breakglass-cli --bench alerts`. It drives the real binary (SQLite data
//! directory, a config file with one webhook channel) and measures:
//!
//! 1. **Outbox throughput**: `BENCH_ALERTS` (default 500) grant requests made by a few clients at
//!    once, each alerting the role's channel, a local `WebhookReceiver` checking the HMAC; the time
//!    from the first request until the receiver has accepted every `grant.requested` alert. The
//!    floor is the same receiver's raw POST rate from plain reqwest clients in the same run. The
//!    dispatcher keeps passing while a backlog drains, at most 4 deliveries in flight per channel
//!    (16 per broker); each delivery costs a claim and a result, both durable writes.
//! 2. **Grant-path latency by sink health**: request → approve latency over `BENCH_ITERATIONS`
//!    (default 200) grants on three brokers whose channel is healthy, dead (a closed port) or
//!    hanging (accepts, never answers; `timeout = "30s"`), interleaved so all three see the same
//!    machine. The design goal is a ratio of about 1: channels never block a grant.
//!
//! These machines are shared and noisy: compare the ratios, not the times.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a benchmark fails loudly"
)]

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use breakglass_testkit::webhook::WebhookReceiver;
use breakglass_testkit::{Broker, poll_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_breakglass");
const HMAC: &str = "bench-hmac-key-7c21e4";
/// Clients making requests (and raw POSTs) at once; the dispatcher also sends 8 at a time.
const CLIENTS: usize = 8;
/// The dispatcher's pass interval and claim batch (server config and `alerting.rs`).
const DISPATCH_INTERVAL: Duration = Duration::from_millis(500);
const CLAIM_BATCH: usize = 32;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn role() -> String {
    r#"
id = "svc-admin"
title = "Alerting role"
owner = "group:sre-leads"
requesters = ["group:sre"]
default_duration = "30m"
max_duration = "1h"
alerts = ["oncall"]
[approval]
quorum = 1
approvers = ["group:sre-leads"]
[target]
kind = "token"
audience = "svc"
scope = ["admin"]
"#
    .to_owned()
}

/// A broker on a fresh data directory whose one channel, `oncall`, is the webhook at `url`.
fn broker(url: &str, extra: &str) -> (Broker, String, String) {
    let config = format!(
        "[channels.oncall]\nkind = \"webhook\"\nformat = \"generic\"\nurl = \"{url}\"\nhmac_key = {{ env = \"BG_BENCH_HMAC\" }}\n{extra}"
    );
    let mut bg = Broker::init(Path::new(BIN), &[("svc.toml", &role())]);
    let path = bg.data_dir().join("breakglass.toml");
    std::fs::write(&path, config).unwrap();
    bg.set_env("BREAKGLASS_CONFIG", path.to_str().unwrap());
    bg.set_env("BG_BENCH_HMAC", HMAC);
    // Many clients from one address as fast as they can: the per-source rate limit is off.
    bg.set_env("BREAKGLASS_RATE_LIMIT", "0");
    bg.restart();
    let alice = bg.user("alice", &["sre"]);
    let bob = bg.user("bob", &["sre-leads"]);
    (bg, alice, bob)
}

struct Api {
    http: reqwest::blocking::Client,
    base: String,
}

impl Api {
    fn new(base: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            http: reqwest::blocking::Client::new(),
            base: base.to_owned(),
        }
    }

    fn post(&self, token: &str, path: &str, body: &Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .unwrap();
        let status = r.status();
        let v: Value = r.json().unwrap();
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    fn request(&self, alice: &str) -> String {
        let g = self.post(
            alice,
            "/v1/grants",
            &json!({"role": "svc-admin", "reason": "benchmark"}),
        );
        g["id"].as_str().unwrap().to_owned()
    }

    /// Request and approve: the grant is active when this returns.
    fn activate(&self, alice: &str, bob: &str) {
        let id = self.request(alice);
        let g = self.post(bob, &format!("/v1/grants/{id}/approve"), &json!({}));
        assert_eq!(g["state"], "active", "{g}");
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Prints one latency line; returns (p50, p99).
fn summary(name: &str, mut d: Vec<Duration>) -> (Duration, Duration) {
    d.sort();
    let (p50, p99) = (percentile(&d, 0.5), percentile(&d, 0.99));
    println!(
        "{name:<52} n={:<5} p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms",
        d.len(),
        ms(p50),
        ms(p99),
        ms(*d.last().unwrap()),
    );
    (p50, p99)
}

/// Distinct `grant.requested` alerts the receiver accepted, and how many acceptances that took.
fn requested_alerts(hook: &WebhookReceiver) -> (usize, usize) {
    let got: Vec<String> = hook
        .delivered()
        .into_iter()
        .filter(|r| r.body["event"] == "grant.requested")
        .map(|r| {
            assert!(r.signature_ok, "every alert is signed: {r:?}");
            r.alert_id.unwrap()
        })
        .collect();
    let distinct: HashSet<&String> = got.iter().collect();
    (distinct.len(), got.len())
}

/// The floor: `n` POSTs of an alert-sized JSON body to `hook` from `CLIENTS` plain clients.
fn raw_posts(hook: &WebhookReceiver, n: usize) -> Duration {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = hook.url("/raw");
    let body = json!({
        "id": "breakglass/bench:1:oncall", "event": "bench.raw", "seq": 1, "severity": "info",
        "summary": "breakglass: alice asks for svc-admin (benchmark)",
        "time": "2026-01-01T00:00:00.000Z",
        "fields": {"grant": "00000000-0000-0000-0000-000000000000", "role": "svc-admin",
                   "requester": "alice", "reason": "benchmark", "state": "pending"}
    })
    .to_string();
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..CLIENTS {
            let (url, body) = (url.clone(), body.clone());
            s.spawn(move || {
                let http = reqwest::blocking::Client::new();
                for _ in (t..n).step_by(CLIENTS) {
                    let r = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .unwrap();
                    assert!(r.status().is_success());
                }
            });
        }
    });
    start.elapsed()
}

fn throughput(n: usize) {
    let hook = WebhookReceiver::start(Some(HMAC.as_bytes()));
    // Warm the receiver (and this process's client setup) before either measurement.
    raw_posts(&hook, 100);
    let raw = raw_posts(&hook, n);
    let raw_rate = n as f64 / raw.as_secs_f64();

    let (mut bg, alice, _bob) = broker(&hook.url("/alerts"), "");
    let base = bg.url().to_owned();
    // The role's load at start alerts too; let that drain so the pass cadence is steady.
    assert!(
        poll_until(Duration::from_secs(60), || !hook.delivered().is_empty()),
        "{}",
        bg.logs()
    );
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..CLIENTS {
            let (base, alice) = (base.clone(), alice.clone());
            s.spawn(move || {
                let api = Api::new(&base);
                for _ in (t..n).step_by(CLIENTS) {
                    api.request(&alice);
                }
            });
        }
    });
    let requested = start.elapsed();
    let deadline = Duration::from_secs(60) + DISPATCH_INTERVAL * (4 * n / CLAIM_BATCH) as u32;
    let mut last = (0, 0);
    while start.elapsed() < deadline {
        last = requested_alerts(&hook);
        if last.0 >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = start.elapsed();
    assert_eq!(
        last.0,
        n,
        "not every request was alerted; logs:\n{}",
        bg.logs()
    );
    bg.kill9();

    let rate = n as f64 / took.as_secs_f64();
    let raw_label = format!("raw POSTs to the receiver ({CLIENTS} clients)");
    println!(
        "{raw_label:<52} n={n:<5} {:>7.2} s   {raw_rate:>8.0} POSTs/s",
        raw.as_secs_f64()
    );
    let made = format!("grant requests made ({CLIENTS} clients)");
    println!(
        "{made:<52} n={n:<5} {:>7.2} s   {:>8.0} requests/s",
        requested.as_secs_f64(),
        n as f64 / requested.as_secs_f64()
    );
    println!(
        "{:<52} n={n:<5} {:>7.2} s   {rate:>8.1} alerts/s   ({} accepted, {} repeats)",
        "first request -> every requested-alert delivered",
        took.as_secs_f64(),
        last.1,
        last.1 - last.0
    );
    println!(
        "ratio: broker-delivered alerts/s / raw POSTs/s = {:.4} ({:.0}x slower)",
        rate / raw_rate,
        raw_rate / rate
    );
}

struct World {
    name: &'static str,
    bg: Broker,
    alice: String,
    bob: String,
}

fn latency(m: usize) {
    let healthy = WebhookReceiver::start(Some(HMAC.as_bytes()));
    let hanging = WebhookReceiver::start(Some(HMAC.as_bytes()));
    hanging.set_hang(true);
    let closed = breakglass_testkit::sinks::closed_addr();
    let world = |name, url: String, extra| {
        let (bg, alice, bob) = broker(&url, extra);
        World {
            name,
            bg,
            alice,
            bob,
        }
    };
    let worlds = [
        world("healthy receiver", healthy.url("/a"), ""),
        world("dead sink (closed port)", format!("http://{closed}/a"), ""),
        world(
            "hanging receiver (timeout 30s)",
            hanging.url("/a"),
            "timeout = \"30s\"\n",
        ),
    ];
    // Each sink is in its state before timing starts: delivering, failing, or stuck.
    assert!(poll_until(Duration::from_secs(60), || !healthy
        .delivered()
        .is_empty()));
    assert!(poll_until(Duration::from_secs(60), || worlds[1]
        .bg
        .logs()
        .contains("alert delivery failed; will retry")));
    assert!(poll_until(Duration::from_secs(60), || hanging.arrivals() > 0));

    let apis: Vec<Api> = worlds.iter().map(|w| Api::new(w.bg.url())).collect();
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(m); worlds.len()];
    // Interleaved, so drift in the machine's load falls on all three alike.
    for i in 0..m + 10 {
        for ((w, api), out) in worlds.iter().zip(&apis).zip(&mut times) {
            let start = Instant::now();
            api.activate(&w.alice, &w.bob);
            if i >= 10 {
                out.push(start.elapsed());
            }
        }
    }
    let mut p = Vec::new();
    for (w, t) in worlds.iter().zip(times) {
        p.push(summary(&format!("request -> approve, {}", w.name), t));
    }
    let (h50, h99) = p[0];
    for (w, (p50, p99)) in worlds.iter().zip(&p).skip(1) {
        println!(
            "ratio: {} / healthy = {:.2} at p50 ({:.2} at p99)",
            w.name,
            p50.as_secs_f64() / h50.as_secs_f64(),
            p99.as_secs_f64() / h99.as_secs_f64()
        );
    }
    println!(
        "after timing: the healthy receiver had accepted {} alerts; the hanging one holds {} request(s) open",
        healthy.delivered().len(),
        hanging.arrivals()
    );
    drop(worlds);
}

fn main() {
    let n = env_usize("BENCH_ALERTS", 500);
    let m = env_usize("BENCH_ITERATIONS", 200);
    println!("breakglass alerts ({n} alerts for throughput, {m} grants per sink for latency)");
    throughput(n);
    latency(m);
}
