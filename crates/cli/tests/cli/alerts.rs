//! Alerts end to end: the real binary with a config file, delivering to a real HTTP receiver that
//! checks the HMAC, a real SMTP sink and real syslog sockets.

use breakglass_testkit::Run;
use breakglass_testkit::pg::TcpProxy;
use breakglass_testkit::sinks::{SmtpSink, SyslogTcpSink, SyslogUdpSink};
use breakglass_testkit::webhook::{Received, WebhookReceiver};

use super::*;

pub(super) const HMAC: &str = "e2e-hmac-key-3f9a0c";

pub(super) fn role(id: &str, duration: &str, alerts: &[&str]) -> String {
    let alerts: Vec<String> = alerts.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"
id = "{id}"
title = "Alerting role"
owner = "group:sre-leads"
requesters = ["group:sre"]
default_duration = "{duration}"
max_duration = "1h"
alerts = [{}]
[approval]
quorum = 1
approvers = ["group:sre-leads"]
[target]
kind = "token"
audience = "svc"
scope = ["admin"]
"#,
        alerts.join(", ")
    )
}

pub(super) struct AlertWorld {
    pub(super) bg: Broker,
    pub(super) alice: String,
    pub(super) bob: String,
}

/// A broker whose config file is `config`, with the HMAC key in the environment.
pub(super) fn alert_world(config: &str, roles: &[(&str, &str)]) -> AlertWorld {
    let mut bg = Broker::init(Path::new(BIN), roles);
    let path = bg.data_dir().join("breakglass.toml");
    std::fs::write(&path, config).unwrap();
    bg.set_env("BREAKGLASS_CONFIG", path.to_str().unwrap());
    bg.set_env("BG_E2E_HMAC", HMAC);
    bg.restart();
    let alice = bg.user("alice", &["sre"]);
    let bob = bg.user("bob", &["sre-leads"]);
    AlertWorld { bg, alice, bob }
}

fn events_of(rx: &[Received]) -> Vec<String> {
    rx.iter()
        .map(|r| r.body["event"].as_str().unwrap_or_default().to_owned())
        .collect()
}

