//! PostgreSQL end to end: the shared store served by several replicas, and the `postgres`
//! provider's just-in-time database credentials, against a real server (`scripts/test-postgres`)
//! and the real binary. Every test makes its own databases.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use breakglass_testkit::Run;
use breakglass_testkit::pg::{Session, TcpProxy, TestDb, unique};

use super::*;

/// A token role (for store tests, where the target does not matter).
fn token_role(id: &str, duration: &str) -> String {
    format!(
        r#"
id = "{id}"
title = "Token role"
owner = "group:sre-leads"
requesters = ["group:sre"]
default_duration = "{duration}"
max_duration = "1h"
[approval]
quorum = 1
approvers = ["group:sre-leads"]
[target]
kind = "token"
audience = "svc"
scope = ["admin"]
"#
    )
}

/// A `postgres` role reading the ledger through `reader`.
fn ledger_role(reader: &str, duration: &str) -> String {
    format!(
        r#"
id = "ledger-read"
title = "Read the ledger database"
owner = "group:sre-leads"
requesters = ["group:sre"]
default_duration = "{duration}"
max_duration = "1h"
[approval]
quorum = 1
approvers = ["group:sre-leads"]
[target]
kind = "postgres"
dsn_env = "LEDGER_ADMIN_DSN"
mode = "login"
grant = ["{reader}"]
"#
    )
}

/// The target database: a ledger table and a group role that may only read it.
struct Ledger {
    db: TestDb,
    reader: String,
}

impl Ledger {
    fn create() -> Self {
        let db = TestDb::create("bg_target");
        let reader = format!("ledger_reader_{}", unique());
        db.execute(&format!(
            "CREATE TABLE ledger (id int PRIMARY KEY, amount bigint);
             INSERT INTO ledger VALUES (1, 100), (2, 250);
             CREATE ROLE {reader} NOLOGIN;
             GRANT CONNECT ON DATABASE \"{}\" TO {reader};
             GRANT USAGE ON SCHEMA public TO {reader};
             GRANT SELECT ON ledger TO {reader};",
            db.name
        ));
        Self { db, reader }
    }

    /// The admin DSN the broker gets, through `addr` (a proxy, or the server itself).
    fn dsn(&self, addr: SocketAddr) -> String {
        format!("postgres://postgres@{addr}/{}", self.db.name)
    }

    /// The roles the installation `bg` made (or that carry its marker), by name. Roles are
    /// cluster-wide and tests run in parallel, so each test looks only at its own installation's.
    fn bg_roles(&self, bg: &Broker) -> Vec<String> {
        self.db.query_strings(&format!(
            "SELECT rolname::text FROM pg_roles
             WHERE rolname LIKE 'bg\\_%' AND shobj_description(oid, 'pg_authid') LIKE 'breakglass:{} %'
             ORDER BY 1",
            kid(bg)
        ))
    }

    fn role_exists(&self, name: &str) -> bool {
        self.db.query_i64(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{name}'"
        )) == 1
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        let _ = Session::connect(&format!(
            "{}/postgres",
            breakglass_testkit::pg::server_url()
        ))
        .and_then(|mut s| s.execute(&format!("DROP ROLE IF EXISTS {}", self.reader)));
    }
}

/// The installation's token key id: the marker in what it leaves at targets.
fn kid(bg: &Broker) -> String {
    let jwks: Value =
        serde_json::from_str(&bg.http("GET", "/.well-known/jwks.json", None, "", vec![]).1)
            .unwrap();
    jwks["keys"][0]["kid"].as_str().unwrap().to_owned()
}

fn pg_server() -> SocketAddr {
    let url = breakglass_testkit::pg::server_url();
    let hostport = url.rsplit('@').next().unwrap().trim_end_matches('/');
    hostport.parse().unwrap()
}

struct PgWorld {
    bg: Broker,
    alice: String,
    bob: String,
}

fn pg_world(store: &TestDb, roles: &[(&str, &str)], env: &[(&str, &str)]) -> PgWorld {
    let mut bg = Broker::init_postgres(Path::new(BIN), &store.url, roles);
    for (k, v) in env {
        bg.set_env(k, v);
    }
    bg.restart();
    let alice = bg.user("alice", &["sre"]);
    let bob = bg.user("bob", &["sre-leads"]);
    PgWorld { bg, alice, bob }
}

