//! Benchmark: the sign-in primitives in `auth`.
//!
//! Run with `cargo bench -p breakglass-server --bench password`. Reported as ops/s and p50/p99
//! latency, and as ratios to floors measured in the same run on the same machine: a raw Argon2id
//! hash with the OWASP parameters called straight on the argon2 crate (what any password check
//! must cost), and a raw SHA-256 of 16 bytes (for the cheap checks). `auth::password::verify` is
//! also run from two concurrent tasks, to show what the hashing pool (two workers by default)
//! gets out of the cores.
//! These machines are shared and noisy, so the ratios are the numbers to compare across runs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a benchmark fails loudly"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, Version};
use breakglass_providers::Secret;
use breakglass_server::signin::crypto::{password, recovery, totp};
use sha2::{Digest as _, Sha256};

const NOW: u64 = 1_700_000_015;

fn iterations() -> usize {
    std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

struct Stats {
    ops_per_s: f64,
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let total: Duration = samples.iter().sum();
        Self {
            ops_per_s: samples.len() as f64 / total.as_secs_f64(),
            p50: percentile(&samples, 0.5),
            p99: percentile(&samples, 0.99),
            mean: total / u32::try_from(samples.len()).unwrap(),
        }
    }

    fn line(&self, name: &str, floor: &Self, floor_name: &str) {
        println!(
            "  {name:<34} {:>11.1} ops/s  p50 {:>9}  p99 {:>9}  p50 {:>7.2}x, mean {:>7.2}x {floor_name}",
            self.ops_per_s,
            fmt(self.p50),
            fmt(self.p99),
            self.p50.as_secs_f64() / floor.p50.as_secs_f64(),
            self.mean.as_secs_f64() / floor.mean.as_secs_f64(),
        );
    }
}

fn fmt(d: Duration) -> String {
    if d >= Duration::from_millis(1) {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.0} ns", d.as_secs_f64() * 1e9)
    }
}

fn time<T>(n: usize, warm_up: usize, mut f: impl FnMut() -> T) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n + warm_up {
        let start = Instant::now();
        black_box(f());
        if i >= warm_up {
            out.push(start.elapsed());
        }
    }
    out
}

