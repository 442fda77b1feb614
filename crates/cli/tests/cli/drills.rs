//! Drills end to end: the real binary drills a token role and a PostgreSQL role (a real target
//! database), each passing with every channel proven by real receivers (HTTP, SMTP), and one whose
//! target is down, which fails cleanly with its report and leaves nothing at the target.

use breakglass_testkit::pg::{TcpProxy, TestDb, unique};
use breakglass_testkit::sinks::SmtpSink;
use breakglass_testkit::webhook::WebhookReceiver;

use super::alerts::HMAC;
use super::*;

/// A config with a signed webhook channel `oncall` and, if given, an SMTP channel `mail`.
fn config(hook: &WebhookReceiver, smtp: Option<&SmtpSink>) -> String {
    let mut c = format!(
        r#"
[channels.oncall]
kind = "webhook"
url = "{}"
hmac_key = {{ env = "BG_E2E_HMAC" }}
"#,
        hook.url("/alerts")
    );
    if let Some(s) = smtp {
        c.push_str(&format!(
            r#"
[channels.mail]
kind = "smtp"
host = "127.0.0.1"
port = {}
tls = "none"
from = "breakglass@example.test"
to = ["oncall@example.test"]
"#,
            s.addr().port()
        ));
    }
    c
}

/// A role owned by `dba-leads`, approved by `sre-leads`, telling `alerts`, with an emergency
/// path; `target` is its `[target]` table.
fn role(id: &str, alerts: &[&str], target: &str) -> String {
    let alerts: Vec<String> = alerts.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"
id = "{id}"
title = "Drilled role"
owner = "group:dba-leads"
requesters = ["group:sre"]
default_duration = "30m"
max_duration = "1h"
alerts = [{}]
[approval]
quorum = 1
approvers = ["group:sre-leads"]
[approval.emergency]
allowed = true
max_duration = "15m"
review_within = "24h"
{target}
"#,
        alerts.join(", ")
    )
}

const TOKEN_TARGET: &str = "[target]\nkind = \"token\"\naudience = \"svc\"\nscope = [\"admin\"]\n";

fn pg_target(reader: &str) -> String {
    format!(
        "[target]\nkind = \"postgres\"\ndsn_env = \"LEDGER_ADMIN_DSN\"\nmode = \"login\"\ngrant = [\"{reader}\"]\n"
    )
}

struct DrillWorld {
    bg: Broker,
    dana: String,
    bob: String,
}

fn drill_world(config: &str, roles: &[(&str, &str)], env: &[(&str, &str)]) -> DrillWorld {
    let mut bg = Broker::init(Path::new(BIN), roles);
    let path = bg.data_dir().join("breakglass.toml");
    std::fs::write(&path, config).unwrap();
    bg.set_env("BREAKGLASS_CONFIG", path.to_str().unwrap());
    bg.set_env("BG_E2E_HMAC", HMAC);
    for (k, v) in env {
        bg.set_env(k, v);
    }
    bg.restart();
    let dana = bg.user("dana", &["dba-leads"]);
    let bob = bg.user("bob", &["sre-leads"]);
    DrillWorld { bg, dana, bob }
}

/// Polls the drill until it has completed; returns its report.
fn completed(w: &DrillWorld, id: &str) -> Value {
    let mut last = Value::Null;
    let done = poll_until(DEADLINE, || {
        last = w.bg.cli_json(&w.dana, &["drills", "show", id]);
        last["passed"].is_boolean()
    });
    assert!(done, "drill did not complete: {last}\n{}", w.bg.logs());
    last
}

fn check<'a>(d: &'a Value, step: &str) -> &'a Value {
    d["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["step"] == step)
        .unwrap_or_else(|| panic!("no `{step}` check in {d}"))
}

fn drill_alerts(hook: &WebhookReceiver, id: &str) -> Vec<Value> {
    hook.delivered()
        .into_iter()
        .map(|r| r.body)
        .filter(|b| b["fields"]["event.drill_id"] == id)
        .collect()
}

