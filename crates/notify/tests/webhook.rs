//! The webhook channel against a real HTTP receiver (an axum server in testkit) that checks the
//! HMAC signature independently.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use breakglass_core::Timestamp;
use breakglass_notify::webhook::{Format, Webhook, WebhookConfig};
use breakglass_notify::{Alert, Channel as _, ChannelConfig, ChannelError, SecretSource, Severity};
use breakglass_testkit::webhook::WebhookReceiver;

const KEY: &str = "test-hmac-key-0123456789abcdef";

fn alert() -> Alert {
    Alert {
        id: "breakglass/test/1a2b:17:oncall".into(),
        event: "grant.activated".into(),
        seq: 17,
        severity: Severity::High,
        summary: "alice activated prod-db-admin until 12:30 UTC (INC-42)".into(),
        fields: BTreeMap::from([
            (
                "grant".into(),
                "6f1c0d2e-0000-4000-8000-000000000001".into(),
            ),
            ("role".into(), "prod-db-admin".into()),
            ("requester".into(), "alice".into()),
            ("reason".into(), "primary is down".into()),
        ]),
        time: Timestamp::from_unix_millis(1_795_534_336_123),
    }
}

fn key_file() -> (tempfile::TempDir, SecretSource) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hmac.key");
    std::fs::write(&path, format!("{KEY}\n")).unwrap();
    (
        dir,
        SecretSource {
            env: None,
            file: Some(path),
        },
    )
}

fn channel(url: &str, format: Format, key: Option<SecretSource>) -> Webhook {
    Webhook::new(
        "oncall",
        &WebhookConfig {
            url: url.into(),
            format,
            hmac_key: key,
            timeout: Some("2s".parse().unwrap()),
        },
    )
    .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Runtime::new().unwrap()
}

#[test]
fn a_signed_generic_alert_arrives_and_verifies() {
    let rx = WebhookReceiver::start(Some(KEY.as_bytes()));
    let (_dir, key) = key_file();
    let ch = channel(&rx.url("/hooks/oncall"), Format::Generic, Some(key));
    rt().block_on(ch.send(&alert())).unwrap();
    let got = rx.delivered();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert!(r.signature_ok, "signature must verify: {r:?}");
    assert_eq!(r.path, "/hooks/oncall");
    assert_eq!(
        r.alert_id.as_deref(),
        Some("breakglass/test/1a2b:17:oncall")
    );
    assert_eq!(r.body["event"], "grant.activated");
    assert_eq!(r.body["severity"], "high");
    assert_eq!(r.body["seq"], 17);
    assert_eq!(r.body["fields"]["role"], "prod-db-admin");
    assert_eq!(r.body["time"], "2026-11-24T15:32:16.123Z");
    assert!(!r.raw.contains(KEY), "the key is never sent");
    // A body changed in transit no longer matches its signature.
    let forged = breakglass_testkit::webhook::expected_signature(
        KEY.as_bytes(),
        r.timestamp.as_deref().unwrap(),
        r.raw.replace("alice", "mallory").as_bytes(),
    );
    assert_ne!(Some(forged), r.signature);
}

#[test]
fn slack_format_carries_the_summary_and_fields() {
    let rx = WebhookReceiver::start(None);
    let ch = channel(&rx.url("/services/T000/B000/XXXX"), Format::Slack, None);
    rt().block_on(ch.send(&alert())).unwrap();
    let r = &rx.delivered()[0];
    assert!(r.signature.is_none(), "unsigned without a key");
    let text = r.body["text"].as_str().unwrap();
    assert!(
        text.starts_with(":rotating_light: alice activated prod-db-admin"),
        "{text}"
    );
    let fields = r.body["blocks"][1]["text"]["text"].as_str().unwrap();
    assert!(fields.contains("*requester:* alice"), "{fields}");
}

#[test]
fn failures_say_what_happened_and_never_quote_the_url_path() {
    let rx = WebhookReceiver::start(None);
    let rt = rt();
    // Server errors and rate limits are worth retrying; other refusals are not.
    for (status, transient) in [(503, true), (429, true), (400, false), (302, false)] {
        rx.set_status(status);
        let ch = channel(&rx.url("/secret-token-path"), Format::Generic, None);
        let err = rt.block_on(ch.send(&alert())).unwrap_err();
        assert_eq!(
            matches!(err, ChannelError::Unreachable(_)),
            transient,
            "{status}: {err}"
        );
        assert!(err.to_string().contains(&status.to_string()), "{err}");
        assert!(!err.to_string().contains("secret-token-path"), "{err}");
    }
    rx.set_status(0);
    // Nothing listening: quick, and transient.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/secret-token-path", closed.local_addr().unwrap());
    drop(closed);
    let started = Instant::now();
    let err = rt
        .block_on(channel(&url, Format::Generic, None).send(&alert()))
        .unwrap_err();
    assert!(matches!(err, ChannelError::Unreachable(_)), "{err}");
    assert!(!err.to_string().contains("secret-token-path"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // A receiver that hangs is cut off at the channel's timeout.
    rx.set_hang(true);
    let started = Instant::now();
    let err = rt
        .block_on(channel(&rx.url("/x"), Format::Generic, None).send(&alert()))
        .unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn configuration_is_strict_and_secrets_stay_out_of_it() {
    let parse = |text: &str| toml::from_str::<BTreeMap<String, ChannelConfig>>(text);
    let ok = parse(
        r#"[oncall]
kind = "webhook"
url = "https://hooks.example.com/x"
format = "slack"
hmac_key = { env = "BG_TEST_UNSET_HMAC_VAR" }
timeout = "5s"
"#,
    )
    .unwrap();
    // The variable is not set: the error names the channel, the key and the variable.
    let err = ok["oncall"].build("oncall").unwrap_err().to_string();
    assert!(
        err.contains("channel `oncall`") && err.contains("BG_TEST_UNSET_HMAC_VAR"),
        "{err}"
    );
    for (text, needle) in [
        (
            "kind = \"webhook\"\nurl = \"https://h/x\"\nhmac_key = \"literal-secret\"\n",
            "never written into the config file itself",
        ),
        (
            "kind = \"webhook\"\nurl = \"https://h/x\"\nretries = 3\n",
            "retries",
        ),
        ("kind = \"pager\"\n", "pager"),
        (
            "kind = \"webhook\"\nurl = \"https://h/x\"\nformat = \"teams\"\n",
            "teams",
        ),
    ] {
        let err = parse(&format!("[c]\n{text}")).unwrap_err().to_string();
        assert!(err.contains(needle), "{needle}: {err}");
    }
    for (url, needle) in [
        ("ftp://h/x", "https://"),
        ("https://user:pw@h/x", "credentials"),
        ("not a url", "not a URL"),
    ] {
        let err = Webhook::new(
            "c",
            &WebhookConfig {
                url: url.into(),
                format: Format::Generic,
                hmac_key: None,
                timeout: None,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(needle), "{url}: {err}");
        assert!(!err.contains("pw@"), "{err}");
    }
    let (_dir, key) = key_file();
    let ch = channel("https://hooks.example.com/x", Format::Generic, Some(key));
    assert!(!format!("{ch:?}").contains(KEY));
}