#[tokio::main]
async fn main() {
    let wall = Instant::now();
    let n = iterations();
    let cheap = n * 500;
    let pw = Secret::new("correct horse battery staple".into());

    // Floor: one raw Argon2id hash, m=19456 KiB, t=2, p=1, no PHC encoding, no thread hop. The
    // floor and the three `auth::password` calls take turns in one loop, so drift in the machine's
    // load affects them alike.
    let raw = Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(19_456, 2, 1, None).unwrap(),
    );
    let raw_hash = |pw: &Secret| {
        let mut out = [0u8; 32];
        raw.hash_password_into(pw.expose().as_bytes(), &[7u8; 16], &mut out)
            .unwrap();
        out
    };
    let wrong = Secret::new("incorrect horse battery staple".into());
    let mut phc = password::hash(&pw).await.unwrap();
    let (mut floor, mut hashed, mut verified, mut dummy) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..n + 3 {
        let keep = i >= 3;
        let start = Instant::now();
        black_box(raw_hash(&pw));
        let raw_took = start.elapsed();
        let start = Instant::now();
        let new_phc = password::hash(&pw).await.unwrap();
        let hash_took = start.elapsed();
        let start = Instant::now();
        assert!(password::verify(&pw, &phc).await);
        let verify_took = start.elapsed();
        let start = Instant::now();
        password::verify_dummy(&wrong).await;
        let dummy_took = start.elapsed();
        phc = new_phc;
        if keep {
            floor.push(raw_took);
            hashed.push(hash_took);
            verified.push(verify_took);
            dummy.push(dummy_took);
        }
    }
    let argon_floor = Stats::of(floor);

    // Two at once: raw hashes on two OS threads (what the cores give), then `verify` from two
    // tasks (what the hashing pool gets of it).
    let raw_pair_start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..n {
                    black_box(raw_hash(&pw));
                }
            });
        }
    });
    let raw_pair_ops = (2 * n) as f64 / raw_pair_start.elapsed().as_secs_f64();
    let concurrent_start = Instant::now();
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let pw = pw.clone();
            let phc = phc.clone();
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(n);
                for _ in 0..n {
                    let start = Instant::now();
                    assert!(password::verify(&pw, &phc).await);
                    samples.push(start.elapsed());
                }
                samples
            })
        })
        .collect();
    let mut concurrent_samples = Vec::with_capacity(2 * n);
    for t in tasks {
        concurrent_samples.extend(t.await.unwrap());
    }
    let concurrent_ops = (2 * n) as f64 / concurrent_start.elapsed().as_secs_f64();

    // Cheap checks against a raw SHA-256 of a 16-byte code.
    let sha_floor = Stats::of(time(cheap, 1000, || {
        Sha256::digest(black_box(b"abcdefghijklmnop"))
    }));
    let secret = totp::new_secret().unwrap();
    let code = totp::code_at(&secret, NOW);
    let totp_stats = Stats::of(time(cheap, 1000, || {
        totp::verify(&secret, black_box(&code), None, NOW).unwrap()
    }));
    let (codes, hashes) = recovery::generate(10).unwrap();
    let last = codes[9].expose().to_owned();
    let recovery_stats = Stats::of(time(cheap, 1000, || {
        recovery::find(black_box(&last), &hashes).unwrap()
    }));
    let timer = Stats::of(time(cheap, 1000, || ()));

    println!(
        "breakglass sign-in primitives benchmark ({n} Argon2id runs each, {cheap} cheap runs each; wall {:.1}s)",
        wall.elapsed().as_secs_f64()
    );
    println!(
        "  floor: raw Argon2id hash_password_into (m=19456 KiB, t=2, p=1): {:.1} ops/s, p50 {}, p99 {}",
        argon_floor.ops_per_s,
        fmt(argon_floor.p50),
        fmt(argon_floor.p99)
    );
    let f = "raw Argon2id";
    Stats::of(hashed).line("password::hash (pool)", &argon_floor, f);
    let verify_stats = Stats::of(verified);
    verify_stats.line("password::verify (pool)", &argon_floor, f);
    Stats::of(dummy).line("password::verify_dummy", &argon_floor, f);
    let concurrent = Stats::of(concurrent_samples);
    println!(
        "  raw Argon2id, 2 OS threads:            {raw_pair_ops:.1} ops/s total ({:.2}x one thread)",
        raw_pair_ops / argon_floor.ops_per_s,
    );
    println!(
        "  password::verify, 2 concurrent tasks:  {concurrent_ops:.1} ops/s total ({:.2}x one task, {:.2}x raw on 2 threads), p50 {}, p99 {}",
        concurrent_ops / verify_stats.ops_per_s,
        concurrent_ops / raw_pair_ops,
        fmt(concurrent.p50),
        fmt(concurrent.p99),
    );
    println!(
        "  floor: raw SHA-256 of 16 bytes: {:.0} ops/s, p50 {}, p99 {}",
        sha_floor.ops_per_s,
        fmt(sha_floor.p50),
        fmt(sha_floor.p99)
    );
    let f = "raw SHA-256";
    totp_stats.line("totp::verify (3 steps)", &sha_floor, f);
    recovery_stats.line("recovery::find (10 hashes)", &sha_floor, f);
    println!(
        "  totp::verify / raw Argon2id (p50): {:.5}x; recovery::find / raw Argon2id (p50): {:.5}x",
        totp_stats.p50.as_secs_f64() / argon_floor.p50.as_secs_f64(),
        recovery_stats.p50.as_secs_f64() / argon_floor.p50.as_secs_f64(),
    );
    println!(
        "  (cheap timings include the timer itself: an empty timed call takes p50 {})",
        fmt(timer.p50)
    );
}
