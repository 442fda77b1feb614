//! Lockdown end to end: the real binary on a PostgreSQL store, a real PostgreSQL target with
//! sessions held open on the issued credentials, and a real webhook receiver for two channels.
//! One command revokes every active grant at the target, ends their live sessions, cancels what
//! waits, refuses new requests (emergency ones included) and alerts every channel; `lift` opens
//! the path again, and lifting with nothing in force is refused and changes nothing.

use std::time::Duration;

use breakglass_testkit::pg::{Session, TestDb, unique};
use breakglass_testkit::webhook::WebhookReceiver;

use super::*;

/// A `postgres` role on the target, alerting only `oncall`, with emergency self-activation.
fn ledger_role(reader: &str) -> String {
    format!(
        r#"
id = "ledger-read"
title = "Read the ledger database"
owner = "group:sre-leads"
requesters = ["group:sre"]
default_duration = "30m"
max_duration = "1h"
alerts = ["oncall"]
[approval]
quorum = 1
approvers = ["group:sre-leads"]
[approval.emergency]
allowed = true
max_duration = "15m"
review_within = "24h"
[target]
kind = "postgres"
dsn_env = "LEDGER_ADMIN_DSN"
mode = "login"
grant = ["{reader}"]
"#
    )
}

/// The target database and a group role that may read its ledger.
fn target() -> (TestDb, String) {
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
    (db, reader)
}

fn bg_logins(db: &TestDb) -> i64 {
    db.query_i64(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND usename LIKE 'bg\\_%'",
        db.name
    ))
}

