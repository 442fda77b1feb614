//! `/metrics` and `/readyz` against the real binary: the counters and the store's gauges after a
//! grant's whole life, and `degraded` while an alert channel cannot be reached.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;

use super::*;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const ALERTING_ROLE: &str = r#"
id = "svc-admin"
title = "Alerting role"
owner = "group:sre-leads"
requesters = ["group:sre"]
default_duration = "30m"
max_duration = "1h"
alerts = ["oncall"]
[approval]
quorum = 1
approvers = ["group:sre-leads"]
[target]
kind = "token"
audience = "svc"
scope = ["admin"]
"#;

/// A plain `GET` with no token: `(status, content type, body)`.
fn get(bg: &Broker, path: &str) -> (u16, String, String) {
    let addr = bg.url().trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// Scrapes `/metrics`, checks it is well-formed OpenMetrics text, and returns its samples
/// (`name{labels}` → value).
fn scrape(bg: &Broker) -> (String, Vec<(String, f64)>) {
    let (status, content_type, body) = get(bg, "/metrics");
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, OPENMETRICS);
    assert!(body.ends_with("# EOF\n"), "{body}");
    let samples = body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("`{l}`"));
            assert!(series.starts_with("breakglass_"), "`{l}`");
            let value = value.parse().unwrap_or_else(|_| panic!("`{l}`"));
            (series.to_owned(), value)
        })
        .collect();
    for l in body.lines().filter(|l| l.starts_with('#')) {
        assert!(
            ["# HELP ", "# TYPE ", "# UNIT ", "# EOF"]
                .iter()
                .any(|p| l.starts_with(p)),
            "`{l}`"
        );
    }
    (body, samples)
}

fn sample(samples: &[(String, f64)], series: &str) -> Option<f64> {
    samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v)
}

#[test]
fn metrics_count_a_grants_life_without_any_secret() {
    let w = world();
    let id = active_grant(&w, "30m");
    let g =
        w.bg.cli_json(&w.carol, &["revoke", &id, "--reason", "incident closed"]);
    assert_eq!(g["state"], "revoked");

    let (body, samples) = scrape(&w.bg);
    let value = |series: &str| {
        sample(&samples, series).unwrap_or_else(|| panic!("no `{series}` in:\n{body}"))
    };
    assert_eq!(value(r#"breakglass_grants{state="revoked"}"#), 1.0);
    for state in ["requested", "active", "expired", "timed_out", "failed"] {
        assert_eq!(
            value(&format!(r#"breakglass_grants{{state="{state}"}}"#)),
            0.0
        );
    }
    assert_eq!(value("breakglass_requests_total"), 1.0);
    assert_eq!(value("breakglass_approvals_total"), 1.0);
    assert_eq!(value("breakglass_activations_total"), 1.0);
    assert_eq!(value("breakglass_revocations_total"), 1.0);
    assert_eq!(value("breakglass_expiries_total"), 0.0);
    assert_eq!(value("breakglass_revoke_retries_total"), 0.0);
    assert!(value("breakglass_audit_events") > 0.0);
    // The activation signed a checkpoint.
    assert!(value("breakglass_audit_last_checkpoint_age_seconds") >= 0.0);
    let covered = value("breakglass_audit_last_checkpoint_size");
    assert!(covered > 0.0 && covered <= value("breakglass_audit_events"));
    assert!(
        body.contains("# TYPE breakglass_requests counter"),
        "{body}"
    );
    assert!(body.contains("# TYPE breakglass_grants gauge"), "{body}");
    for token in [&w.bg.admin_token, &w.alice, &w.bob, &w.carol] {
        assert!(
            !body.contains(token.as_str()),
            "an API token is in /metrics"
        );
        // The secret is the token's last 43 characters.
        let secret = &token[token.len() - 43..];
        assert!(!body.contains(secret), "a token secret is in /metrics");
    }
    // No alert channel is configured, so no channel is failing.
    let (status, _, ready) = get(&w.bg, "/readyz");
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&ready).unwrap()["status"],
        "ready"
    );
}

#[test]
fn readyz_is_degraded_but_200_while_an_alert_channel_fails() {
    let closed = breakglass_testkit::sinks::closed_addr();
    let mut bg = Broker::init(Path::new(BIN), &[("svc.toml", ALERTING_ROLE)]);
    let path = bg.data_dir().join("breakglass.toml");
    std::fs::write(
        &path,
        format!(
            "[channels.oncall]\nkind = \"webhook\"\nurl = \"http://{closed}/x\"\ntimeout = \"2s\"\n"
        ),
    )
    .unwrap();
    bg.set_env("BREAKGLASS_CONFIG", path.to_str().unwrap());
    bg.restart();
    let alice = bg.user("alice", &["sre"]);

    bg.cli_json(&alice, &["request", "svc-admin", "--reason", "db down"]);
    let mut last = Value::Null;
    assert!(
        poll_until(DEADLINE, || {
            let (status, _, body) = get(&bg, "/readyz");
            assert_eq!(status, 200, "degraded is still 200: {body}");
            last = serde_json::from_str(&body).unwrap();
            last["status"] == "degraded"
        }),
        "readyz: {last}; logs:\n{}",
        bg.logs()
    );
    assert_eq!(last["failing_channels"], serde_json::json!(["oncall"]));
    let (body, samples) = scrape(&bg);
    let failing = sample(
        &samples,
        r#"breakglass_alert_outbox_failing{channel="oncall"}"#,
    );
    assert!(failing.is_some_and(|n| n >= 1.0), "{body}");
    let pending = sample(
        &samples,
        r#"breakglass_alert_outbox_pending{channel="oncall"}"#,
    );
    assert!(pending.is_some_and(|n| n >= 1.0), "{body}");
    let age = sample(
        &samples,
        r#"breakglass_alert_outbox_oldest_age_seconds{channel="oncall"}"#,
    );
    assert!(age.is_some_and(|s| s >= 0.0), "{body}");
    assert_eq!(
        sample(
            &samples,
            r#"breakglass_alert_outbox_dead{channel="oncall"}"#
        ),
        Some(0.0)
    );
    // Counted by the dispatcher as each attempt fails.
    let failures = sample(
        &samples,
        r#"breakglass_alert_delivery_failures_total{channel="oncall"}"#,
    );
    assert!(failures.is_some_and(|n| n >= 1.0), "{body}");
    bg.kill9();
}