/// The target database: one table and a group role that may read it.
fn target() -> (TestDb, String) {
    let db = TestDb::create("bg_target");
    let reader = format!("drill_reader_{}", unique());
    db.execute(&format!(
        "CREATE TABLE t (id int); CREATE ROLE {reader} NOLOGIN;
         GRANT CONNECT ON DATABASE \"{}\" TO {reader};",
        db.name
    ));
    (db, reader)
}

/// Drops the group role the target used (roles are cluster-wide); best effort, as tests share
/// the cluster.
fn drop_role(reader: &str) {
    let _ = breakglass_testkit::pg::Session::connect(&format!(
        "{}/postgres",
        breakglass_testkit::pg::server_url()
    ))
    .and_then(|mut s| s.execute(&format!("DROP ROLE IF EXISTS {reader}")));
}

fn pg_server() -> std::net::SocketAddr {
    let url = breakglass_testkit::pg::server_url();
    let hostport = url.rsplit('@').next().unwrap().trim_end_matches('/');
    hostport.parse().unwrap()
}

/// The login roles this installation left at the target.
fn left_at(db: &TestDb, bg: &Broker) -> i64 {
    let jwks: Value =
        serde_json::from_str(&bg.http("GET", "/.well-known/jwks.json", None, "", vec![]).1)
            .unwrap();
    let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_owned();
    db.query_i64(&format!(
        "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'bg\\_%'
         AND shobj_description(oid, 'pg_authid') LIKE 'breakglass:{kid} %'"
    ))
}

#[test]
fn a_token_drill_goes_through_approval_survives_a_restart_and_proves_every_channel() {
    let hook = WebhookReceiver::start(Some(HMAC.as_bytes()));
    let smtp = SmtpSink::start();
    let mut w = drill_world(
        &config(&hook, Some(&smtp)),
        &[(
            "svc.toml",
            &role("svc-admin", &["oncall", "mail"], TOKEN_TARGET),
        )],
        &[],
    );
    let started = w.bg.cli_json(&w.dana, &["drill", "svc-admin"]);
    let id = started["id"].as_str().unwrap().to_owned();
    let grant = started["grant"].as_str().unwrap().to_owned();
    assert_eq!(started["grant_state"], "requested", "{started}");
    // Human output says what it waits for.
    let listed = w.bg.cli(&w.dana, &["drills", "svc-admin"]);
    assert!(listed.stdout.contains(&id), "{listed:?}");
    // The broker restarts while the drill waits for its approver; the drill is in the store.
    w.bg.kill9();
    w.bg.restart();
    w.bg.cli_json(&w.bob, &["approve", &grant]);
    let d = completed(&w, &id);
    assert_eq!(d["stage"], "passed", "{d}\n{}", w.bg.logs());
    for step in [
        "approval",
        "activation",
        "exercise",
        "revoke",
        "refusal",
        "alerts",
    ] {
        assert_eq!(check(&d, step)["passed"], true, "{step}: {d}");
    }
    assert!(
        check(&d, "alerts")["detail"]
            .as_str()
            .unwrap()
            .contains("oncall, mail")
    );
    // Both channels got the drill-labelled alert.
    assert!(drill_alerts(&hook, &id).iter().any(|b| {
        b["event"] == "drill.started"
            && b["summary"]
                .as_str()
                .unwrap()
                .starts_with("breakglass: DRILL: ")
    }));
    assert!(
        smtp.messages().iter().any(|m| m.data.contains("DRILL")),
        "no drill mail"
    );
    // Its credential was never shown: not even its runner collects it.
    let r =
        w.bg.cli(&w.dana, &["credential", &grant, "--output", "json"]);
    assert_ne!(r.code, 0);
    let err: Value = serde_json::from_str(&r.stderr).unwrap();
    assert_eq!(err["error"]["code"], "drill_credential_not_shown", "{r:?}");
    // The report is a `drill.completed` event; the roles list shows the pass.
    let tail =
        w.bg.cli_json(&w.bg.admin_token, &["audit", "tail", "-n", "1000"]);
    let done: Vec<&Value> = tail
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "drill.completed")
        .collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["passed"], true);
    assert_eq!(done[0]["drill"], true);
    let roles = w.bg.cli_json(&w.dana, &["roles", "list"]);
    assert_eq!(roles[0]["drill"]["last_result"], "passed", "{roles}");
    assert_eq!(roles[0]["drill"]["drill_overdue"], false);
    let human = w.bg.cli(&w.dana, &["drills", "show", &id]);
    assert!(human.stdout.contains("refusal"), "{human:?}");
}