#[test]
fn lockdown_revokes_active_postgres_grants_and_ends_their_live_sessions() {
    let hook = WebhookReceiver::start(Some(alerts::HMAC.as_bytes()));
    let store = TestDb::create("bg_store");
    let (ledger, reader) = target();
    let url = breakglass_testkit::pg::server_url();
    let server = url.rsplit('@').next().unwrap().trim_end_matches('/');
    let dsn = format!("postgres://postgres@{server}/{}", ledger.name);
    let mut bg = Broker::init_postgres(
        Path::new(BIN),
        &store.url,
        &[("ledger.toml", &ledger_role(&reader))],
    );
    let config = bg.data_dir().join("breakglass.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[alerts]
always = []

[channels.oncall]
kind = "webhook"
url = "{}"
hmac_key = {{ env = "BG_E2E_HMAC" }}

[channels.security]
kind = "webhook"
url = "{}"
hmac_key = {{ env = "BG_E2E_HMAC" }}
"#,
            hook.url("/oncall"),
            hook.url("/security")
        ),
    )
    .unwrap();
    bg.set_env("BREAKGLASS_CONFIG", config.to_str().unwrap());
    bg.set_env("BG_E2E_HMAC", alerts::HMAC);
    bg.set_env("LEDGER_ADMIN_DSN", &dsn);
    bg.restart();
    let alice = bg.user("alice", &["sre"]);
    let carol = bg.user("carol", &["sre"]);
    let bob = bg.user("bob", &["sre-leads"]);

    // Two active grants, each with a session held open on its credential, and one waiting.
    let mut held = Vec::new();
    let mut ids = Vec::new();
    for who in [&alice, &carol] {
        let g = bg.cli_json(
            who,
            &[
                "request",
                "ledger-read",
                "--reason",
                "ledger totals are wrong",
            ],
        );
        let id = g["id"].as_str().unwrap().to_owned();
        assert_eq!(bg.cli_json(&bob, &["approve", &id])["state"], "active");
        let cred = bg.cli_json(who, &["credential", &id])["credential"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut s = Session::connect(&cred).unwrap();
        assert_eq!(
            s.query_i64("SELECT sum(amount)::bigint FROM ledger")
                .unwrap(),
            350
        );
        held.push((s, cred));
        ids.push(id);
    }
    let waiting = bg.cli_json(&alice, &["request", "ledger-read", "--reason", "later"]);
    let waiting = waiting["id"].as_str().unwrap().to_owned();
    assert_eq!(bg_logins(&ledger), 2);

    // Lifting with nothing in force: a clear refusal, and nothing changes.
    let r = bg.cli(&bg.admin_token, &["lockdown", "lift", "--output", "json"]);
    assert_eq!(r.code, 6, "{r:#?}");
    assert!(r.stderr.contains("not_locked_down"), "{r:#?}");
    assert_eq!(
        bg.cli_json(&bob, &["lockdown", "status"])["locked_down"],
        false
    );

    let l = bg.cli_json(
        &bg.admin_token,
        &[
            "lockdown",
            "--role",
            "ledger-read",
            "--reason",
            "approver laptop stolen",
        ],
    );
    assert_eq!(
        (l["revoked"].as_u64(), l["cancelled"].as_u64()),
        (Some(2), Some(1)),
        "{l}"
    );

    // Every live session on the issued credentials is ended, and no new one can start.
    for (s, cred) in &mut held {
        assert!(
            poll_until(Duration::from_secs(10), || s.query_i64("SELECT 1").is_err()),
            "a held session survived the lockdown"
        );
        assert!(Session::connect(cred).is_err());
    }
    assert_eq!(bg_logins(&ledger), 0);
    for id in &ids {
        let g = bg.cli_json(&bob, &["grants", "show", id]);
        assert_eq!(g["state"], "revoked", "{g}");
        assert_eq!(
            g["revoke_reason"],
            "lockdown of role `ledger-read`: approver laptop stolen"
        );
    }
    assert_eq!(
        bg.cli_json(&bob, &["grants", "show", &waiting])["state"],
        "cancelled"
    );

    // New requests are refused, emergency ones included, naming who, why and how to lift.
    let r = bg.cli(&alice, &["request", "ledger-read", "--reason", "again"]);
    assert_eq!(r.code, 4, "{r:#?}");
    assert!(r.stderr.contains("locked down"), "{r:#?}");
    assert!(
        r.stderr
            .contains("breakglass lockdown lift --role ledger-read"),
        "{r:#?}"
    );
    let code = bg.fresh_code("alice");
    let r = bg.cli(
        &alice,
        &[
            "request",
            "ledger-read",
            "--reason",
            "again",
            "--emergency",
            "--totp",
            &code,
        ],
    );
    assert_eq!(r.code, 4, "{r:#?}");
    assert_eq!(bg_logins(&ledger), 0);
    let status = bg.cli(&alice, &["lockdown", "status"]);
    assert!(
        status.stdout.contains("approver laptop stolen"),
        "{status:#?}"
    );

    // Engaging is alerted at high severity on every channel, not only the role's.
    for path in ["/oncall", "/security"] {
        assert!(
            poll_until(DEADLINE, || hook.received().iter().any(|r| r.path == path
                && r.body["event"] == "lockdown.engaged"
                && r.body["severity"] == "high"
                && r.signature_ok)),
            "no lockdown.engaged on {path}: {:?}",
            hook.received()
                .iter()
                .map(|r| (&r.path, &r.body["event"]))
                .collect::<Vec<_>>()
        );
    }

    // Lifted: alerted everywhere too, and the path works again.
    let lifted = bg.cli_json(
        &bg.admin_token,
        &["lockdown", "lift", "--reason", "keys rotated"],
    );
    assert_eq!(lifted["lifted"][0]["scope"], "role:ledger-read", "{lifted}");
    for path in ["/oncall", "/security"] {
        assert!(poll_until(DEADLINE, || {
            hook.received()
                .iter()
                .any(|r| r.path == path && r.body["event"] == "lockdown.lifted")
        }));
    }
    let g = bg.cli_json(&alice, &["request", "ledger-read", "--reason", "after"]);
    let id = g["id"].as_str().unwrap().to_owned();
    assert_eq!(bg.cli_json(&bob, &["approve", &id])["state"], "active");
    drop(held);
    drop(bg);
    drop(ledger);
    let _ = Session::connect(&format!("{url}/postgres"))
        .and_then(|mut s| s.execute(&format!("DROP ROLE IF EXISTS {reader}")));
}
