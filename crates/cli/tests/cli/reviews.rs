//! Post-use reviews end to end: the real binary, a real PostgreSQL target whose live session the
//! revoke ends, and a real webhook receiver for the role's channel and the `always` channel. The
//! reviewer reads the evidence, which the CLI proves event by event against the signed checkpoint
//! (with the broker's key, then with a pinned one, and refuses loudly with a wrong one), records a
//! misuse review with a step-up, and the alert reaches both channels at high severity.

use breakglass_testkit::pg::{Session, TestDb, unique};
use breakglass_testkit::webhook::WebhookReceiver;

use super::*;

const HMAC: &str = "e2e-review-hmac-5b1d";

/// The target: a ledger table and a group role that may only read it.
struct Target {
    db: TestDb,
    reader: String,
}

impl Target {
    fn create() -> Self {
        let db = TestDb::create("bg_review_target");
        let reader = format!("review_reader_{}", unique());
        db.execute(&format!(
            "CREATE TABLE ledger (id int PRIMARY KEY, amount bigint);
             INSERT INTO ledger VALUES (1, 100);
             CREATE ROLE {reader} NOLOGIN;
             GRANT CONNECT ON DATABASE \"{}\" TO {reader};
             GRANT USAGE ON SCHEMA public TO {reader};
             GRANT SELECT ON ledger TO {reader};",
            db.name
        ));
        Self { db, reader }
    }

    fn dsn(&self) -> String {
        format!("{}/{}", breakglass_testkit::pg::server_url(), self.db.name)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = Session::connect(&format!(
            "{}/postgres",
            breakglass_testkit::pg::server_url()
        ))
        .and_then(|mut s| s.execute(&format!("DROP ROLE IF EXISTS {}", self.reader)));
    }
}

fn role(reader: &str) -> String {
    format!(
        r#"
id = "ledger"
title = "Read the ledger"
owner = "group:dba"
requesters = ["group:sre"]
default_duration = "30m"
max_duration = "1h"
alerts = ["oncall"]
[approval]
quorum = 1
approvers = ["group:sre-leads"]
[request]
require_incident = true
incident_pattern = "^INC-[0-9]+$"
[review]
reviewers = ["group:security"]
[target]
kind = "postgres"
dsn_env = "LEDGER_ADMIN_DSN"
mode = "login"
grant = ["{reader}"]
"#
    )
}