#[test]
fn a_postgres_drill_logs_in_runs_select_1_and_is_refused_after_the_revoke() {
    let (db, reader) = target();
    let hook = WebhookReceiver::start(Some(HMAC.as_bytes()));
    let dsn = format!("postgres://postgres@{}/{}", pg_server(), db.name);
    let w = drill_world(
        &config(&hook, None),
        &[(
            "ledger.toml",
            &role("ledger-read", &["oncall"], &pg_target(&reader)),
        )],
        &[("LEDGER_ADMIN_DSN", &dsn)],
    );
    let started =
        w.bg.cli_json(&w.dana, &["drill", "ledger-read", "--emergency"]);
    let id = started["id"].as_str().unwrap().to_owned();
    let d = completed(&w, &id);
    assert_eq!(d["stage"], "passed", "{d}\n{}", w.bg.logs());
    let exercise = check(&d, "exercise")["detail"].as_str().unwrap().to_owned();
    assert!(exercise.contains("and ran `SELECT 1`"), "{exercise}");
    let refusal = check(&d, "refusal")["detail"].as_str().unwrap().to_owned();
    assert!(refusal.contains("the login is refused"), "{refusal}");
    assert_eq!(left_at(&db, &w.bg), 0, "no privilege left at the target");
    drop_role(&reader);
}

#[test]
fn a_drill_whose_target_is_down_fails_cleanly_with_its_report_and_leaves_nothing() {
    let (db, reader) = target();
    let hook = WebhookReceiver::start(Some(HMAC.as_bytes()));
    let mut proxy = TcpProxy::start(pg_server());
    let dsn = format!("postgres://postgres@{}/{}", proxy.addr(), db.name);
    let w = drill_world(
        &config(&hook, None),
        &[(
            "ledger.toml",
            &role("ledger-read", &["oncall"], &pg_target(&reader)),
        )],
        &[("LEDGER_ADMIN_DSN", &dsn)],
    );
    proxy.down();
    let started =
        w.bg.cli_json(&w.dana, &["drill", "ledger-read", "--emergency"]);
    let id = started["id"].as_str().unwrap().to_owned();
    let grant = started["grant"].as_str().unwrap().to_owned();
    let d = completed(&w, &id);
    assert_eq!(d["stage"], "failed", "{d}");
    assert_eq!(d["failed"], serde_json::json!(["activation"]), "{d}");
    let activation = check(&d, "activation")["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        activation.starts_with("the target did not issue the credential: "),
        "{activation}"
    );
    // The channels still heard of it, and the failure alerts at high severity, naming the step.
    assert_eq!(check(&d, "alerts")["passed"], true, "{d}");
    let failed = poll_until(DEADLINE, || {
        drill_alerts(&hook, &id).iter().any(|b| {
            b["event"] == "drill.completed"
                && b["severity"] == "high"
                && b["summary"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("FAILED at step `activation`")
        })
    });
    assert!(failed, "{:?}", hook.delivered());
    // Nothing is left behind: the grant failed and no login role reached the target.
    assert_eq!(
        w.bg.cli_json(&w.dana, &["grants", "show", &grant])["state"],
        "failed"
    );
    proxy.up();
    assert_eq!(left_at(&db, &w.bg), 0);
    drop_role(&reader);
}