fn activate(w: &PgWorld, bg: &Broker, role: &str) -> String {
    let g = bg.cli_json(
        &w.alice,
        &["request", role, "--reason", "ledger totals are wrong"],
    );
    let id = g["id"].as_str().unwrap().to_owned();
    let g = bg.cli_json(&w.bob, &["approve", &id]);
    assert_eq!(g["state"], "active", "{g}");
    id
}

fn state(bg: &Broker, token: &str, id: &str) -> String {
    bg.cli_json(token, &["grants", "show", id])["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Every audit event as JSON, from the database (the log's exact bytes).
fn events(store: &TestDb) -> Vec<Value> {
    store
        .query_strings("SELECT convert_from(bytes, 'UTF8') FROM audit_log ORDER BY seq")
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect()
}

#[test]
fn the_shared_store_serves_the_whole_path_and_its_log_verifies() {
    let store = TestDb::create("bg_store");
    let w = pg_world(
        &store,
        &[("svc.toml", &token_role("svc-admin", "30m"))],
        &[],
    );
    let id = activate(&w, &w.bg, "svc-admin");
    let jwt = w.bg.cli_json(&w.alice, &["credential", &id])["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(jwt.split('.').count(), 3);
    w.bg.cli_json(&w.bob, &["revoke", &id, "--reason", "done"]);
    assert_eq!(state(&w.bg, &w.alice, &id), "revoked");
    // The log is in PostgreSQL, gapless from 0, and verifies offline against the pinned key.
    let seqs = store.query_strings("SELECT l.seq::text FROM audit_log l ORDER BY l.seq");
    assert!(seqs.len() > 8);
    for (i, s) in seqs.iter().enumerate() {
        assert_eq!(s, &i.to_string());
    }
    let cp = w.bg.data_dir().join("cp.json");
    let admin_cp = w.bg.cli_json(&w.bg.admin_token, &["audit", "checkpoint"]);
    std::fs::write(&cp, admin_cp.to_string()).unwrap();
    let v = Run::of(
        std::process::Command::new(BIN)
            .args([
                "audit",
                "verify",
                "--output",
                "json",
                "--database",
                &store.url,
                "--key",
            ])
            .arg(&w.bg.audit_key)
            .arg("--trusted")
            .arg(&cp),
    );
    assert_eq!(v.code, 0, "{v:?}");
    assert_eq!(v.json()["verified"], true);
    assert!(!v.stdout.contains(&jwt) && !v.stderr.contains(&jwt));

    // Invariant 4 on PostgreSQL: someone with the database's owner rights edits an old event
    // (the append-only triggers are theirs to drop); verify names it.
    let edited = store.query_i64(
        "SELECT min(seq) FROM audit_log WHERE convert_from(bytes, 'UTF8') LIKE '%alice%'",
    );
    store.execute(&format!(
        "ALTER TABLE audit_log DISABLE TRIGGER USER;
         UPDATE audit_log SET bytes = convert_to(replace(convert_from(bytes, 'UTF8'), 'alice', 'mallory'), 'UTF8') WHERE seq = {edited};
         ALTER TABLE audit_log ENABLE TRIGGER USER;"
    ));
    let v = Run::of(
        std::process::Command::new(BIN)
            .args([
                "audit",
                "verify",
                "--output",
                "json",
                "--database",
                &store.url,
                "--key",
            ])
            .arg(&w.bg.audit_key)
            .arg("--trusted")
            .arg(&cp),
    );
    assert_eq!(v.code, 9, "{v:?}");
    assert_eq!(v.json()["verified"], false);
    assert_eq!(v.json()["problems"][0]["seq"], edited, "{}", v.stdout);
}

#[test]
fn a_wrong_missing_or_absent_store_is_a_clear_error_that_changes_nothing() {
    let store = TestDb::create("bg_store");
    let mut w = pg_world(
        &store,
        &[("svc.toml", &token_role("svc-admin", "30m"))],
        &[],
    );
    w.bg.kill9();
    let before = store.query_i64("SELECT count(*) FROM audit_log");
    let serve = |extra: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--data-dir"];
        let d = dir.path().display().to_string();
        args.push(&d);
        args.extend(extra);
        Run::of(std::process::Command::new(BIN).args(&args))
    };
    // Another key: refused, never a silent new key.
    let other = tempfile::tempdir().unwrap();
    let wrong = other.path().join("wrong.key");
    std::fs::write(&wrong, "11".repeat(32)).unwrap();
    let r = serve(&[
        "--database",
        &store.url,
        "--key-file",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("does not open this store's keys"),
        "{}",
        r.stderr
    );
    // No key file at all.
    let missing = other.path().join("missing.key");
    let r = serve(&[
        "--database",
        &store.url,
        "--key-file",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("is missing or unreadable"),
        "{}",
        r.stderr
    );
    assert!(!missing.exists(), "no key may be made by serve");
    let r = serve(&["--database", &store.url]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("needs `--key-file"), "{}", r.stderr);
    // init never re-initialises, and never overwrites a key file.
    let fresh = other.path().join("fresh.key");
    let r = Run::of(std::process::Command::new(BIN).args([
        "init",
        "--database",
        &store.url,
        "--key-file",
        fresh.to_str().unwrap(),
    ]));
    assert_eq!(r.code, 6, "{r:?}");
    assert!(r.stderr.contains("already initialised"), "{}", r.stderr);
    assert!(!fresh.exists(), "a refused init leaves no key file");
    let r = Run::of(std::process::Command::new(BIN).args([
        "init",
        "--database",
        &TestDb::create("bg_empty").url,
        "--key-file",
        wrong.to_str().unwrap(),
    ]));
    assert_eq!(r.code, 6, "{r:?}");
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&wrong).unwrap(), "11".repeat(32));
    // A database that is not initialised says to run init.
    let empty = TestDb::create("bg_empty");
    let key = w.bg.store_args()[3].clone();
    let r = serve(&["--database", &empty.url, "--key-file", &key]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("breakglass init --database"),
        "{}",
        r.stderr
    );
    // Nothing answers: exit 7 quickly, and the password in the URL is not repeated.
    let started = Instant::now();
    let r = serve(&[
        "--database",
        "postgres://postgres:hunter2-secret@127.0.0.1:9/x",
        "--key-file",
        &key,
    ]);
    assert_eq!(r.code, 7, "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(r.stderr.contains("cannot reach database"), "{}", r.stderr);
    assert!(!r.stderr.contains("hunter2-secret"), "{}", r.stderr);
    assert_eq!(store.query_i64("SELECT count(*) FROM audit_log"), before);
    // And the right key still serves it.
    w.bg.restart();
    assert_eq!(w.bg.cli_json(&w.alice, &["whoami"])["name"], "alice");
}

#[test]
fn two_replicas_expire_thirty_grants_exactly_once_with_a_gapless_log() {
    let store = TestDb::create("bg_store");
    let mut w = pg_world(&store, &[("svc.toml", &token_role("svc-admin", "8s"))], &[]);
    let mut b = w.bg.replica();
    b.restart();
    let mut ids = Vec::new();
    for i in 0..30 {
        // Requests and approvals go to either replica, as a load balancer would send them.
        let (one, other) = if i % 2 == 0 { (&w.bg, &b) } else { (&b, &w.bg) };
        let g = one.cli_json(
            &w.alice,
            &["request", "svc-admin", "--reason", "mass expiry"],
        );
        let id = g["id"].as_str().unwrap().to_owned();
        assert_eq!(other.cli_json(&w.bob, &["approve", &id])["state"], "active");
        ids.push(id);
    }
    // Stop both, let every grant's end pass, then start both at the same moment: all thirty are
    // due at once on two brokers.
    w.bg.kill9();
    b.kill9();
    assert!(poll_until(DEADLINE, || {
        store.query_i64(
        "SELECT count(*) FROM grants WHERE expires_at > (extract(epoch FROM clock_timestamp()) * 1000)::bigint"
    ) == 0
    }));
    w.bg.launch();
    b.launch();
    w.bg.wait_ready();
    b.wait_ready();
    assert!(
        poll_until(DEADLINE, || store
            .query_i64("SELECT count(*) FROM grants WHERE state = 'expired'")
            == 30),
        "not all expired; logs:\n{}\n{}",
        w.bg.logs(),
        b.logs()
    );
    let events = events(&store);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i, "gap or reorder at {i}");
    }
    for id in &ids {
        let expired = events
            .iter()
            .filter(|e| e["type"] == "grant.expired" && e["grant"] == id.as_str())
            .count();
        assert_eq!(expired, 1, "grant {id}");
    }
    // Both replicas did part of the work, or at least both were serving while it was done.
    assert!(w.bg.is_running() && b.is_running());
}

#[test]
fn a_database_credential_reads_cannot_write_and_dies_with_its_revoke() {
    let store = TestDb::create("bg_store");
    let ledger = Ledger::create();
    let dsn = ledger.dsn(pg_server());
    let w = pg_world(
        &store,
        &[("ledger.toml", &ledger_role(&ledger.reader, "30m"))],
        &[("LEDGER_ADMIN_DSN", &dsn)],
    );
    let id = activate(&w, &w.bg, "ledger-read");
    let cred = w.bg.cli_json(&w.alice, &["credential", &id])["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(cred.starts_with("postgres://bg_"), "a database URI");
    let mut s = Session::connect(&cred).unwrap();
    assert_eq!(
        s.query_i64("SELECT sum(amount)::bigint FROM ledger")
            .unwrap(),
        350
    );
    let err = s.execute("INSERT INTO ledger VALUES (3, 1)").unwrap_err();
    assert!(err.contains("permission denied"), "{err}");
    assert_eq!(ledger.db.query_i64("SELECT count(*) FROM ledger"), 2);
    // The password never reached the server in clear; the secret is in no log or event.
    let password = cred.split(':').nth(2).unwrap().split('@').next().unwrap();
    assert!(!w.bg.logs().contains(password));
    assert!(
        !events(&store)
            .iter()
            .any(|e| e.to_string().contains(password))
    );
    assert_eq!(ledger.bg_roles(&w.bg).len(), 1);

    w.bg.cli_json(&w.bob, &["revoke", &id, "--reason", "fixed"]);
    assert_eq!(state(&w.bg, &w.alice, &id), "revoked");
    // The live session is ended, not just future logins.
    assert!(
        poll_until(Duration::from_secs(10), || s.query_i64("SELECT 1").is_err()),
        "the held session survived the revoke"
    );
    assert!(Session::connect(&cred).is_err());
    assert!(
        ledger.bg_roles(&w.bg).is_empty(),
        "{:?}",
        ledger.bg_roles(&w.bg)
    );
}

#[test]
fn with_every_broker_dead_the_target_ends_the_login_by_itself() {
    let store = TestDb::create("bg_store");
    let ledger = Ledger::create();
    let dsn = ledger.dsn(pg_server());
    let mut w = pg_world(
        &store,
        &[("ledger.toml", &ledger_role(&ledger.reader, "4s"))],
        &[("LEDGER_ADMIN_DSN", &dsn)],
    );
    let mut b = w.bg.replica();
    b.restart();
    let id = activate(&w, &b, "ledger-read");
    let cred = w.bg.cli_json(&w.alice, &["credential", &id])["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    w.bg.kill9();
    b.kill9();
    assert!(Session::connect(&cred).is_ok(), "valid before its end");
    // Nobody revokes: VALID UNTIL at the target refuses the password once the end passes.
    assert!(
        poll_until(DEADLINE, || Session::connect(&cred).is_err()),
        "the credential outlived its grant with no broker running"
    );
    let err = Session::connect(&cred).err().unwrap();
    assert!(err.contains("password authentication failed"), "{err}");
    // When a broker returns, the grant expires once and the role is dropped.
    w.bg.restart();
    assert!(poll_until(DEADLINE, || state(&w.bg, &w.alice, &id) == "expired"));
    assert!(poll_until(DEADLINE, || ledger.bg_roles(&w.bg).is_empty()));
}

#[test]
fn a_revoke_while_the_target_is_down_is_retried_until_it_returns() {
    let store = TestDb::create("bg_store");
    let ledger = Ledger::create();
    let mut proxy = TcpProxy::start(pg_server());
    let dsn = ledger.dsn(proxy.addr());
    let w = pg_world(
        &store,
        &[("ledger.toml", &ledger_role(&ledger.reader, "30m"))],
        &[("LEDGER_ADMIN_DSN", &dsn)],
    );
    let id = activate(&w, &w.bg, "ledger-read");
    proxy.down();
    let r = w.bg.cli(
        &w.bob,
        &["revoke", &id, "--reason", "contain", "--output", "json"],
    );
    assert_eq!(r.code, 0, "the revoke is accepted and recorded: {r:?}");
    assert_eq!(r.json()["state"], "revoking");
    assert_eq!(
        ledger.bg_roles(&w.bg).len(),
        1,
        "the target could not be reached"
    );
    assert!(
        poll_until(DEADLINE, || w
            .bg
            .logs()
            .matches("provider could not revoke; will retry")
            .count()
            >= 2),
        "retried: {}",
        w.bg.logs()
    );
    proxy.up();
    assert!(
        poll_until(DEADLINE, || state(&w.bg, &w.alice, &id) == "revoked"),
        "{}",
        w.bg.logs()
    );
    assert!(ledger.bg_roles(&w.bg).is_empty());
    let ends: Vec<Value> = events(&store)
        .into_iter()
        .filter(|e| e["grant"] == id.as_str() && e["type"] == "grant.revoked")
        .collect();
    assert_eq!(ends.len(), 1);
}

#[test]
fn a_revoke_that_never_succeeds_fails_the_grant_and_the_orphan_is_swept_later() {
    let store = TestDb::create("bg_store");
    let ledger = Ledger::create();
    let mut proxy = TcpProxy::start(pg_server());
    let dsn = ledger.dsn(proxy.addr());
    let w = pg_world(
        &store,
        &[("ledger.toml", &ledger_role(&ledger.reader, "30m"))],
        &[
            ("LEDGER_ADMIN_DSN", &dsn),
            ("BREAKGLASS_REVOKE_GIVE_UP", "3s"),
            ("BREAKGLASS_RECONCILE_INTERVAL", "1s"),
        ],
    );
    let id = activate(&w, &w.bg, "ledger-read");
    // A role made by hand under this installation's marker, with no grant behind it, and one
    // made by someone else that merely looks like ours.
    let kid = kid(&w.bg);
    let stray = format!("bg_{}{}", unique(), unique());
    let lookalike = format!("bg_{}", unique());
    ledger.db.execute(&format!(
        "CREATE ROLE {stray} LOGIN VALID UNTIL 'infinity';
         COMMENT ON ROLE {stray} IS 'breakglass:{kid} grant left by hand';
         CREATE ROLE {lookalike} NOLOGIN;"
    ));
    proxy.down();
    w.bg.cli_json(&w.bob, &["revoke", &id, "--reason", "contain"]);
    assert!(
        poll_until(DEADLINE, || state(&w.bg, &w.alice, &id) == "failed"),
        "{}",
        w.bg.logs()
    );
    let g = w.bg.cli_json(&w.alice, &["grants", "show", &id]);
    assert!(
        g.to_string()
            .contains("revocation at the target kept failing"),
        "{g}"
    );
    proxy.up();
    // The sweep removes what the failed revoke left, and the stray role; not the lookalike.
    assert!(
        poll_until(DEADLINE, || ledger.bg_roles(&w.bg).is_empty()),
        "{:?}\n{}",
        ledger.bg_roles(&w.bg),
        w.bg.logs()
    );
    // Each role is dropped at the target first and its event written just after.
    let removed = || -> Vec<Value> {
        events(&store)
            .into_iter()
            .filter(|e| e["type"] == "target.orphan_removed")
            .collect()
    };
    assert!(
        poll_until(DEADLINE, || removed().len() >= 2),
        "{:?}\n{}",
        removed(),
        w.bg.logs()
    );
    let removed = removed();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(
        removed
            .iter()
            .any(|e| e["grant"] == id.as_str() && e["for_grant"] == id.as_str())
    );
    assert!(
        removed
            .iter()
            .any(|e| e["handle"] == format!("LEDGER_ADMIN_DSN/{stray}"))
    );
    assert!(ledger.role_exists(&lookalike));
    ledger.db.execute(&format!("DROP ROLE {lookalike}"));
}

#[test]
fn a_store_that_goes_away_is_a_503_that_changes_nothing_and_service_resumes() {
    let store = TestDb::create("bg_store");
    let mut proxy = TcpProxy::start(pg_server());
    let via_proxy = format!("postgres://postgres@{}/{}", proxy.addr(), store.name);
    let mut bg = Broker::init_postgres(
        Path::new(BIN),
        &via_proxy,
        &[("svc.toml", &token_role("svc-admin", "30m"))],
    );
    bg.restart();
    let alice = bg.user("alice", &["sre"]);
    let grants = || store.query_i64("SELECT count(*) FROM grants");
    let events = || store.query_i64("SELECT count(*) FROM audit_log");
    let (g0, e0) = (grants(), events());

    proxy.down();
    let r = bg.cli(&alice, &["request", "svc-admin", "--reason", "db away"]);
    assert_eq!(r.code, 7, "{r:?}");
    assert!(
        r.stderr.contains("the database is unavailable"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("nothing was changed; retry shortly"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("postgres://"), "{}", r.stderr);
    assert!(bg.is_running(), "a lost database is not fatal");
    assert_eq!((grants(), events()), (g0, e0));

    proxy.up();
    assert!(
        poll_until(DEADLINE, || bg
            .cli(&alice, &["request", "svc-admin", "--reason", "db back"])
            .code
            == 0),
        "service did not resume: {}",
        bg.logs()
    );
    assert_eq!(grants(), g0 + 1);
}

#[test]
fn replicas_reloading_the_same_role_change_record_it_once() {
    let store = TestDb::create("bg_store");
    let mut w = pg_world(
        &store,
        &[("svc.toml", &token_role("svc-admin", "30m"))],
        &[],
    );
    let mut b = w.bg.replica();
    b.restart();
    let changed = |role: &str| {
        events(&store)
            .iter()
            .filter(|e| e["type"] == "role.changed" && e["role"] == role)
            .count()
    };
    assert_eq!(
        changed("svc-admin"),
        1,
        "the second replica found nothing new"
    );
    for bg in [&w.bg, &b] {
        bg.write_role("ops.toml", &token_role("ops-admin", "10m"));
    }
    w.bg.signal("HUP");
    b.signal("HUP");
    assert!(poll_until(DEADLINE, || {
        [&w.bg, &b].iter().all(|bg| {
            bg.cli_json(&w.alice, &["roles", "list"])
                .to_string()
                .contains("ops-admin")
        })
    }));
    assert_eq!(
        changed("ops-admin"),
        1,
        "recorded once, not once per replica"
    );
    w.bg.kill9();
}

#[test]
fn two_replicas_deliver_each_alert_once() {
    use breakglass_testkit::webhook::WebhookReceiver;
    let store = TestDb::create("bg_store");
    let hook = WebhookReceiver::start(None);
    let mut role = token_role("svc-admin", "30m");
    role = role.replace(
        "max_duration = \"1h\"\n",
        "max_duration = \"1h\"\nalerts = [\"oncall\"]\n",
    );
    let mut a = Broker::init_postgres(Path::new(BIN), &store.url, &[("svc.toml", &role)]);
    let config = a.data_dir().join("breakglass.toml");
    std::fs::create_dir_all(a.data_dir()).unwrap();
    std::fs::write(
        &config,
        format!(
            "[channels.oncall]\nkind = \"webhook\"\nurl = \"{}\"\n",
            hook.url("/a")
        ),
    )
    .unwrap();
    a.set_env("BREAKGLASS_CONFIG", config.to_str().unwrap());
    a.restart();
    let mut b = a.replica();
    b.restart();
    let alice = a.user("alice", &["sre"]);
    for i in 0..20 {
        let bg = if i % 2 == 0 { &a } else { &b };
        bg.cli_json(&alice, &["request", "svc-admin", "--reason", "replicas"]);
    }
    assert!(
        poll_until(DEADLINE, || hook
            .delivered()
            .iter()
            .filter(|r| r.body["event"] == "grant.requested")
            .count()
            >= 20),
        "{}",
        a.logs()
    );
    // Both replicas dispatch all along; each alert still arrives once.
    let mut ids: Vec<String> = hook
        .delivered()
        .iter()
        .filter_map(|r| r.alert_id.clone())
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "an alert was delivered twice");
    let config_changed = events(&store)
        .iter()
        .filter(|e| e["type"] == "config.changed")
        .count();
    assert_eq!(config_changed, 1, "two replicas record the config once");
    a.kill9();
    b.kill9();
}