fn error_code(r: &breakglass_testkit::Run) -> String {
    let v: Value = serde_json::from_str(r.stderr.trim()).unwrap_or(Value::Null);
    v["error"]["code"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn the_whole_review_flow_with_proven_evidence() {
    let target = Target::create();
    let hook = WebhookReceiver::start(Some(HMAC.as_bytes()));
    let config = format!(
        r#"
[alerts]
always = ["security"]

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
        hook.url("/security"),
    );
    let mut bg = Broker::init(Path::new(BIN), &[("ledger.toml", &role(&target.reader))]);
    let path = bg.data_dir().join("breakglass.toml");
    std::fs::write(&path, config).unwrap();
    bg.set_env("BREAKGLASS_CONFIG", path.to_str().unwrap());
    bg.set_env("BG_E2E_HMAC", HMAC);
    bg.set_env("LEDGER_ADMIN_DSN", &target.dsn());
    bg.restart();
    let alice = bg.user("alice", &["sre"]);
    let bob = bg.user("bob", &["sre-leads", "security"]);
    let sam = bg.user("sam", &["security"]);

    // The use: requested with an incident, approved with a comment, the credential collected,
    // a live session at the target, then revoked by its holder.
    let g = bg.cli_json(
        &alice,
        &[
            "request",
            "ledger",
            "--reason",
            "totals are wrong",
            "--incident",
            "INC-77",
        ],
    );
    let id = g["id"].as_str().unwrap().to_owned();
    bg.cli_json(&bob, &["approve", &id, "--comment", "go, but read only"]);
    // Inside the window the holder steps up again: her own action, evidence too.
    let code = bg.fresh_code("alice");
    bg.cli_json(&alice, &["step-up", "--totp", &code]);
    let cred = bg.cli_json(&alice, &["credential", &id])["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut session = Session::connect(&cred).unwrap();
    assert_eq!(session.query_i64("SELECT 1::bigint").unwrap(), 1);
    // Still active: there is nothing to review yet.
    let early = bg.cli(
        &sam,
        &[
            "review",
            &id,
            "--outcome",
            "legitimate",
            "--notes",
            "early",
            "--output",
            "json",
        ],
    );
    assert_eq!(error_code(&early), "still_active", "{early:?}");
    bg.cli_json(&alice, &["revoke", &id, "--reason", "totals fixed"]);
    assert!(
        poll_until(DEADLINE, || session.query_i64("SELECT 1::bigint").is_err()),
        "the revoke ended the live session"
    );

    // The reviewer sees it owed, and the requester does not get to review it.
    let owed = bg.cli_json(&sam, &["reviews", "--owed"]);
    assert_eq!(owed.as_array().unwrap().len(), 1, "{owed}");
    assert_eq!(owed[0]["grant"], id.as_str());
    assert_eq!(owed[0]["status"], "owed");
    assert_eq!(owed[0]["may_record"], true);
    let mine = bg.cli_json(&bob, &["reviews", "--mine"]);
    assert!(
        mine.as_array().unwrap().is_empty(),
        "bob approved it: {mine}"
    );

    // The evidence, once every alert about the grant has been delivered.
    let mut evidence = Value::Null;
    assert!(
        poll_until(DEADLINE, || {
            evidence = bg.cli_json(&sam, &["review", &id]);
            let alerts = evidence["alerts"].as_array().cloned().unwrap_or_default();
            !alerts.is_empty() && alerts.iter().all(|a| a["status"] == "delivered")
        }),
        "alerts delivered: {evidence}"
    );
    assert_eq!(evidence["verification"]["verified"], true);
    assert_eq!(evidence["verification"]["pinned"], false);
    let s = &evidence["summary"];
    assert_eq!(s["reason"], "totals are wrong");
    assert_eq!(s["incident"], "INC-77");
    assert_eq!(s["approvals"][0]["approver"], "bob");
    assert_eq!(s["approvals"][0]["comment"], "go, but read only");
    assert!(s["waited_for_approval_ms"].is_number(), "{s}");
    assert!(s["active_for_ms"].is_number(), "{s}");
    assert_eq!(s["ended_how"], "revoked by alice: totals fixed");
    assert_eq!(s["collected"][0]["to"], "alice", "the approval was used");
    let target_facts = s["target"].as_array().unwrap();
    assert!(
        target_facts
            .iter()
            .any(|f| f.as_str().unwrap().contains("1 session(s) ended at revoke")),
        "{s}"
    );
    let alerts = evidence["alerts"].as_array().unwrap();
    assert!(
        alerts
            .iter()
            .any(|a| a["event"] == "grant.activated" && a["channel"] == "oncall"),
        "{alerts:?}"
    );
    assert!(
        alerts
            .iter()
            .any(|a| a["event"] == "grant.activated" && a["channel"] == "security"),
        "{alerts:?}"
    );
    // The requester's own actions inside the window are there too.
    assert!(
        evidence["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["about"] == "requester"),
        "{evidence}"
    );
    // The human view says it was verified, and tells the story.
    let human = bg.cli(&sam, &["review", &id]);
    assert_eq!(human.code, 0, "{human:?}");
    for needle in [
        "reason:   totals are wrong",
        "incident: INC-77",
        "by bob: \"go, but read only\"",
        "credential: collected",
        "session(s) ended at revoke",
        "revoked by alice: totals fixed",
        "delivered",
        "verified: ",
        "the broker's key",
    ] {
        assert!(
            human.stdout.contains(needle),
            "`{needle}` in:\n{}",
            human.stdout
        );
    }
    // A key the reviewer kept: verified against it. A wrong key: refused loudly, nothing shown.
    let key = bg.cli_json(&bg.admin_token, &["audit", "key"])["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let pinned = bg.cli_json(&sam, &["review", &id, "--verifier-key", &key]);
    assert_eq!(pinned["verification"]["pinned"], true);
    let other = Broker::start(Path::new(BIN), &[]);
    let wrong = other.cli_json(&other.admin_token, &["audit", "key"])["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = bg.cli(&sam, &["review", &id, "--verifier-key", &wrong]);
    assert_eq!(refused.code, 9, "{refused:?}");
    assert!(refused.stdout.is_empty(), "nothing shown: {refused:?}");
    assert!(
        refused.stderr.contains("does not verify"),
        "{}",
        refused.stderr
    );

    // Bad input changes nothing: the approver, the requester, a second final review.
    let by_bob = bg.cli(
        &bob,
        &[
            "review",
            &id,
            "--outcome",
            "legitimate",
            "--notes",
            "mine",
            "--output",
            "json",
        ],
    );
    assert_eq!(error_code(&by_bob), "approver_review", "{by_bob:?}");
    let by_alice = bg.cli(
        &alice,
        &[
            "review",
            &id,
            "--outcome",
            "legitimate",
            "--notes",
            "mine",
            "--output",
            "json",
        ],
    );
    assert_eq!(error_code(&by_alice), "not_reviewer", "{by_alice:?}");
    let owed_again = bg.cli_json(&sam, &["reviews", "--owed"]);
    assert_eq!(owed_again[0]["status"], "owed");

    // The reviewer records misuse (sam's session was stepped up when enrolling).
    let code = bg.fresh_code("sam");
    let r = bg.cli_json(
        &sam,
        &[
            "review",
            &id,
            "--outcome",
            "misuse",
            "--notes",
            "read tables outside INC-77",
            "--totp",
            &code,
        ],
    );
    assert_eq!(r["outcome"], "misuse");
    assert_eq!(r["final"], true);
    let again = bg.cli(
        &sam,
        &[
            "review",
            &id,
            "--outcome",
            "legitimate",
            "--notes",
            "again",
            "--output",
            "json",
        ],
    );
    assert_eq!(error_code(&again), "already_reviewed", "{again:?}");
    assert!(
        bg.cli_json(&sam, &["reviews", "--owed"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    let all = bg.cli_json(&sam, &["reviews"]);
    assert_eq!(all[0]["status"], "misuse");
    assert_eq!(all[0]["reviewer"], "sam");

    // Misuse is alerted at high severity on the role's channel and on `always`.
    let misuse_at = |path: &str| {
        hook.delivered().into_iter().any(|r| {
            r.path == path
                && r.body["event"] == "review.recorded"
                && r.body["severity"] == "high"
                && r.signature_ok
        })
    };
    assert!(
        poll_until(DEADLINE, || misuse_at("/oncall") && misuse_at("/security")),
        "{:?}",
        hook.delivered()
            .iter()
            .map(|r| (r.path.clone(), r.body["event"].clone()))
            .collect::<Vec<_>>()
    );
    // The review is in the proven evidence now.
    let after = bg.cli_json(&sam, &["review", &id]);
    assert_eq!(after["summary"]["reviews"][0]["outcome"], "misuse");
    assert_eq!(after["review"]["status"], "misuse");
}
