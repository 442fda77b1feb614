//! Benchmark: breakglass against a real PostgreSQL, as store and as target.
//!
//! Run with `cargo bench -p breakglass-cli --bench postgres` (PostgreSQL on 127.0.0.1:5432, as
//! `scripts/test-postgres` starts it; the bench starts it itself if nothing answers). It measures:
//!
//! 1. **Grant → revoke cycles** through the real binary on a PostgreSQL store with a `postgres`
//!    target (request, approve: activation creates the login role; revoke: ends its sessions and
//!    drops it), as a ratio to the floor: the raw `CREATE ROLE … VALID UNTIL; GRANT; DROP ROLE`
//!    cycle on one connection with no broker, measured in the same run.
//! 2. **Mass expiry**: `BENCH_GRANTS` (default 1000) active grants, all past their end at once,
//!    revoked at the target by one replica and, on a second set, by two replicas started together;
//!    the time from launch until every grant is `expired` and every role is gone.
//!
//! These machines are shared and noisy: compare the ratios, not the times.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a benchmark fails loudly"
)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use breakglass_testkit::pg::{Session, TestDb, unique};
use breakglass_testkit::{Broker, poll_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_breakglass");

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn role(reader: &str, duration: &str) -> String {
    format!(
        r#"
id = "ledger-read"
title = "Read the ledger"
owner = "group:leads"
requesters = ["group:sre"]
default_duration = "{duration}"
max_duration = "1h"
[approval]
quorum = 1
approvers = ["group:leads"]
[target]
kind = "postgres"
dsn_env = "LEDGER_ADMIN_DSN"
mode = "login"
grant = ["{reader}"]
"#
    )
}

fn server() -> SocketAddr {
    let url = breakglass_testkit::pg::server_url();
    url.rsplit('@').next().unwrap().parse().unwrap()
}

/// A target database with a table and a read-only group role.
fn target() -> (TestDb, String) {
    let db = TestDb::create("bench_target");
    let reader = format!("bench_reader_{}", unique());
    db.execute(&format!(
        "CREATE TABLE ledger (id int PRIMARY KEY, amount bigint);
         CREATE ROLE {reader} NOLOGIN;
         GRANT SELECT ON ledger TO {reader};"
    ));
    (db, reader)
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

    /// Request and approve: the grant is active (its login role exists) when this returns.
    fn activate(&self, alice: &str, bob: &str) -> String {
        let g = self.post(
            alice,
            "/v1/grants",
            &json!({"role": "ledger-read", "reason": "benchmark"}),
        );
        let id = g["id"].as_str().unwrap().to_owned();
        let g = self.post(bob, &format!("/v1/grants/{id}/approve"), &json!({}));
        assert_eq!(g["state"], "active", "{g}");
        id
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(name: &str, mut d: Vec<Duration>) -> Duration {
    d.sort();
    let p50 = percentile(&d, 0.5);
    let total: Duration = d.iter().sum();
    println!(
        "{name:<34} n={:<5} {:>8.1}/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
        d.len(),
        d.len() as f64 / total.as_secs_f64(),
        ms(p50),
        ms(percentile(&d, 0.99)),
    );
    p50
}

/// The floor: what the same privilege costs done by hand on one open connection.
fn raw_cycles(db: &TestDb, reader: &str, n: usize) -> Vec<Duration> {
    let mut s = Session::connect(&db.url).unwrap();
    // A SCRAM verifier computed once by the server, so the floor, like the provider, sends a
    // pre-hashed password and the server hashes nothing.
    let probe = format!("bench_probe_{}", unique());
    s.execute(&format!("CREATE ROLE {probe} PASSWORD 'x'"))
        .unwrap();
    let verifier = s
        .query_strings(&format!(
            "SELECT rolpassword::text FROM pg_authid WHERE rolname = '{probe}'"
        ))
        .unwrap()
        .remove(0);
    s.execute(&format!("DROP ROLE {probe}")).unwrap();
    let mut out = Vec::with_capacity(n);
    for i in 0..n + 10 {
        let name = format!("bench_raw_{}", unique());
        let start = Instant::now();
        s.execute(&format!(
            "CREATE ROLE {name} LOGIN PASSWORD '{verifier}' VALID UNTIL 'infinity'"
        ))
        .unwrap();
        s.execute(&format!("GRANT {reader} TO {name}")).unwrap();
        s.execute(&format!("DROP ROLE {name}")).unwrap();
        if i >= 10 {
            out.push(start.elapsed());
        }
    }
    out
}

fn broker(
    store: &TestDb,
    target: &TestDb,
    reader: &str,
    duration: &str,
) -> (Broker, String, String) {
    let mut bg = Broker::init_postgres(
        Path::new(BIN),
        &store.url,
        &[("ledger.toml", &role(reader, duration))],
    );
    bg.set_env(
        "LEDGER_ADMIN_DSN",
        &format!("postgres://postgres@{}/{}", server(), target.name),
    );
    // Many clients from one address as fast as they can: the per-source rate limit is off
    // (replicas copy the environment).
    bg.set_env("BREAKGLASS_RATE_LIMIT", "0");
    bg.restart();
    let alice = bg.user("alice", &["sre"]);
    let bob = bg.user("bob", &["leads"]);
    (bg, alice, bob)
}

fn cycles(n: usize) -> Vec<Duration> {
    let store = TestDb::create("bench_store");
    let (db, reader) = target();
    let (bg, alice, bob) = broker(&store, &db, &reader, "30m");
    let api = Api::new(bg.url());
    let mut out = Vec::with_capacity(n);
    for i in 0..n + 10 {
        let start = Instant::now();
        let id = api.activate(&alice, &bob);
        let g = api.post(
            &bob,
            &format!("/v1/grants/{id}/revoke"),
            &json!({"reason": "benchmark"}),
        );
        assert_eq!(g["state"], "revoked", "{g}");
        if i >= 10 {
            out.push(start.elapsed());
        }
    }
    out
}

/// `count` active grants on a fresh store, made by `threads` clients at once; then the broker
/// is killed so that nothing expires them until the measurement starts.
struct MassSet {
    store: TestDb,
    target: TestDb,
    reader: String,
    bg: Broker,
}

fn mass_set(count: usize, duration: &str) -> MassSet {
    let store = TestDb::create("bench_store");
    let (target, reader) = target();
    let (mut bg, alice, bob) = broker(&store, &target, &reader, duration);
    let base = bg.url().to_owned();
    std::thread::scope(|s| {
        for t in 0..8 {
            let (base, alice, bob) = (base.clone(), alice.clone(), bob.clone());
            s.spawn(move || {
                let api = Api::new(&base);
                for _ in (t..count).step_by(8) {
                    api.activate(&alice, &bob);
                }
            });
        }
    });
    let active = store.query_i64("SELECT count(*) FROM grants WHERE state = 'active'");
    assert_eq!(
        usize::try_from(active).unwrap(),
        count,
        "some grants ended while the set was being made; raise BENCH_DURATION"
    );
    bg.kill9();
    MassSet {
        store,
        target,
        reader,
        bg,
    }
}

fn now_past_every_end(store: &TestDb) -> bool {
    store.query_i64(
        "SELECT count(*) FROM grants WHERE expires_at > (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
    ) == 0
}

/// Login roles breakglass made at the set's target (members of its reader role).
fn bg_roles(set: &MassSet) -> usize {
    let n = set.target.query_i64(&format!(
        "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
         WHERE m.roleid = '{}'::regrole AND r.rolname LIKE 'bg\\_%'",
        set.reader
    ));
    usize::try_from(n).unwrap()
}

/// Launches `replicas` brokers on the set's store at the same moment and times until every
/// grant is `expired` and no login role is left at the target.
fn expire_all(set: &mut MassSet, replicas: usize, count: usize) -> Duration {
    let mut others: Vec<Broker> = (1..replicas).map(|_| set.bg.replica()).collect();
    assert_eq!(bg_roles(set), count, "every grant's role exists before");
    let start = Instant::now();
    set.bg.launch();
    for b in &mut others {
        b.launch();
    }
    let done = poll_until(Duration::from_secs(1800), || {
        usize::try_from(
            set.store
                .query_i64("SELECT count(*) FROM grants WHERE state = 'expired'"),
        )
        .unwrap()
            == count
    });
    let took = start.elapsed();
    assert!(done, "not all grants expired");
    let events = set
        .store
        .query_i64("SELECT count(*) FROM audit_log WHERE type = 'grant.expired'");
    assert_eq!(usize::try_from(events).unwrap(), count, "each expired once");
    assert_eq!(
        bg_roles(set),
        0,
        "every role is gone once its grant expired"
    );
    set.bg.wait_ready();
    for b in &mut others {
        b.wait_ready();
    }
    took
}

fn main() {
    breakglass_testkit::pg::ensure_running();
    let n = env_usize("BENCH_ITERATIONS", 200);
    let count = env_usize("BENCH_GRANTS", 1000);
    let duration = std::env::var("BENCH_DURATION").unwrap_or_else(|_| "3m".into());
    println!(
        "breakglass against PostgreSQL ({} cycles, {count} grants for mass expiry)",
        n
    );

    let (floor_db, floor_reader) = target();
    let floor = summary(
        "raw CREATE ROLE; GRANT; DROP ROLE",
        raw_cycles(&floor_db, &floor_reader, n),
    );
    let cycle = summary("grant -> revoke through breakglass", cycles(n));
    println!(
        "ratio: a broker grant -> revoke cycle costs {:.1}x the raw cycle (p50)",
        cycle.as_secs_f64() / floor.as_secs_f64()
    );

    // Two sets made side by side, so one wait covers both.
    let started = Instant::now();
    let mut one = mass_set(count, &duration);
    let mut two = mass_set(count, &duration);
    println!(
        "made {} active grants in {:.1} s (two sets)",
        2 * count,
        started.elapsed().as_secs_f64()
    );
    assert!(
        poll_until(Duration::from_secs(3600), || now_past_every_end(&one.store)
            && now_past_every_end(&two.store)),
        "grants never reached their end"
    );
    let t1 = expire_all(&mut one, 1, count);
    let t2 = expire_all(&mut two, 2, count);
    for (replicas, t) in [(1, t1), (2, t2)] {
        println!(
            "expire {count} grants due at once, {replicas} replica(s): {:.2} s ({:.0} grants/s, {:.1} raw cycles' worth each)",
            t.as_secs_f64(),
            count as f64 / t.as_secs_f64(),
            t.as_secs_f64() / count as f64 / floor.as_secs_f64()
        );
    }
    println!(
        "two replicas take {:.2}x the time of one",
        t2.as_secs_f64() / t1.as_secs_f64()
    );
    drop((one.target, two.target));
}
