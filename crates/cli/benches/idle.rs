//! Benchmark: what an idle broker costs while it waits for an emergency, and what sign-ins leave
//! behind.
//!
//! Run with `cargo bench -p breakglass-cli --bench idle`. It drives the real binary
//! (`target/release/breakglass serve`, SQLite data directory, three roles, no alert channels,
//! default intervals) as a child process and reads the child's `/proc` entries:
//!
//! 1. **Idle CPU**: `utime + stime` from `/proc/<pid>/stat` before and after `BENCH_IDLE_SECS`
//!    (default 60) seconds in which nothing happens, as a share of one core over the same wall
//!    time. Target: under 0.05%. `/proc` counts in clock ticks (10 ms here), so over 60 s one
//!    tick is 0.017% of a core: the figure is exact to about that.
//! 2. **Memory after sign-ins**: `VmRSS` from `/proc/<pid>/status` once the broker serves (before
//!    any sign-in), after the idle minute, and after `BENCH_SIGNINS` (default 100) password
//!    sign-ins from 4 concurrent clients, as a ratio to the RSS at start, measured in the same run.
//!    Target: at most 1.5x.
//!
//! `BENCH_BIN=path` runs another build of the binary the same way (an earlier commit, to compare).
//!
//! The machine is shared and noisy: other processes do not change these figures much (they are
//! the broker's own CPU time and pages), but a busy machine can stretch the sign-ins.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a benchmark fails loudly"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use breakglass_testkit::Broker;
use serde_json::{Value, json};

/// The binary under test: this build's, or `BENCH_BIN` (for example an earlier build, to compare).
fn bin() -> String {
    std::env::var("BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_breakglass").to_owned())
}
/// Clients signing in at once.
const CLIENTS: usize = 4;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A role on the token provider; three of them, like a small installation.
fn role(id: &str) -> String {
    format!(
        r#"
id = "{id}"
title = "Idle benchmark role {id}"
owner = "group:sre-leads"
requesters = ["group:sre"]
default_duration = "30m"
max_duration = "1h"
[approval]
quorum = 1
approvers = ["group:sre-leads"]
[target]
kind = "token"
audience = "{id}"
scope = ["admin"]
"#
    )
}

/// The process's CPU time so far (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the line (utime, stime) are the 12th and 13th after the name.
    let utime: u64 = fields[11].parse().unwrap();
    let stime: u64 = fields[12].parse().unwrap();
    utime + stime
}

/// CPU time of the process's threads so far, in nanoseconds: the first field of each
/// `/proc/<pid>/task/<tid>/schedstat`. Finer than the ticks of `stat`, but a thread that exits
/// takes its time with it (tokio's idle blocking threads exit after 10 s), so it can only undercount.
fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux unless built otherwise).
fn ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The process's resident set, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn post(http: &reqwest::blocking::Client, url: &str, body: &Value) -> Value {
    let r = http.post(url).json(body).send().unwrap();
    let status = r.status();
    let v: Value = r.json().unwrap();
    assert!(status.is_success(), "{url}: {status} {v}");
    v
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let idle = Duration::from_secs(env_usize("BENCH_IDLE_SECS", 60) as u64);
    let signins = env_usize("BENCH_SIGNINS", 100);
    let roles: Vec<(String, String)> = ["db", "k8s", "cloud"]
        .iter()
        .map(|id| (format!("{id}.toml"), role(id)))
        .collect();
    let roles: Vec<(&str, &str)> = roles
        .iter()
        .map(|(f, t)| (f.as_str(), t.as_str()))
        .collect();
    let bin = bin();
    let bg = Broker::start(Path::new(&bin), &roles);
    let pid = bg.pid().unwrap();
    let rss_start = rss_kib(pid);

    // 1. Idle: nothing happens for a minute.
    let ticks = ticks_per_sec();
    let (cpu0, ns0, t0) = (cpu_ticks(pid), cpu_ns(pid), Instant::now());
    std::thread::sleep(idle);
    let (cpu1, ns1, wall) = (cpu_ticks(pid), cpu_ns(pid), t0.elapsed());
    let rss_idle = rss_kib(pid);
    let cpu_secs = (cpu1 - cpu0) as f64 / ticks;
    let share = cpu_secs / wall.as_secs_f64();

    // 2. Sign-ins: a person without an authenticator signs in with a password, again and again.
    let added = bg.cli_json(
        &bg.admin_token,
        &["users", "add", "carol", "--group", "sre"],
    );
    let initial = added["initial_password"].as_str().unwrap().to_owned();
    let password = "correct-horse-battery-staple-idle";
    let http = reqwest::blocking::Client::new();
    let login = format!("{}/v1/login", bg.url());
    post(
        &http,
        &login,
        &json!({"user": "carol", "password": initial, "new_password": password}),
    );
    let t1 = Instant::now();
    std::thread::scope(|s| {
        for c in 0..CLIENTS {
            let login = login.clone();
            s.spawn(move || {
                let http = reqwest::blocking::Client::new();
                for _ in (c..signins).step_by(CLIENTS) {
                    let v = post(
                        &http,
                        &login,
                        &json!({"user": "carol", "password": password}),
                    );
                    assert!(v["token"].is_string(), "{v}");
                }
            });
        }
    });
    let signin_wall = t1.elapsed();
    let rss_after = rss_kib(pid);
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count();

    println!("idle broker `{bin}`: SQLite, 3 roles, no channels, default intervals");
    println!(
        "  idle CPU over {:.1} s:   {} ticks ({:.0} ms) = {:.3}% of one core (target < 0.05%)",
        wall.as_secs_f64(),
        cpu1 - cpu0,
        cpu_secs * 1000.0,
        share * 100.0
    );
    println!(
        "  the same from the threads' schedstat:  {:.2} ms = {:.4}% of one core",
        ns1.saturating_sub(ns0) as f64 / 1e6,
        ns1.saturating_sub(ns0) as f64 / 1e9 / wall.as_secs_f64() * 100.0
    );
    println!(
        "  RSS at start {:.1} MiB, after the idle minute {:.1} MiB ({:.2}x)",
        mib(rss_start),
        mib(rss_idle),
        rss_idle as f64 / rss_start as f64
    );
    println!(
        "  RSS after {} password sign-ins ({CLIENTS} clients, {:.1}/s): {:.1} MiB = {:.2}x start (target <= 1.5x)",
        signins + 1,
        signins as f64 / signin_wall.as_secs_f64(),
        mib(rss_after),
        rss_after as f64 / rss_start as f64
    );
    println!("  threads after the sign-ins: {threads}");
}
