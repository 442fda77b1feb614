//! Benchmark: Cedar authorization decisions through `breakglass_server::policy`.
//!
//! Run with `cargo bench -p breakglass-server --bench policy`. For 10, 100 and 1,000 generated
//! roles (each with two requester groups, one approver group and an owner group) it reports the
//! load time of the policy set, then decisions/s and p50/p99 latency over a fixed mix of allowed
//! and denied queries across every action, each `is_allowed` call timed on its own. The floor,
//! measured in the same run on the same machine, is one SHA-256 of a 64-byte input, timed the
//! same way; each p50 is also printed as a ratio to it. These machines are shared and noisy, so
//! the ratios are the numbers to compare across runs, not the times.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a benchmark fails loudly"
)]

use std::collections::{BTreeSet, HashMap};
use std::hint::black_box;
use std::time::{Duration, Instant};

use breakglass_core::{Principal, PrincipalKind, Role, Timestamp};
use breakglass_server::policy::{Policies, PolicyAction, Query, RoleFacts};
use sha2::{Digest, Sha256};

const SIZES: [usize; 3] = [10, 100, 1_000];
const TEAMS: usize = 40;
const LEADS: usize = 12;
const OWNERS: usize = 6;
const PRINCIPALS: usize = 300;
const WARM_UP: usize = 2_000;

fn decisions() -> usize {
    std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// A small deterministic generator (xorshift64), so every run asks the same questions.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn role(i: usize) -> Role {
    let text = format!(
        r#"
id = "role-{i}"
title = "Role {i}"
owner = "group:owner-{}"
requesters = ["group:team-{}", "group:team-{}"]
default_duration = "30m"
max_duration = "1h"
[approval]
quorum = 1
approvers = ["group:lead-{}"]
[target]
kind = "token"
audience = "bench"
scope = ["x"]
"#,
        i % OWNERS,
        i % TEAMS,
        (i * 7 + 3) % TEAMS,
        i % LEADS,
    );
    Role::parse(&format!("role-{i}.toml"), &text).unwrap()
}

/// Mostly people in two teams and maybe a lead or owner group; a few admins, auditors and
/// services.
fn principals(rng: &mut Rng) -> Vec<Principal> {
    (0..PRINCIPALS)
        .map(|i| {
            let mut groups = vec![
                format!("team-{}", rng.below(TEAMS)),
                format!("team-{}", rng.below(TEAMS)),
            ];
            match rng.below(10) {
                0..=2 => groups.push(format!("lead-{}", rng.below(LEADS))),
                3 => groups.push(format!("owner-{}", rng.below(OWNERS))),
                4 => groups.push("admins".into()),
                5 => groups.push("auditors".into()),
                _ => {}
            }
            Principal {
                name: format!("user-{i}").parse().unwrap(),
                kind: if i % 25 == 0 {
                    PrincipalKind::Service
                } else {
                    PrincipalKind::Human
                },
                groups: groups
                    .iter()
                    .map(|g| g.parse().unwrap())
                    .collect::<BTreeSet<_>>(),
                disabled: false,
                created_at: Timestamp::from_unix_millis(0),
            }
        })
        .collect()
}

struct Ask {
    principal: usize,
    action: PolicyAction,
    role: Option<String>,
    own: bool,
}

/// The questions: every action, a role picked at random (one in fifty does not exist), and half
/// of the time a principal the role names for that action, so that allows and denies both occur.
fn asks(rng: &mut Rng, people: &[Principal], roles: usize, n: usize) -> Vec<Ask> {
    let mut members: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, p) in people.iter().enumerate() {
        for g in &p.groups {
            members.entry(g.as_str()).or_default().push(i);
        }
    }
    (0..n)
        .map(|_| {
            let action = PolicyAction::ALL[rng.below(PolicyAction::ALL.len())];
            let r = rng.below(roles);
            let (role, group) = match action {
                PolicyAction::ReadAudit | PolicyAction::Administer => (None, None),
                _ if rng.below(50) == 0 => (Some("gone".to_owned()), None),
                PolicyAction::Approve | PolicyAction::Revoke | PolicyAction::Review => (
                    Some(format!("role-{r}")),
                    Some(format!("lead-{}", r % LEADS)),
                ),
                _ => (
                    Some(format!("role-{r}")),
                    Some(format!("team-{}", r % TEAMS)),
                ),
            };
            let insiders = group
                .as_deref()
                .and_then(|g| members.get(g))
                .filter(|m| !m.is_empty() && rng.below(2) == 0);
            let principal = match insiders {
                Some(m) => m[rng.below(m.len())],
                None => rng.below(PRINCIPALS),
            };
            Ask {
                principal,
                action,
                role,
                own: rng.below(5) == 0,
            }
        })
        .collect()
}

fn query<'a>(people: &'a [Principal], a: &'a Ask) -> Query<'a> {
    Query {
        principal: &people[a.principal],
        action: a.action,
        role: a.role.as_deref(),
        own: a.own,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let n = decisions();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let people = principals(&mut rng);

    // The floor: one SHA-256 of 64 bytes, timed one at a time like the decisions.
    let input = [7u8; 64];
    for _ in 0..WARM_UP {
        black_box(Sha256::digest(black_box(&input)));
    }
    let mut floor = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        black_box(Sha256::digest(black_box(&input)));
        floor.push(start.elapsed());
    }
    floor.sort();
    let batch = 1_000_000u32;
    let start = Instant::now();
    for _ in 0..batch {
        black_box(Sha256::digest(black_box(&input)));
    }
    let per_op = start.elapsed() / batch;
    let floor_p50 = percentile(&floor, 0.5);

    println!(
        "breakglass policy decision benchmark ({n} decisions per size, after {WARM_UP} warm-up)"
    );
    println!(
        "  floor: SHA-256 of 64 bytes: p50 {:.3} us timed alone (includes the clock read), {:.3} us per op in a batch",
        us(floor_p50),
        us(per_op)
    );
    for size in SIZES {
        let roles: Vec<Role> = (0..size).map(role).collect();
        let facts = || {
            roles.iter().enumerate().map(|(i, role)| RoleFacts {
                role,
                emergency_allowed: i % 3 == 0,
            })
        };
        let start = Instant::now();
        let policies = Policies::build(facts(), None).unwrap();
        let build = start.elapsed();

        let warm = asks(&mut rng, &people, size, WARM_UP);
        let measured = asks(&mut rng, &people, size, n);
        for a in &warm {
            black_box(policies.is_allowed(&query(&people, a)));
        }
        let mut times = Vec::with_capacity(n);
        let mut allowed = 0usize;
        let wall = Instant::now();
        for a in &measured {
            let q = query(&people, a);
            let start = Instant::now();
            let ok = policies.is_allowed(black_box(&q));
            times.push(start.elapsed());
            allowed += usize::from(ok);
        }
        let wall = wall.elapsed();
        times.sort();
        let p50 = percentile(&times, 0.5);
        let per_s = n as f64 / times.iter().sum::<Duration>().as_secs_f64();
        println!(
            "  {size:>5} roles ({:>5} policies): load {:.1} ms; {per_s:>9.0} decisions/s, p50 {:.2} us, p99 {:.2} us, max {:.2} us; {:.0}% allowed; p50 / floor {:.1}x (wall {:.2}s)",
            policies.len(),
            build.as_secs_f64() * 1e3,
            us(p50),
            us(percentile(&times, 0.99)),
            us(*times.last().unwrap()),
            100.0 * allowed as f64 / n as f64,
            p50.as_secs_f64() / floor_p50.as_secs_f64(),
            wall.as_secs_f64(),
        );
    }
}
