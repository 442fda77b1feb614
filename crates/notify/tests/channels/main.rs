//! The `smtp` and `syslog` channels against real peers from testkit: a plaintext SMTP server
//! that keeps what it receives (and can refuse or demand a password), and syslog receivers on
//! UDP and TCP (one that is down, then comes up). Channels are built from `[channels.NAME]` TOML,
//! the way the config file does.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use breakglass_core::Timestamp;
use breakglass_notify::syslog::SyslogConfig;
use breakglass_notify::{Alert, Channel, ChannelConfig, ChannelError, Severity};
use breakglass_testkit::sinks::{SmtpSink, closed_addr};
use serde::Deserialize;

/// "Unreachable quickly": well under any channel timeout used here.
const QUICK: Duration = Duration::from_secs(5);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    channels: BTreeMap<String, ChannelConfig>,
}

/// Parses one `[channels.NAME]` table and builds it; any error as its message.
fn build(toml_text: &str) -> Result<Arc<dyn Channel>, String> {
    let file: File = toml::from_str(toml_text).map_err(|e| e.to_string())?;
    let (name, config) = file.channels.into_iter().next().expect("one channel");
    config.build(&name).map_err(|e| e.to_string())
}

/// Parses one `kind = "syslog"` table, for tests that look at the config or the exact bytes.
fn syslog_config(toml_text: &str) -> SyslogConfig {
    let file: File = toml::from_str(toml_text).unwrap();
    match file.channels.into_values().next().expect("one channel") {
        ChannelConfig::Syslog(c) => c,
        other => panic!("not syslog: {other:?}"),
    }
}

fn alert(seq: u64) -> Alert {
    Alert {
        id: format!("breakglass/test/1a2b:{seq}:oncall"),
        event: "grant.activated".into(),
        seq,
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
        time: Timestamp::from_unix_millis(1_800_000_000_123),
    }
}

fn smtp_toml(addr: std::net::SocketAddr, extra: &str) -> String {
    format!(
        r#"
[channels.oncall]
kind = "smtp"
host = "{}"
port = {}
tls = "none"
from = "Breakglass <breakglass@example.com>"
to = ["oncall@example.com", "Security Team <security@example.com>"]
timeout = "5s"
{extra}
"#,
        addr.ip(),
        addr.port()
    )
}

// ---------------------------------------------------------------------------------------- smtp

#[tokio::test]
async fn smtp_delivers_one_plain_text_mail_to_every_recipient() {
    let sink = SmtpSink::start();
    let ch = build(&smtp_toml(sink.addr(), "")).unwrap();
    assert_eq!((ch.name(), ch.kind()), ("oncall", "smtp"));

    ch.send(&alert(17)).await.unwrap();

    // The sink stores a mail before it answers 250, so it is there once `send` returns.
    let mails = sink.messages();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let m = &mails[0];
    assert_eq!(m.from, "breakglass@example.com");
    assert_eq!(m.to, ["oncall@example.com", "security@example.com"]);
    assert_eq!(m.auth, None);
    assert_eq!(
        m.header("Subject").unwrap(),
        "[breakglass] HIGH alice activated prod-db-admin until 12:30 UTC (INC-42)"
    );
    assert_eq!(
        m.header("X-Breakglass-Alert-Id").unwrap(),
        "breakglass/test/1a2b:17:oncall"
    );
    assert_eq!(
        m.header("Message-ID").unwrap(),
        "<breakglass/test/1a2b=3A17=3Aoncall@example.com>"
    );
    assert_eq!(m.header("Auto-Submitted").unwrap(), "auto-generated");
    assert_eq!(m.header("Date").unwrap(), "Fri, 15 Jan 2027 08:00:00 +0000");
    assert!(
        m.header("Content-Type").unwrap().starts_with("text/plain"),
        "{m:#?}"
    );
    assert!(m.header("To").unwrap().contains("security@example.com"));
    assert_eq!(
        m.body(),
        "alice activated prod-db-admin until 12:30 UTC (INC-42)\n\
         \n\
         grant: 6f1c0d2e-0000-4000-8000-000000000001\n\
         reason: primary is down\n\
         requester: alice\n\
         role: prod-db-admin\n\
         \n\
         event: grant.activated seq 17\n"
    );
}

#[tokio::test]
async fn smtp_retry_is_the_same_message() {
    let sink = SmtpSink::start();
    let ch = build(&smtp_toml(sink.addr(), "")).unwrap();
    ch.send(&alert(3)).await.unwrap();
    ch.send(&alert(3)).await.unwrap();
    let mails = sink.messages();
    assert_eq!(mails.len(), 2);
    for h in ["Message-ID", "X-Breakglass-Alert-Id", "Date", "Subject"] {
        assert_eq!(mails[0].header(h), mails[1].header(h), "{h}");
    }
    assert_eq!(mails[0].body(), mails[1].body());
}