pub(super) fn audit_types(w: &AlertWorld) -> Vec<String> {
    w.bg.cli_json(&w.bg.admin_token, &["audit", "tail", "-n", "1000"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn every_trigger_reaches_its_channels_signed_and_without_secrets() {
    let hook = WebhookReceiver::start(Some(HMAC.as_bytes()));
    let smtp = SmtpSink::start();
    // No `transport`: the default, TCP.
    let syslog = SyslogTcpSink::start();
    let config = format!(
        r#"
[alerts]
always = ["siem"]
expiring_soon = "1m"

[channels.oncall]
kind = "webhook"
url = "{}"
hmac_key = {{ env = "BG_E2E_HMAC" }}

[channels.mail]
kind = "smtp"
host = "127.0.0.1"
port = {}
tls = "none"
from = "breakglass@example.test"
to = ["oncall@example.test"]

[channels.siem]
kind = "syslog"
address = "{}"
"#,
        hook.url("/alerts"),
        smtp.addr().port(),
        syslog.addr()
    );
    let mut w = alert_world(
        &config,
        &[("svc.toml", &role("svc-admin", "4s", &["oncall", "mail"]))],
    );

    // request → approve (activated, then warned: 4s is inside the 1m window) → expired
    let g =
        w.bg.cli_json(&w.alice, &["request", "svc-admin", "--reason", "db down"]);
    let id = g["id"].as_str().unwrap().to_owned();
    w.bg.cli_json(&w.bob, &["approve", &id]);
    let jwt = w.bg.cli_json(&w.alice, &["credential", &id])["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    // a denied request, and a revoked grant
    let d =
        w.bg.cli_json(&w.alice, &["request", "svc-admin", "--reason", "again"]);
    let d = d["id"].as_str().unwrap().to_owned();
    w.bg.cli_json(&w.bob, &["deny", &d, "--reason", "not needed"]);
    let r =
        w.bg.cli_json(&w.alice, &["request", "svc-admin", "--reason", "third"]);
    let r = r["id"].as_str().unwrap().to_owned();
    w.bg.cli_json(&w.bob, &["approve", &r]);
    w.bg.cli_json(&w.bob, &["revoke", &r, "--reason", "done"]);
    // a grant that fails at its target (the admin DSN's variable is not set)
    w.bg.write_role(
        "ledger.toml",
        &role("ledger-read", "10m", &["oncall"]).replace(
            "kind = \"token\"\naudience = \"svc\"\nscope = [\"admin\"]",
            "kind = \"postgres\"\ndsn_env = \"BG_E2E_UNSET_DSN\"\nmode = \"login\"\ngrant = [\"reader\"]",
        ),
    );
    w.bg.signal("HUP");
    assert!(poll_until(DEADLINE, || w
        .bg
        .cli(&w.alice, &["roles", "show", "ledger-read"])
        .code
        == 0));
    let f =
        w.bg.cli_json(&w.alice, &["request", "ledger-read", "--reason", "ledger"]);
    let f = f["id"].as_str().unwrap().to_owned();
    assert_eq!(w.bg.cli_json(&w.bob, &["approve", &f])["state"], "failed");
    // a role change (reload)
    w.bg.write_role("ops.toml", &role("ops-admin", "10m", &["oncall"]));
    w.bg.signal("HUP");

    let wanted = [
        "grant.requested",
        "grant.approved",
        "grant.activated",
        "grant.expiring_soon",
        "grant.expired",
        "grant.denied",
        "grant.revoked",
        "grant.failed",
        "role.changed",
    ];
    assert!(
        poll_until(DEADLINE, || {
            let got = events_of(&hook.delivered());
            wanted.iter().all(|e| got.iter().any(|g| g == e))
        }),
        "webhook got {:?}; logs:\n{}",
        events_of(&hook.delivered()),
        w.bg.logs()
    );
    let got = hook.delivered();
    for r in &got {
        assert!(r.signature_ok, "every request is signed: {r:?}");
        assert!(
            r.alert_id
                .as_deref()
                .is_some_and(|i| i.ends_with(":oncall"))
        );
    }
    let activated = got
        .iter()
        .find(|r| r.body["event"] == "grant.activated")
        .unwrap();
    assert_eq!(activated.body["severity"], "high");
    assert_eq!(activated.body["fields"]["grant"], id.as_str());
    assert_eq!(activated.body["fields"]["requester"], "alice");
    assert_eq!(activated.body["fields"]["reason"], "db down");
    // Email: the role's other channel.
    assert!(poll_until(DEADLINE, || smtp.messages().iter().any(|m| m
        .header("subject")
        .is_some_and(|s| s.contains("now holds svc-admin")))));
    // Syslog: `always` hears activations and role changes, not routine requests.
    assert!(poll_until(DEADLINE, || {
        let f = syslog.frames().join("\n");
        f.contains("grant.activated") && f.contains("role.changed") && f.contains("config.changed")
    }));
    assert!(!syslog.frames().join("\n").contains(" grant.requested "));
    // No credential or API token in anything sent.
    let everything = format!(
        "{}\n{}\n{}",
        got.iter()
            .map(|r| r.raw.clone())
            .collect::<Vec<_>>()
            .join("\n"),
        smtp.messages()
            .iter()
            .map(|m| m.data.clone())
            .collect::<Vec<_>>()
            .join("\n"),
        syslog.frames().join("\n")
    );
    for secret in [&jwt, &w.alice, &w.bob, &w.bg.admin_token, &HMAC.to_owned()] {
        assert!(!everything.contains(secret.as_str()), "a secret was sent");
    }
    // The config in force is recorded once; a restart with the same file records nothing new.
    let changed = |w: &AlertWorld| {
        audit_types(w)
            .iter()
            .filter(|t| *t == "config.changed")
            .count()
    };
    assert_eq!(changed(&w), 1);
    w.bg.kill9();
    w.bg.restart();
    assert_eq!(changed(&w), 1);
    w.bg.kill9();
}

#[test]
fn a_receiver_down_for_a_while_gets_every_alert_once_after_it_returns() {
    let hook = WebhookReceiver::start(Some(HMAC.as_bytes()));
    let mut proxy = TcpProxy::start(hook.addr());
    let config = format!(
        "[channels.oncall]\nkind = \"webhook\"\nurl = \"http://{}/a\"\nhmac_key = {{ env = \"BG_E2E_HMAC\" }}\ntimeout = \"2s\"\n",
        proxy.addr()
    );
    let mut w = alert_world(
        &config,
        &[("svc.toml", &role("svc-admin", "30m", &["oncall"]))],
    );
    proxy.down();
    let g =
        w.bg.cli_json(&w.alice, &["request", "svc-admin", "--reason", "x"]);
    let id = g["id"].as_str().unwrap().to_owned();
    assert!(
        poll_until(DEADLINE, || w
            .bg
            .logs()
            .contains("alert delivery failed; will retry")),
        "{}",
        w.bg.logs()
    );
    // A broker killed while the alert is still owed delivers it after restart.
    w.bg.kill9();
    proxy.up();
    w.bg.restart();
    w.bg.cli_json(&w.bob, &["approve", &id]);
    assert!(
        poll_until(DEADLINE, || {
            let got = events_of(&hook.delivered());
            got.contains(&"grant.requested".to_owned())
                && got.contains(&"grant.activated".to_owned())
        }),
        "{}",
        w.bg.logs()
    );
    let mut ids: Vec<String> = hook
        .delivered()
        .iter()
        .filter_map(|r| r.alert_id.clone())
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        n,
        "each alert delivered once per idempotency key"
    );
}

#[test]
fn a_receiver_down_for_good_is_a_dead_letter_audited_and_told_elsewhere() {
    let syslog = SyslogTcpSink::start();
    let closed = breakglass_testkit::sinks::closed_addr();
    let config = format!(
        r#"
[alerts]
max_attempts = 2
[channels.oncall]
kind = "webhook"
url = "http://{closed}/a"
timeout = "2s"
[channels.siem]
kind = "syslog"
address = "{}"
transport = "tcp"
"#,
        syslog.addr()
    );
    let w = alert_world(
        &config,
        &[("svc.toml", &role("svc-admin", "30m", &["oncall"]))],
    );
    w.bg.cli_json(&w.alice, &["request", "svc-admin", "--reason", "x"]);
    assert!(
        poll_until(DEADLINE, || audit_types(&w)
            .contains(&"alert.failed".to_owned())),
        "{}",
        w.bg.logs()
    );
    // The role's load at start (`role.changed`) alerts too; find the request's dead letter.
    assert!(poll_until(DEADLINE, || {
        w.bg.cli_json(&w.bg.admin_token, &["audit", "tail", "-n", "50"])
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "alert.failed" && e["about"] == "grant.requested")
    }));
    let tail =
        w.bg.cli_json(&w.bg.admin_token, &["audit", "tail", "-n", "50"]);
    let failed = tail
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "alert.failed" && e["about"] == "grant.requested")
        .unwrap()
        .clone();
    assert_eq!(failed["channel"], "oncall");
    assert_eq!(failed["about"], "grant.requested");
    assert_eq!(failed["attempts"], 2);
    assert!(!failed.to_string().contains(&w.alice));
    // The remaining channel is told.
    assert!(
        poll_until(DEADLINE, || syslog
            .frames()
            .iter()
            .any(|f| f.contains("alert.failed") && f.contains("oncall"))),
        "{:?}",
        syslog.frames()
    );
}

#[test]
fn a_hanging_receiver_never_holds_up_a_request_or_another_channel() {
    let hook = WebhookReceiver::start(None);
    hook.set_hang(true);
    let other = WebhookReceiver::start(None);
    let config = format!(
        // The longest timeout allowed: a dispatcher that waited for it would miss the deadline.
        "[channels.stuck]\nkind = \"webhook\"\nurl = \"{}\"\ntimeout = \"60s\"\n\
         [channels.oncall]\nkind = \"webhook\"\nurl = \"{}\"\n",
        hook.url("/a"),
        other.url("/b")
    );
    let w = alert_world(
        &config,
        &[("svc.toml", &role("svc-admin", "30m", &["stuck", "oncall"]))],
    );
    let g =
        w.bg.cli_json(&w.alice, &["request", "svc-admin", "--reason", "x"]);
    let id = g["id"].as_str().unwrap().to_owned();
    // The alerts to one channel are stuck in its receiver...
    assert!(poll_until(DEADLINE, || hook.arrivals() > 0));
    // ...while approval, activation and collection go on regardless...
    assert_eq!(w.bg.cli_json(&w.bob, &["approve", &id])["state"], "active");
    assert_eq!(w.bg.cli(&w.alice, &["credential", &id]).code, 0);
    // ...and so do the other channel's alerts, however many the stuck channel has waiting
    // (more than the broker's delivery slots).
    for _ in 0..20 {
        w.bg.cli_json(&w.alice, &["request", "svc-admin", "--reason", "more"]);
    }
    assert!(
        poll_until(DEADLINE, || {
            let got = events_of(&other.delivered());
            got.contains(&"grant.activated".to_owned())
                && got.iter().filter(|e| *e == "grant.requested").count() == 21
        }),
        "{:?}\n{}",
        events_of(&other.delivered()),
        w.bg.logs()
    );
    assert!(hook.arrivals() <= 4, "at most 4 in flight to one channel");
    assert!(
        hook.delivered().is_empty(),
        "nothing was answered while hanging"
    );
}

#[test]
fn a_bad_config_stops_the_start_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = |config: &str, roles: &[(&str, String)]| {
        let _ = std::fs::remove_dir_all(&data);
        let init = Run::of(
            std::process::Command::new(BIN)
                .args(["init", "--data-dir"])
                .arg(&data),
        );
        assert_eq!(init.code, 0, "{init:?}");
        for (name, text) in roles {
            std::fs::write(data.join("roles").join(name), text).unwrap();
        }
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, config).unwrap();
        Run::of(
            std::process::Command::new(BIN)
                .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(&data)
                .arg("--config")
                .arg(&cfg)
                .env_remove("BG_E2E_UNSET"),
        )
    };
    for (config, roles, needle) in [
        (
            "[channels.x]\nkind = \"webhook\"\nurl = \"https://h/\"\nhmac_key = { env = \"BG_E2E_UNSET\" }\n",
            vec![],
            "BG_E2E_UNSET",
        ),
        (
            "[channels.x]\nkind = \"webhook\"\nurl = \"https://h/\"\nhmac_key = \"s3cret\"\n",
            vec![],
            "never written into the config file",
        ),
        ("[alerts]\nalways = [\"nope\"]\n", vec![], "`nope`"),
        ("[alertz]\n", vec![], "alertz"),
        (
            "[channels.x]\nkind = \"syslog\"\naddress = \"127.0.0.1:514\"\ntimeout = \"5m\"\n",
            vec![],
            "at most 60s",
        ),
        (
            "",
            vec![("r.toml", role("r", "10m", &["pager"]))],
            "channel `pager`",
        ),
    ] {
        let r = serve(config, &roles);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
        assert!(!r.stderr.contains("s3cret"), "{}", r.stderr);
    }
    // The example config parses (its secrets are not set here, so it stops at the first).
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/config.example.toml"),
    )
    .unwrap();
    let r = serve(&example, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("BREAKGLASS_SIEM_HMAC_KEY") || r.stderr.contains("smtp-password"),
        "{}",
        r.stderr
    );
}

