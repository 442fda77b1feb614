//! Owner attestation end to end, with the real binary: `roles list` shows where each role stands,
//! someone outside the owner group and an unknown role are refused with a clear error that changes
//! nothing, and the owner's `roles attest` is recorded and shown.

use serde_json::Value;

use super::*;

fn attested_events(w: &World) -> Vec<Value> {
    w.bg.cli_json(&w.bg.admin_token, &["audit", "tail", "-n", "10000"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "role.attested")
        .cloned()
        .collect()
}

fn attestation(w: &World, role: &str) -> Value {
    let roles = w.bg.cli_json(&w.alice, &["roles", "list"]);
    roles
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == role)
        .unwrap()["attestation"]
        .clone()
}

#[test]
fn an_owner_attests_a_role_and_others_cannot() {
    let w = world();
    let dana = w.bg.user("dana", &["dba-leads"]);

    // Newly loaded: due two weeks from now, reminded already, still taking requests.
    let a = attestation(&w, "prod-db-admin");
    assert_eq!(a["status"], "due_soon", "{a}");
    assert_eq!(a["last_attested"], Value::Null);
    assert_eq!(a["on_lapse"], "disable");
    let human = w.bg.cli(&w.alice, &["roles", "list"]);
    assert_eq!(human.code, 0, "{human:?}");
    assert!(human.stdout.contains("ATTESTATION"), "{}", human.stdout);
    assert!(human.stdout.contains("due_soon"), "{}", human.stdout);

    // Someone outside the owner group: refused, with the owner group named; nothing recorded.
    let r = w.bg.cli(
        &w.alice,
        &["roles", "attest", "prod-db-admin", "--note", "looks fine"],
    );
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stderr.contains(
            "error: `alice` is not in the owner group `group:dba-leads` of role `prod-db-admin`"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("help: a member of `group:dba-leads` must attest it"),
        "{}",
        r.stderr
    );
    // An unknown role.
    let r = w.bg.cli(&dana, &["roles", "attest", "nope", "--note", "x"]);
    assert_eq!(r.code, 5, "{r:?}");
    assert!(r.stderr.contains("unknown role `nope`"), "{}", r.stderr);
    assert!(attested_events(&w).is_empty());
    assert_eq!(attestation(&w, "prod-db-admin")["status"], "due_soon");

    // The owner (stepped up when enrolling) attests.
    let r = w.bg.cli(
        &dana,
        &[
            "roles",
            "attest",
            "prod-db-admin",
            "--note",
            "still needed; scope checked against the runbook",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("attested role prod-db-admin as dana"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("current"), "{}", r.stdout);
    let events = attested_events(&w);
    assert_eq!(events.len(), 1);
    let role = w.bg.cli_json(&w.alice, &["roles", "show", "prod-db-admin"]);
    assert_eq!(events[0]["role"], "prod-db-admin");
    assert_eq!(events[0]["by"], "dana");
    assert_eq!(events[0]["hash"], role["hash"]);
    assert_eq!(
        events[0]["note"],
        "still needed; scope checked against the runbook"
    );
    let a = attestation(&w, "prod-db-admin");
    assert_eq!(a["status"], "current", "{a}");
    assert_eq!(a["last_attested_by"], "dana");
    let human = w.bg.cli(&w.alice, &["roles", "list"]);
    let line = human
        .stdout
        .lines()
        .find(|l| l.starts_with("prod-db-admin"))
        .unwrap();
    assert!(line.contains("current") && line.contains("dana"), "{line}");
    // The other role is untouched.
    assert_eq!(attestation(&w, "payments-readonly")["status"], "due_soon");
}

#[test]
fn a_new_role_is_reminded_on_its_channels_at_once() {
    use breakglass_testkit::webhook::WebhookReceiver;

    use super::alerts::{HMAC, alert_world, role};

    let hook = WebhookReceiver::start(Some(HMAC.as_bytes()));
    let config = format!(
        r#"
[channels.oncall]
kind = "webhook"
url = "{}"
hmac_key = {{ env = "BG_E2E_HMAC" }}
"#,
        hook.url("/alerts")
    );
    let w = alert_world(
        &config,
        &[("svc.toml", &role("svc-admin", "10m", &["oncall"]))],
    );
    // Never attested: due two weeks after it loaded, so the reminder goes out at once.
    let reminded = || {
        hook.delivered()
            .into_iter()
            .filter(|r| r.body["event"] == "role.attestation_due")
            .collect::<Vec<_>>()
    };
    assert!(
        poll_until(DEADLINE, || !reminded().is_empty()),
        "{}",
        w.bg.logs()
    );
    let got = reminded();
    assert_eq!(got.len(), 1, "{got:?}");
    let r = &got[0];
    assert!(r.signature_ok);
    assert_eq!(r.body["severity"], "warning");
    assert_eq!(r.body["fields"]["event.role"], "svc-admin");
    assert_eq!(r.body["fields"]["event.owner"], "group:sre-leads");
    let summary = r.body["summary"].as_str().unwrap();
    assert!(
        summary.contains("role svc-admin must be attested by")
            && summary.contains("breakglass roles attest svc-admin"),
        "{summary}"
    );
    assert_eq!(
        attestation_of(&w.bg, &w.alice, "svc-admin")["status"],
        "due_soon"
    );
}

fn attestation_of(bg: &Broker, token: &str, role: &str) -> Value {
    bg.cli_json(token, &["roles", "show", role])["attestation"].clone()
}
