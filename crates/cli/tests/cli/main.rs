//! End-to-end tests: the real `breakglass` binary, `init` then `serve` on a free loopback port,
//! driven through the real CLI and raw HTTP. Nothing is mocked.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test fails loudly on anything unexpected"
)]

use std::path::Path;

use breakglass_testkit::{Broker, DEADLINE, ISSUER, poll_until};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_breakglass");

const DB_ROLE: &str = r#"
id = "prod-db-admin"
title = "Emergency admin on the production database"
owner = "group:dba-leads"
requesters = ["group:sre"]
default_duration = "30m"
max_duration = "1h"
max_extensions = 1
[approval]
quorum = 1
approvers = ["group:sre-leads"]
[request]
require_incident = true
incident_pattern = "^INC-[0-9]+$"
[target]
kind = "token"
audience = "prod-db"
scope = ["db:admin"]
"#;

const PAY_ROLE: &str = r#"
id = "payments-readonly"
title = "Read-only payments"
owner = "group:payments-leads"
requesters = ["group:sre"]
default_duration = "15m"
max_duration = "30m"
request_ttl = "3s"
[approval]
quorum = 2
approvers = ["group:sre-leads"]
[target]
kind = "token"
audience = "payments-api"
scope = ["payments:read"]
"#;

struct World {
    bg: Broker,
    alice: String,
    bob: String,
    carol: String,
}

fn world() -> World {
    let bg = Broker::start(
        Path::new(BIN),
        &[("prod-db-admin.toml", DB_ROLE), ("payments.toml", PAY_ROLE)],
    );
    let alice = bg.user("alice", &["sre"]);
    let bob = bg.user("bob", &["sre-leads"]);
    let carol = bg.user("carol", &["sre-leads"]);
    World {
        bg,
        alice,
        bob,
        carol,
    }
}

fn request(w: &World, duration: &str) -> String {
    let g = w.bg.cli_json(
        &w.alice,
        &[
            "request",
            "prod-db-admin",
            "--reason",
            "primary is down",
            "--incident",
            "INC-42",
            "--duration",
            duration,
        ],
    );
    assert_eq!(g["state"], "requested");
    g["id"].as_str().unwrap().to_owned()
}

fn active_grant(w: &World, duration: &str) -> String {
    let id = request(w, duration);
    let g = w.bg.cli_json(&w.bob, &["approve", &id, "--comment", "go"]);
    assert_eq!(g["state"], "active", "{g}");
    id
}

