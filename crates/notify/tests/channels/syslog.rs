//! The `syslog` channel against real collectors from testkit: UDP, TCP (one that is down, then
//! comes up on the same port), and the RFC 5424 message as a collector parses it.

use std::time::Instant;

use breakglass_notify::syslog::{Syslog, Transport};
use breakglass_notify::{Channel as _, ChannelError};
use breakglass_testkit::sinks::{SyslogTcpSink, SyslogUdpSink, closed_addr};
use breakglass_testkit::{DEADLINE, poll_until};

use super::{QUICK, Severity, alert, build, syslog_config};

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

pub(super) fn syslog_toml(address: &str, extra: &str) -> String {
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