#[test]
fn signed_checkpoints_are_also_published_to_channels() {
    let hook = WebhookReceiver::start(Some(HMAC.as_bytes()));
    let syslog = SyslogUdpSink::start();
    let config = format!(
        r#"
[alerts]
checkpoints = ["witness", "siem"]
[channels.witness]
kind = "webhook"
url = "{}"
hmac_key = {{ env = "BG_E2E_HMAC" }}
[channels.siem]
kind = "syslog"
address = "{}"
transport = "udp"
"#,
        hook.url("/checkpoints"),
        syslog.addr()
    );
    let mut bg = Broker::init(
        Path::new(BIN),
        &[("svc.toml", &role("svc-admin", "30m", &[]))],
    );
    let path = bg.data_dir().join("breakglass.toml");
    std::fs::write(&path, config).unwrap();
    bg.set_env("BREAKGLASS_CONFIG", path.to_str().unwrap());
    bg.set_env("BG_E2E_HMAC", HMAC);
    bg.set_env("BREAKGLASS_CHECKPOINT_INTERVAL", "1s");
    bg.restart();
    let alice = bg.user("alice", &["sre"]);
    assert!(
        poll_until(DEADLINE, || hook
            .delivered()
            .iter()
            .any(|r| r.body["event"] == "audit.checkpoint")),
        "{}",
        bg.logs()
    );
    let first = hook
        .delivered()
        .into_iter()
        .find(|r| r.body["event"] == "audit.checkpoint")
        .unwrap();
    assert!(first.signature_ok);
    let note = first.body["fields"]["note"].as_str().unwrap().to_owned();
    let size: u64 = first.body["fields"]["size"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // The note is the signed checkpoint exactly as the broker keeps it.
    let origin = bg.cli_json(&bg.admin_token, &["audit", "key"])["origin"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(note.starts_with(&format!("{origin}\n{size}\n")), "{note}");
    assert!(
        note.contains(&format!("\u{2014} {origin} ")),
        "signed: {note}"
    );
    // The log grows, and the next checkpoint goes out too, to both channels.
    bg.cli_json(
        &alice,
        &["request", "svc-admin", "--reason", "grow the log"],
    );
    assert!(poll_until(DEADLINE, || hook.delivered().iter().any(|r| {
        r.body["event"] == "audit.checkpoint"
            && r.body["fields"]["size"]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .is_some_and(|s| s > size)
    })));
    assert!(poll_until(DEADLINE, || syslog
        .frames()
        .iter()
        .any(|f| f.contains("audit.checkpoint"))));
    bg.kill9();
}

#[test]
fn a_tcp_syslog_collector_down_at_activation_receives_the_alert_once_it_is_up() {
    // Nothing listens at `addr` yet: the activation's alert waits in the outbox.
    let addr = breakglass_testkit::sinks::closed_addr();
    let config = format!(
        "[alerts]\nalways = [\"siem\"]\n[channels.siem]\nkind = \"syslog\"\naddress = \"{addr}\"\n"
    );
    let w = alert_world(&config, &[("svc.toml", &role("svc-admin", "30m", &[]))]);
    let g =
        w.bg.cli_json(&w.alice, &["request", "svc-admin", "--reason", "db down"]);
    let id = g["id"].as_str().unwrap().to_owned();
    w.bg.cli_json(&w.bob, &["approve", &id]);
    // The first attempt fails (connection refused) and is scheduled again, not marked delivered.
    assert!(
        poll_until(DEADLINE, || w.bg.logs().contains("connection refused")
            || w.bg.logs().contains("Connection refused")),
        "{}",
        w.bg.logs()
    );
    let collector = SyslogTcpSink::start_at(addr);
    assert!(
        poll_until(DEADLINE, || collector
            .frames()
            .iter()
            .any(|f| f.contains("grant.activated") && f.contains(&id))),
        "{:?}\n{}",
        collector.frames(),
        w.bg.logs()
    );
}