fn state(w: &World, id: &str) -> String {
    w.bg.cli_json(&w.bg.admin_token, &["grants", "show", id])["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn introspect(bg: &Broker, token: &str, jwt: &str) -> Value {
    let body = format!("token={jwt}").into_bytes();
    let (status, text) = bg.http(
        "POST",
        "/v1/introspect",
        Some(token),
        "application/x-www-form-urlencoded",
        body,
    );
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn audit_types(w: &World, grant: &str) -> Vec<String> {
    w.bg.cli_json(&w.bg.admin_token, &["audit", "tail", "-n", "1000"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["grant"] == grant)
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

/// The broker's published key set, as a resource server would fetch and cache it.
fn jwks(bg: &Broker) -> JwkSet {
    let (status, body) = bg.http("GET", "/.well-known/jwks.json", None, "text/plain", vec![]);
    assert_eq!(status, 200);
    serde_json::from_str(&body).unwrap()
}

/// Verifies the JWT with an independent library against a key set, as a target would.
fn verify_with(
    set: &JwkSet,
    jwt: &str,
    audience: &str,
) -> Result<Value, jsonwebtoken::errors::Error> {
    let kid = decode_header(jwt)?.kid.expect("kid in header");
    let key = DecodingKey::from_jwk(set.find(&kid).expect("kid in JWKS"))?;
    let mut v = Validation::new(Algorithm::EdDSA);
    v.leeway = 0;
    v.set_audience(&[audience]);
    v.set_issuer(&[ISSUER]);
    v.set_required_spec_claims(&["exp", "nbf", "iat", "aud", "iss", "sub", "jti"]);
    Ok(decode::<Value>(jwt, &key, &v)?.claims)
}

fn verify_jwt(
    bg: &Broker,
    jwt: &str,
    audience: &str,
) -> Result<Value, jsonwebtoken::errors::Error> {
    verify_with(&jwks(bg), jwt, audience)
}

fn now_secs() -> i64 {
    // The test's own notion of time, to wait until an expiry has passed while the broker is dead.
    #[expect(
        clippy::disallowed_methods,
        reason = "the test observes wall time, like a target does"
    )]
    let now = std::time::SystemTime::now();
    i64::try_from(now.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

#[test]
fn request_approve_credential_and_expiry_end_to_end() {
    let w = world();
    let id = request(&w, "3s");
    assert_eq!(
        w.bg.cli_json(&w.alice, &["grants", "show", &id])["expires_at"],
        Value::Null
    );
    // the window starts at activation, not at request
    let g =
        w.bg.cli_json(&w.bob, &["approve", &id, "--comment", "confirmed on call"]);
    assert_eq!(g["state"], "active");
    assert_eq!(g["approvals"][0]["approver"], "bob");
    assert!(g["expires_at"].is_string());

    let human = w.bg.cli(&w.alice, &["credential", &id]);
    assert_eq!(human.code, 0, "{human:?}");
    let jwt = human.stdout.lines().last().unwrap().to_owned();
    assert_eq!(
        jwt.split('.').count(),
        3,
        "the credential is alone on the last line: {}",
        human.stdout
    );

    let claims =
        verify_jwt(&w.bg, &jwt, "prod-db").expect("an independent JWT library accepts the token");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "prod-db");
    assert_eq!(claims["scope"], "db:admin");
    assert_eq!(claims["jti"], id.as_str());
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3
    );
    assert!(
        verify_jwt(&w.bg, &jwt, "another-service").is_err(),
        "audience is enforced"
    );

    let live = introspect(&w.bg, &w.bob, &jwt);
    assert_eq!(live["active"], true, "{live}");
    assert_eq!(live["sub"], "alice");
    assert_eq!(live["scope"], "db:admin");

    // shown once
    let again = w.bg.cli(&w.alice, &["credential", &id]);
    assert_eq!(again.code, 6, "{again:?}");
    assert!(
        again.stderr.contains("was already delivered"),
        "{}",
        again.stderr
    );
    assert!(again.stderr.contains("help:"), "{}", again.stderr);

    assert!(
        poll_until(DEADLINE, || state(&w, &id) == "expired"),
        "grant never expired"
    );
    assert_eq!(introspect(&w.bg, &w.bob, &jwt)["active"], false);
    // The target's own check is by whole seconds (`exp` is rounded down, so never later than the
    // grant's end); poll rather than race it.
    let keys = jwks(&w.bg);
    assert!(
        poll_until(DEADLINE, || verify_with(&keys, &jwt, "prod-db").is_err()),
        "the target rejects it on its own after exp"
    );

    assert_eq!(
        audit_types(&w, &id),
        [
            "grant.requested",
            "grant.approved",
            "grant.activating",
            "grant.activated",
            "credential.issued",
            "credential.delivered",
            "auth.denied", // the refused second collection, filed under the grant
            "grant.revoking",
            "grant.expired",
        ]
    );

    // INVARIANT(6): no API token or credential in any log line or audit event.
    let logs = w.bg.logs();
    let audit =
        w.bg.cli(
            &w.bg.admin_token,
            &["audit", "tail", "-n", "1000", "--output", "json"],
        )
        .stdout;
    for secret in [jwt.as_str(), &w.alice, &w.bob, &w.carol, &w.bg.admin_token] {
        assert!(!logs.contains(secret), "a secret reached the logs");
        assert!(!audit.contains(secret), "a secret reached the audit log");
    }
    // `bgt_<id>_<secret>`: the secret (base64url, may itself contain `_`) is everything after
    // the second underscore
    let secret_part = w.alice.splitn(3, '_').nth(2).unwrap();
    assert_eq!(secret_part.len(), 43);
    assert!(!logs.contains(secret_part) && !audit.contains(secret_part));

    // INVARIANT(6): the database keeps only hashes and ciphertext. Page images of every write
    // linger in the WAL and in freed pages, so a secret ever written in clear would show here.
    let mut stored = Vec::new();
    for name in ["breakglass.db", "breakglass.db-wal"] {
        stored.extend(std::fs::read(w.bg.data_dir().join(name)).unwrap_or_default());
    }
    let stored = String::from_utf8_lossy(&stored);
    for secret in [
        jwt.as_str(),
        secret_part,
        w.bg.admin_token.splitn(3, '_').nth(2).unwrap(),
    ] {
        assert!(!stored.contains(secret), "a secret was stored in clear");
    }
}

#[test]
fn the_readme_walkthrough_works_with_the_example_roles() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/roles");
    let mut roles = Vec::new();
    for e in std::fs::read_dir(&examples).unwrap() {
        let p = e.unwrap().path();
        roles.push((
            p.file_name().unwrap().to_string_lossy().into_owned(),
            std::fs::read_to_string(&p).unwrap(),
        ));
    }
    assert!(roles.len() >= 2, "examples/roles ships at least two roles");
    let refs: Vec<(&str, &str)> = roles
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let bg = Broker::start(Path::new(BIN), &refs);
    let alice = bg.user("alice", &["sre"]);
    let bob = bg.user("bob", &["sre-leads"]);
    let listed = bg.cli(&alice, &["roles", "list"]);
    assert!(listed.stdout.contains("prod-db-admin"), "{listed:?}");
    let g = bg.cli_json(
        &alice,
        &[
            "request",
            "prod-db-admin",
            "--reason",
            "db down",
            "--incident",
            "INC-1234",
            "--duration",
            "10m",
        ],
    );
    let id = g["id"].as_str().unwrap();
    let approved = bg.cli(&bob, &["approve", id]);
    assert_eq!(approved.code, 0, "{approved:?}");
    assert!(
        approved.stdout.contains("state:      active"),
        "{}",
        approved.stdout
    );
    let cred = bg.cli(&alice, &["credential", id]);
    assert_eq!(cred.code, 0);
    let revoked = bg.cli(&alice, &["revoke", id, "--reason", "fixed"]);
    assert_eq!(revoked.code, 0, "{revoked:?}");
    assert!(
        revoked.stdout.contains("state:      revoked")
            && revoked.stdout.contains("revoked by: alice"),
        "{}",
        revoked.stdout
    );
    let tail = bg.cli(&bg.admin_token, &["audit", "tail", "-n", "5"]);
    assert!(tail.stdout.contains("grant.revoked"), "{}", tail.stdout);

    // The PostgreSQL example needs its admin DSN in the environment. Without it the activation
    // fails closed, and the grant says exactly what to set.
    let g = bg.cli_json(
        &alice,
        &["request", "ledger-read", "--reason", "totals wrong"],
    );
    let id = g["id"].as_str().unwrap();
    let r = bg.cli(&bob, &["approve", id, "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let g = r.json();
    assert_eq!(g["state"], "failed", "{g}");
    assert!(
        g.to_string()
            .contains("environment variable `LEDGER_ADMIN_DSN` is not set"),
        "{g}"
    );
}

#[test]
fn revoke_ends_a_grant_early_everywhere() {
    let w = world();
    let id = active_grant(&w, "30m");
    let jwt = w.bg.cli_json(&w.alice, &["credential", &id])["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(introspect(&w.bg, &w.bob, &jwt)["active"], true);

    let stranger = w.bg.user("mallory", &["sre"]);
    let r = w.bg.cli(&stranger, &["revoke", &id, "--reason", "x"]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stderr
            .contains("policy does not allow `mallory` to `revoke` on role `prod-db-admin`"),
        "{}",
        r.stderr
    );

    let g =
        w.bg.cli_json(&w.carol, &["revoke", &id, "--reason", "incident closed"]);
    assert_eq!(g["state"], "revoked");
    assert_eq!(g["revoked_by"], "carol");
    assert_eq!(introspect(&w.bg, &w.bob, &jwt)["active"], false);

    let again = w.bg.cli(&w.alice, &["revoke", &id, "--reason", "again"]);
    assert_eq!(again.code, 6);
    assert!(
        again
            .stderr
            .contains(&format!("grant `{id}` has already ended (`revoked`)")),
        "{}",
        again.stderr
    );
    assert!(
        again
            .stderr
            .contains(&format!("breakglass grants show {id}")),
        "{}",
        again.stderr
    );
}

/// Invariant 3 and 1 across a crash: a broker killed with `kill -9` while a grant is active
/// expires it correctly after restart, and the target rejects the token on its own meanwhile.
#[test]
fn kill_9_across_expiry_still_expires_the_grant() {
    let mut w = world();
    let id = active_grant(&w, "3s");
    let jwt = w.bg.cli_json(&w.alice, &["credential", &id])["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    let keys = jwks(&w.bg);
    let exp = verify_with(&keys, &jwt, "prod-db").unwrap()["exp"]
        .as_i64()
        .unwrap();
    w.bg.kill9();
    assert!(
        poll_until(DEADLINE, || now_secs() > exp),
        "clock never passed the expiry"
    );
    assert!(
        matches!(verify_with(&keys, &jwt, "prod-db"), Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::ExpiredSignature),
        "with the broker dead, the target still refuses the expired token"
    );
    w.bg.restart();
    assert!(
        poll_until(DEADLINE, || state(&w, &id) == "expired"),
        "grant not expired after restart"
    );
    let types = audit_types(&w, &id);
    assert_eq!(
        types.iter().filter(|t| *t == "grant.expired").count(),
        1,
        "{types:?}"
    );
    assert_eq!(introspect(&w.bg, &w.bob, &jwt)["active"], false);
}

mod access;
mod alerts;
mod attestations;
mod audit;
mod bad_input;
mod config_reload;
mod drills;
mod lifecycle;
mod limits;
mod lockdown;
mod metrics;
mod postgres;
mod reviews;
mod startup;
mod tls;