#[tokio::test]
async fn smtp_rejection_is_refused_with_the_servers_reply() {
    let sink = SmtpSink::start();
    let ch = build(&smtp_toml(sink.addr(), "")).unwrap();

    sink.set_refuse(Some(550));
    let err = ch.send(&alert(1)).await.unwrap_err();
    let ChannelError::Refused(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("550"), "{msg}");
    assert!(msg.contains("refused by the test sink"), "{msg}");
    assert!(msg.contains(&format!("`{}`", sink.addr())), "{msg}");

    sink.set_refuse(Some(451));
    let err = ch.send(&alert(1)).await.unwrap_err();
    let ChannelError::Refused(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(
        msg.contains("451") && msg.contains("try again later"),
        "{msg}"
    );
    assert!(sink.messages().is_empty());

    sink.set_refuse(None);
    ch.send(&alert(1)).await.unwrap();
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test]
async fn smtp_closed_port_is_unreachable_quickly() {
    let ch = build(&smtp_toml(closed_addr(), "")).unwrap();
    let started = Instant::now();
    let err = ch.send(&alert(1)).await.unwrap_err();
    assert!(matches!(err, ChannelError::Unreachable(_)), "{err:?}");
    assert!(started.elapsed() < QUICK, "{:?}", started.elapsed());
}

#[tokio::test]
async fn smtp_silent_server_is_unreachable_after_the_timeout() {
    // Accepts connections (in the kernel backlog) but never greets.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let text = smtp_toml(silent.local_addr().unwrap(), "").replace("\"5s\"", "\"1s\"");
    let ch = build(&text).unwrap();
    let started = Instant::now();
    let err = ch.send(&alert(1)).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, ChannelError::Unreachable(_)), "{err:?}");
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < QUICK, "{elapsed:?}");
}

#[tokio::test]
async fn smtp_starttls_never_falls_back_to_plaintext() {
    // The sink offers no STARTTLS, so the default `tls = "starttls"` must not send anything.
    let sink = SmtpSink::start();
    let text = smtp_toml(sink.addr(), "").replace("tls = \"none\"\n", "");
    let ch = build(&text).unwrap();
    let err = ch.send(&alert(1)).await.unwrap_err();
    assert!(matches!(err, ChannelError::Unreachable(_)), "{err:?}");
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn smtp_password_from_env_authenticates() {
    // Edition 2024 makes `set_var` unsafe and the workspace forbids unsafe code, so the test
    // uses a variable every test process has.
    let secret = std::env::var("PATH").expect("PATH is set");
    let sink = SmtpSink::start();
    sink.require_auth("breakglass", &secret);
    let ch = build(&smtp_toml(
        sink.addr(),
        "username = \"breakglass\"\npassword = { env = \"PATH\" }",
    ))
    .unwrap();
    assert!(!format!("{ch:?}").contains(&secret), "{ch:?}");

    ch.send(&alert(1)).await.unwrap();
    let mails = sink.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].auth.as_deref(), Some("breakglass"));
}

#[tokio::test]
async fn smtp_password_from_file_authenticates_and_never_shows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smtp.password");
    std::fs::write(&path, "file-s3cret-value\n").unwrap();
    let extra = format!(
        "username = \"breakglass\"\npassword = {{ file = '{}' }}",
        path.display()
    );
    let sink = SmtpSink::start();
    let ch = build(&smtp_toml(sink.addr(), &extra)).unwrap();

    // A server that offers no AUTH gets nothing: configured credentials are never skipped.
    let err = ch.send(&alert(1)).await.unwrap_err();
    assert!(matches!(err, ChannelError::Unreachable(_)), "{err:?}");
    assert!(sink.messages().is_empty());

    sink.require_auth("breakglass", "file-s3cret-value");
    ch.send(&alert(2)).await.unwrap();
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(sink.messages()[0].auth.as_deref(), Some("breakglass"));

    // A wrong password: refused, and neither the error nor the channel shows it.
    sink.require_auth("breakglass", "what-the-server-wants");
    let err = ch.send(&alert(3)).await.unwrap_err();
    let ChannelError::Refused(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("535"), "{msg}");
    for shown in [err.to_string(), format!("{err:?}"), format!("{ch:?}")] {
        assert!(!shown.contains("file-s3cret"), "{shown}");
    }

    // No credentials where the server demands them: refused (530).
    let anonymous = build(&smtp_toml(sink.addr(), "")).unwrap();
    let err = anonymous.send(&alert(4)).await.unwrap_err();
    assert!(
        matches!(&err, ChannelError::Refused(m) if m.contains("530")),
        "{err:?}"
    );
    assert_eq!(sink.messages().len(), 1);
}

