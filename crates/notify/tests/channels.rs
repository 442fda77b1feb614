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
use breakglass_notify::syslog::{Syslog, SyslogConfig, Transport};
use breakglass_notify::{Alert, Channel, ChannelConfig, ChannelError, Severity};
use breakglass_testkit::sinks::{SmtpSink, SyslogTcpSink, SyslogUdpSink, closed_addr};
use breakglass_testkit::{DEADLINE, poll_until};
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

// -------------------------------------------------------------------------------------- syslog

/// An RFC 5424 message taken apart, SD-PARAM values unescaped.
#[derive(Debug)]
struct Record {
    pri: u16,
    version: String,
    timestamp: String,
    hostname: String,
    app_name: String,
    procid: String,
    msgid: String,
    sd_id: String,
    params: Vec<(String, String)>,
    msg: String,
}

impl Record {
    fn parse(frame: &str) -> Self {
        let rest = frame.strip_prefix('<').expect(frame);
        let (pri, rest) = rest.split_once('>').expect(frame);
        let mut head = rest.splitn(7, ' ');
        let mut next = || head.next().expect(frame).to_owned();
        let (version, timestamp, hostname, app_name, procid, msgid) =
            (next(), next(), next(), next(), next(), next());
        let sd = next();
        let mut chars = sd.strip_prefix('[').expect(frame).chars();
        let sd_id: String = chars.by_ref().take_while(|c| *c != ' ').collect();
        let mut params = Vec::new();
        loop {
            let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
            assert_eq!(chars.next(), Some('"'), "{frame}");
            let mut value = String::new();
            loop {
                match chars.next().expect(frame) {
                    '\\' => value.push(chars.next().expect(frame)),
                    '"' => break,
                    c => value.push(c),
                }
            }
            params.push((name, value));
            match chars.next() {
                Some(' ') => continue,
                Some(']') => break,
                other => panic!("{other:?} after a param: {frame}"),
            }
        }
        let msg = chars
            .as_str()
            .strip_prefix(' ')
            .unwrap_or_default()
            .to_owned();
        Self {
            pri: pri.parse().expect(frame),
            version,
            timestamp,
            hostname,
            app_name,
            procid,
            msgid,
            sd_id,
            params,
            msg,
        }
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn syslog_toml(address: &str, extra: &str) -> String {
    format!(
        r#"
[channels.siem]
kind = "syslog"
address = "{address}"
{extra}
"#
    )
}

#[tokio::test]
async fn syslog_udp_sends_one_rfc5424_datagram() {
    let sink = SyslogUdpSink::start();
    let ch = build(&syslog_toml(
        &sink.addr().to_string(),
        "transport = \"udp\"\nfacility = \"local3\"\napp_name = \"bg-test\"",
    ))
    .unwrap();
    assert_eq!((ch.name(), ch.kind()), ("siem", "syslog"));
    let mut a = alert(17);
    a.fields.insert(
        "reason".into(),
        r#"db "primary" down \ see [INC-42] ]"#.into(),
    );
    a.fields.insert("bad name=x".into(), "v".into());

    ch.send(&a).await.unwrap();
    assert!(poll_until(DEADLINE, || !sink.frames().is_empty()));
    let frames = sink.frames();
    assert_eq!(frames.len(), 1, "{frames:#?}");
    let r = Record::parse(&frames[0]);
    assert_eq!(r.pri, 19 * 8 + 2, "{r:?}");
    assert_eq!(r.version, "1");
    assert_eq!(r.timestamp, "2027-01-15T08:00:00.123Z");
    assert!(
        !r.hostname.is_empty() && r.hostname.bytes().all(|b| b.is_ascii_graphic()),
        "{r:?}"
    );
    assert_eq!(r.app_name, "bg-test");
    assert_eq!(r.procid, std::process::id().to_string());
    assert_eq!(r.msgid, "grant.activated");
    assert_eq!(r.sd_id, "breakglass@32473");
    let names: Vec<&str> = r.params.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "id",
            "seq",
            "bad_name_x",
            "grant",
            "reason",
            "requester",
            "role"
        ]
    );
    assert_eq!(r.param("id"), Some("breakglass/test/1a2b:17:oncall"));
    assert_eq!(r.param("seq"), Some("17"));
    assert_eq!(r.param("role"), Some("prod-db-admin"));
    assert_eq!(
        r.param("reason"),
        Some(r#"db "primary" down \ see [INC-42] ]"#)
    );
    assert!(
        frames[0].contains(r#"reason="db \"primary\" down \\ see [INC-42\] \]""#),
        "{}",
        frames[0]
    );
    assert_eq!(
        r.msg,
        "alice activated prod-db-admin until 12:30 UTC (INC-42)"
    );
}

#[tokio::test]
async fn syslog_severities_and_default_facility() {
    let sink = SyslogUdpSink::start();
    let ch = build(&syslog_toml(
        &sink.addr().to_string(),
        "transport = \"udp\"",
    ))
    .unwrap();
    for (seq, severity) in [
        (1, Severity::High),
        (2, Severity::Warning),
        (3, Severity::Info),
    ] {
        let mut a = alert(seq);
        a.severity = severity;
        ch.send(&a).await.unwrap();
    }
    assert!(poll_until(DEADLINE, || sink.frames().len() >= 3));
    let mut got: Vec<(String, u16, String)> = sink
        .frames()
        .iter()
        .map(|f| Record::parse(f))
        .map(|r| (r.param("seq").unwrap().to_owned(), r.pri, r.app_name))
        .collect();
    got.sort();
    // auth (4) * 8 + crit 2 / warning 4 / info 6.
    assert_eq!(
        got,
        [
            ("1".into(), 34, "breakglass".into()),
            ("2".into(), 36, "breakglass".into()),
            ("3".into(), 38, "breakglass".into()),
        ]
    );
}

#[tokio::test]
async fn syslog_tcp_sends_octet_counted_frames() {
    let sink = SyslogTcpSink::start();
    let ch = build(&syslog_toml(
        &sink.addr().to_string(),
        "transport = \"tcp\"\nfacility = \"authpriv\"",
    ))
    .unwrap();
    for seq in 1..=3 {
        let mut a = alert(seq);
        a.summary = format!("alert number {seq} with ünïcödé");
        ch.send(&a).await.unwrap();
    }
    assert!(poll_until(DEADLINE, || sink.frames().len() >= 3));
    let frames = sink.frames();
    assert_eq!(frames.len(), 3, "{frames:#?}");
    let mut records: Vec<Record> = frames.iter().map(|f| Record::parse(f)).collect();
    records.sort_by_key(|r| r.param("seq").unwrap().parse::<u64>().unwrap());
    for (i, r) in records.iter().enumerate() {
        let seq = i + 1;
        assert_eq!(r.pri, 10 * 8 + 2, "{r:?}");
        assert_eq!(r.param("seq"), Some(seq.to_string().as_str()));
        assert_eq!(r.msg, format!("alert number {seq} with ünïcödé"));
    }
    assert_eq!(sink.connections(), 3);
}

#[tokio::test]
async fn syslog_udp_cannot_tell_a_collector_that_is_down() {
    // Why `udp` is best effort (docs/alerts.md): the datagram leaves, nobody is there, and the
    // send still succeeds, so the outbox would mark the alert delivered.
    let ch = build(&syslog_toml(
        &closed_addr().to_string(),
        "transport = \"udp\"",
    ))
    .unwrap();
    ch.send(&alert(1)).await.unwrap();
}

#[tokio::test]
async fn syslog_transport_defaults_to_tcp() {
    let text = syslog_toml("127.0.0.1:514", "");
    assert_eq!(syslog_config(&text).transport, Transport::Tcp);

    // And it is what goes on the wire: an octet-counted frame over a TCP connection.
    let sink = SyslogTcpSink::start();
    let ch = build(&syslog_toml(&sink.addr().to_string(), "")).unwrap();
    ch.send(&alert(1)).await.unwrap();
    assert!(poll_until(DEADLINE, || !sink.frames().is_empty()));
    assert_eq!(Record::parse(&sink.frames()[0]).param("seq"), Some("1"));
    assert_eq!(sink.connections(), 1);
}

#[tokio::test]
async fn syslog_tcp_collector_down_fails_the_send_until_it_is_up() {
    // Nothing listens here yet. (The port was just released by the kernel's pick; taking it
    // back below is what a collector restarting on its configured port does.)
    let addr = closed_addr();
    let config = syslog_config(&syslog_toml(&addr.to_string(), ""));
    let ch = Syslog::new("siem", &config).unwrap();
    let a = alert(7);

    // Down: an error, so the outbox keeps the delivery and retries it with backoff.
    let err = ch.send(&a).await.unwrap_err();
    let ChannelError::Unreachable(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.contains(&format!("`{addr}` (tcp)")), "{msg}");

    // Up on the same port: the retry (the same alert) arrives, exactly as framed.
    let sink = SyslogTcpSink::start_at(addr);
    ch.send(&a).await.unwrap();
    let message = ch.format(&a);
    let framed = format!("{} {message}", message.len());
    assert!(poll_until(DEADLINE, || sink.wire().len() >= framed.len()));
    assert_eq!(String::from_utf8(sink.wire()).unwrap(), framed);
    assert!(poll_until(DEADLINE, || !sink.frames().is_empty()));
    assert_eq!(sink.frames(), [message]);
    assert_eq!(sink.connections(), 1);
}

#[test]
fn syslog_tcp_sink_reassembles_joined_and_split_frames() {
    use std::io::Write as _;
    let sink = SyslogTcpSink::start();
    let mut s = std::net::TcpStream::connect(sink.addr()).unwrap();
    s.write_all(b"5 hello6 world!3 a").unwrap();
    s.flush().unwrap();
    s.write_all("bc4 \u{e9}\u{e9}1".as_bytes()).unwrap();
    s.write_all(b"0 0123456789").unwrap();
    drop(s);
    assert!(poll_until(DEADLINE, || sink.frames().len() >= 5));
    assert_eq!(
        sink.frames(),
        ["hello", "world!", "abc", "\u{e9}\u{e9}", "0123456789"]
    );
}

#[tokio::test]
async fn syslog_tcp_refused_is_unreachable_quickly() {
    let ch = build(&syslog_toml(
        &closed_addr().to_string(),
        "transport = \"tcp\"",
    ))
    .unwrap();
    let started = Instant::now();
    let err = ch.send(&alert(1)).await.unwrap_err();
    let ChannelError::Unreachable(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.starts_with("syslog receiver `127.0.0.1:"), "{msg}");
    assert!(started.elapsed() < QUICK, "{:?}", started.elapsed());
}

#[tokio::test]
async fn syslog_unresolvable_host_is_unreachable() {
    let ch = build(&syslog_toml("no-such-host.invalid:514", "timeout = \"2s\"")).unwrap();
    let err = ch.send(&alert(1)).await.unwrap_err();
    assert!(matches!(err, ChannelError::Unreachable(_)), "{err:?}");
}

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
    let transport = syslog("127.0.0.1:514", "transport = \"tls\"");
    assert!(transport.contains("unknown variant `tls`"), "{transport}");
}
