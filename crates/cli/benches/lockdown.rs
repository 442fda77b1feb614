//! Benchmark: a lockdown of `BENCH_GRANTS` (default 1,000) active grants on a real PostgreSQL
//! target, as a ratio to a raw `DROP ROLE` of as many roles on the same server in the same run.
//!
//! Run with `cargo bench -p breakglass-cli --bench lockdown` (PostgreSQL on 127.0.0.1:5432, as
//! `scripts/test-postgres` starts it; the bench starts it itself if nothing answers).
//!
//! - **Floor**: `BENCH_GRANTS` login roles made beforehand (untimed), each a member of a reader
//!   role, then dropped one `DROP ROLE` at a time on one open connection, with no broker.
//! - **Lockdown**: the release binary on a PostgreSQL store with a `postgres` target holding
//!   `BENCH_GRANTS` active grants (made beforehand by 8 clients, untimed), then one
//!   `POST /v1/lockdown {"all": true}`, timed until it answers: by then every grant has its
//!   `revoking` intent and outcome committed and its login role gone from the target (the revoke
//!   path ends the role's sessions first). Checked after: every grant `revoked`, no role left.
//!
//! These machines are shared and noisy: compare the ratio, not the times.

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

use breakglass_testkit::Broker;
use breakglass_testkit::pg::{Session, TestDb, unique};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_breakglass");

fn role(reader: &str) -> String {
    format!(
        r#"
id = "ledger-read"
title = "Read the ledger"
owner = "group:leads"
requesters = ["group:sre"]
default_duration = "30m"
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

fn post(
    http: &reqwest::blocking::Client,
    base: &str,
    token: &str,
    path: &str,
    body: &Value,
) -> Value {
    let r = http
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .unwrap();
    let status = r.status();
    let v: Value = r.json().unwrap();
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

/// The floor: `count` roles like the provider's, dropped one statement at a time.
fn raw_drops(db: &TestDb, reader: &str, count: usize) -> Duration {
    let mut s = Session::connect(&db.url).unwrap();
    let names: Vec<String> = (0..count)
        .map(|_| format!("bench_raw_{}", unique()))
        .collect();
    for name in &names {
        s.execute(&format!(
            "CREATE ROLE {name} LOGIN PASSWORD 'x' VALID UNTIL 'infinity'; GRANT {reader} TO {name}"
        ))
        .unwrap();
    }
    let start = Instant::now();
    for name in &names {
        s.execute(&format!("DROP ROLE {name}")).unwrap();
    }
    start.elapsed()
}

/// Login roles breakglass made at the target (members of its reader role).
fn bg_roles(target: &TestDb, reader: &str) -> usize {
    let n = target.query_i64(&format!(
        "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
         WHERE m.roleid = '{reader}'::regrole AND r.rolname LIKE 'bg\\_%'"
    ));
    usize::try_from(n).unwrap()
}

fn lockdown(count: usize) -> Duration {
    let store = TestDb::create("bench_store");
    let (target, reader) = target();
    let mut bg = Broker::init_postgres(
        Path::new(BIN),
        &store.url,
        &[("ledger.toml", &role(&reader))],
    );
    bg.set_env(
        "LEDGER_ADMIN_DSN",
        &format!("postgres://postgres@{}/{}", server(), target.name),
    );
    bg.set_env("BREAKGLASS_RATE_LIMIT", "0");
    bg.restart();
    let alice = bg.user("alice", &["sre"]);
    let bob = bg.user("bob", &["leads"]);
    let base = bg.url().to_owned();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let made = Instant::now();
    std::thread::scope(|s| {
        for t in 0..8 {
            let (base, alice, bob) = (base.clone(), alice.clone(), bob.clone());
            s.spawn(move || {
                let http = reqwest::blocking::Client::new();
                for _ in (t..count).step_by(8) {
                    let g = post(
                        &http,
                        &base,
                        &alice,
                        "/v1/grants",
                        &json!({"role": "ledger-read", "reason": "benchmark"}),
                    );
                    let id = g["id"].as_str().unwrap();
                    let g = post(
                        &http,
                        &base,
                        &bob,
                        &format!("/v1/grants/{id}/approve"),
                        &json!({}),
                    );
                    assert_eq!(g["state"], "active", "{g}");
                }
            });
        }
    });
    println!(
        "made {count} active grants in {:.1} s (untimed)",
        made.elapsed().as_secs_f64()
    );
    assert_eq!(
        bg_roles(&target, &reader),
        count,
        "every grant's role exists before"
    );
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    let start = Instant::now();
    let v = post(
        &http,
        &base,
        &bg.admin_token,
        "/v1/lockdown",
        &json!({"all": true, "reason": "benchmark"}),
    );
    let took = start.elapsed();
    assert_eq!(v["revoked"].as_u64(), Some(count as u64), "{v}");
    let revoked = store.query_i64("SELECT count(*) FROM grants WHERE state = 'revoked'");
    assert_eq!(usize::try_from(revoked).unwrap(), count);
    assert_eq!(bg_roles(&target, &reader), 0, "every role is gone");
    drop(bg);
    took
}

fn main() {
    breakglass_testkit::pg::ensure_running();
    let count: usize = std::env::var("BENCH_GRANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    println!("lockdown of {count} active grants on a PostgreSQL target");
    let (floor_db, floor_reader) = target();
    let floor = raw_drops(&floor_db, &floor_reader, count);
    println!(
        "raw DROP ROLE x {count}, one connection: {:.2} s ({:.2} ms each)",
        floor.as_secs_f64(),
        floor.as_secs_f64() * 1000.0 / count as f64
    );
    let l = lockdown(count);
    println!(
        "lockdown --all of {count} active grants: {:.2} s ({:.2} ms each, {:.0} grants/s)",
        l.as_secs_f64(),
        l.as_secs_f64() * 1000.0 / count as f64,
        count as f64 / l.as_secs_f64()
    );
    println!(
        "ratio: the lockdown takes {:.1}x the raw DROP ROLE of as many roles",
        l.as_secs_f64() / floor.as_secs_f64()
    );
    let _ = Session::connect(&format!(
        "{}/postgres",
        breakglass_testkit::pg::server_url()
    ))
    .and_then(|mut s| s.execute(&format!("DROP ROLE IF EXISTS {floor_reader}")));
}