mod syslog;
use syslog::syslog_toml;

// -------------------------------------------------------------------------------------- config

#[test]
fn config_defaults() {
    let ch = build(
        r#"
[channels.mail]
kind = "smtp"
host = "smtp.example.com"
from = "breakglass@example.com"
to = ["oncall@example.com"]
"#,
    )
    .unwrap();
    let debug = format!("{ch:?}");
    for want in [
        "port: 587",
        "tls: Starttls",
        "timeout: 10s",
        "authenticated: false",
    ] {
        assert!(debug.contains(want), "{want}: {debug}");
    }
    let implicit = build(
        r#"
[channels.mail]
kind = "smtp"
host = "smtp.example.com"
tls = "tls"
from = "breakglass@example.com"
to = ["oncall@example.com"]
"#,
    )
    .unwrap();
    assert!(
        format!("{implicit:?}").contains("port: 465"),
        "{implicit:?}"
    );

    let ch = build(&syslog_toml("127.0.0.1:514", "")).unwrap();
    let debug = format!("{ch:?}");
    for want in [
        "transport: Tcp",
        "facility: 4",
        "app_name: \"breakglass\"",
        "timeout: 5s",
    ] {
        assert!(debug.contains(want), "{want}: {debug}");
    }
}

#[test]
fn config_errors_name_the_channel_and_the_key() {
    let smtp = |body: &str| {
        build(&format!(
            "[channels.mail]\nkind = \"smtp\"\nhost = \"smtp.example.com\"\n{body}\n"
        ))
        .unwrap_err()
    };
    let to = "from = \"breakglass@example.com\"\nto = [\"oncall@example.com\"]";
    for (body, want) in [
        (
            format!("{to}\ncolour = \"red\""),
            vec!["unknown field `colour`", "channels.mail"],
        ),
        (
            format!("{to}\ntls = \"ssl\""),
            vec!["unknown variant `ssl`", "tls"],
        ),
        (
            "from = \"breakglass@example.com\"\nto = []".to_owned(),
            vec!["channel `mail`: `to` is empty"],
        ),
        (
            "from = \"not an address\"\nto = [\"oncall@example.com\"]".to_owned(),
            vec!["channel `mail`: `from` `not an address` is not a mail address"],
        ),
        (
            "from = \"breakglass@example.com\"\nto = [\"oncall@example.com\", \"oncall\"]"
                .to_owned(),
            vec!["channel `mail`: `to` entry `oncall` is not a mail address"],
        ),
        (
            format!("{to}\nusername = \"bg\""),
            vec!["channel `mail`: `username` is set without `password`"],
        ),
        (
            format!("{to}\npassword = {{ env = \"PATH\" }}"),
            vec!["channel `mail`: `password` is set without `username`"],
        ),
        (
            format!(
                "{to}\nusername = \"bg\"\npassword = {{ env = \"BREAKGLASS_TEST_UNSET_VAR\" }}"
            ),
            vec!["channel `mail`: `password.env` names `BREAKGLASS_TEST_UNSET_VAR`"],
        ),
        (
            format!("{to}\nusername = \"bg\"\npassword = {{ env = \"PATH\" }}\ntls = \"none\""),
            vec![
                "channel `mail`: `tls = \"none\"` would send the password to `smtp.example.com` in plaintext",
            ],
        ),
    ] {
        let err = smtp(&body);
        for w in want {
            assert!(err.contains(w), "want {w:?} in:\n{err}\nfor:\n{body}");
        }
        let path = std::env::var("PATH").unwrap();
        assert!(!err.contains(&path), "{err}");
    }

    let syslog = |address: &str, extra: &str| build(&syslog_toml(address, extra)).unwrap_err();
    assert!(
        syslog("127.0.0.1:514", "facility = \"lokal3\"").starts_with(
            "channel `siem`: `facility` `lokal3` is not a syslog facility; use one of kern, user,"
        ),
        "{}",
        syslog("127.0.0.1:514", "facility = \"lokal3\"")
    );
    assert_eq!(
        syslog("siem.example.com", ""),
        "channel `siem`: `address` `siem.example.com` is not `host:port` (for example `siem.example.com:514`)"
    );
    assert!(
        syslog("127.0.0.1:514", "app_name = \"has space\"")
            .starts_with("channel `siem`: `app_name` `has space` must be"),
    );
    let unknown = syslog("127.0.0.1:514", "port = 514");
    assert!(
        unknown.contains("unknown field `port`") && unknown.contains("channels.siem"),
        "{unknown}"
    );
    let transport = syslog("127.0.0.1:514", "transport = \"relp\"");
    assert!(
        transport.contains("unknown variant `relp`, expected one of `udp`, `tcp`, `tls`"),
        "{transport}"
    );
}
