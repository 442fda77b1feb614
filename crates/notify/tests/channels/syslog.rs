//! The `syslog` channel against real collectors from testkit: UDP, TCP (one that is down, then
//! comes up on the same port), TLS with certificates made here by a test CA (trusted, untrusted,
//! for another name, or no TLS at all), and the RFC 5424 message as a collector parses it.

use std::path::PathBuf;
use std::time::Instant;

use breakglass_notify::syslog::{Syslog, Transport};
use breakglass_notify::{Channel as _, ChannelError};
use breakglass_testkit::sinks::{SyslogTcpSink, SyslogTlsSink, SyslogUdpSink, closed_addr};
use breakglass_testkit::{DEADLINE, poll_until};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

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
    assert!(
        msg.starts_with("channel `siem`: syslog receiver `127.0.0.1:"),
        "{msg}"
    );
    assert!(started.elapsed() < QUICK, "{:?}", started.elapsed());
}

#[tokio::test]
async fn syslog_unresolvable_host_is_unreachable() {
    let ch = build(&syslog_toml("no-such-host.invalid:514", "timeout = \"2s\"")).unwrap();
    let err = ch.send(&alert(1)).await.unwrap_err();
    assert!(matches!(err, ChannelError::Unreachable(_)), "{err:?}");
}

// ----------------------------------------------------------------------------------------- tls

/// A test CA and one collector certificate it signed.
struct Pki {
    /// The CA certificate, PEM, written to `ca_file`.
    ca_file: PathBuf,
    cert_pem: String,
    key_pem: String,
    _dir: tempfile::TempDir,
}

impl Pki {
    /// A new CA, and a server certificate from it for `names` (DNS names or IP addresses).
    fn new(names: &[&str]) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "breakglass test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut leaf = CertificateParams::new(names).unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "syslog collector");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert_pem = leaf.signed_by(&key, &issuer).unwrap().pem();

        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();
        Self {
            ca_file,
            cert_pem,
            key_pem: key.serialize_pem(),
            _dir: dir,
        }
    }

    /// A TLS collector presenting this PKI's certificate.
    fn collector(&self) -> SyslogTlsSink {
        SyslogTlsSink::start(&self.cert_pem, &self.key_pem)
    }
}

/// `transport = "tls"` to `sink`, with more keys.
fn tls_toml(sink: &SyslogTlsSink, extra: &str) -> String {
    syslog_toml(
        &sink.addr().to_string(),
        &format!("transport = \"tls\"\n{extra}"),
    )
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn syslog_tls_sends_octet_counted_frames_to_a_collector_the_ca_file_trusts() {
    // A certificate for a name that is not the address's host: `server_name` says which.
    let pki = Pki::new(&["syslog.test"]);
    let sink = pki.collector();
    let config = syslog_config(&tls_toml(
        &sink,
        &format!(
            "ca_file = '{}'\nserver_name = \"syslog.test\"",
            pki.ca_file.display()
        ),
    ));
    assert_eq!(config.transport, Transport::Tls);
    let ch = Syslog::new("siem", &config).unwrap();
    let (a, b) = (alert(1), alert(2));
    ch.send(&a).await.unwrap();
    ch.send(&b).await.unwrap();

    assert!(poll_until(DEADLINE, || sink.frames().len() >= 2));
    assert_eq!(sink.frames(), [ch.format(&a), ch.format(&b)]);
    // Encrypted on the wire: neither the summary nor the idempotency key is there in clear.
    let wire = sink.wire();
    assert!(!wire.is_empty());
    assert!(!contains(&wire, "alice activated"));
    assert!(!contains(&wire, "breakglass/test/1a2b"));

    // Without `server_name`, the host of `address` is verified: here an IP address.
    let pki = Pki::new(&["127.0.0.1"]);
    let sink = pki.collector();
    let ch = build(&tls_toml(
        &sink,
        &format!("ca_file = '{}'", pki.ca_file.display()),
    ))
    .unwrap();
    ch.send(&alert(3)).await.unwrap();
    assert!(poll_until(DEADLINE, || !sink.frames().is_empty()));
    assert_eq!(Record::parse(&sink.frames()[0]).param("seq"), Some("3"));
}

#[tokio::test]
async fn syslog_tls_refuses_a_collector_it_does_not_trust_and_sends_it_nothing() {
    let ours = Pki::new(&["127.0.0.1"]);
    let theirs = Pki::new(&["127.0.0.1"]);
    let sink = theirs.collector();
    let a = alert(1);

    // Signed by another CA than the one in `ca_file`.
    let ch = build(&tls_toml(
        &sink,
        &format!("ca_file = '{}'", ours.ca_file.display()),
    ))
    .unwrap();
    let err = ch.send(&a).await.unwrap_err();
    let ChannelError::Unreachable(msg) = &err else {
        panic!("{err:?}")
    };
    let want = format!(
        "channel `siem`: syslog receiver `{}` (tls): its certificate is not signed by the CA in `ca_file` `{}`; set `ca_file` to the PEM file of the CA that signed the collector's certificate (",
        sink.addr(),
        ours.ca_file.display()
    );
    assert!(msg.starts_with(&want), "{msg}");

    // No `ca_file`: the web PKI roots, which do not hold a test CA.
    let ch = build(&tls_toml(&sink, "")).unwrap();
    let err = ch.send(&a).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("(tls): its certificate is not signed by a CA in the web PKI roots; for a private CA, set `ca_file`"),
        "{msg}"
    );

    // The collector saw both handshakes end with the client's alert, and nothing of the alert:
    // no frame, and not its text in any byte that reached it.
    assert!(poll_until(DEADLINE, || sink.errors().len() >= 2));
    assert!(sink.frames().is_empty(), "{:?}", sink.frames());
    let wire = sink.wire();
    assert!(!wire.is_empty());
    assert!(!contains(&wire, "alice activated"));
    assert!(!contains(&wire, "breakglass/test/1a2b"));
}

#[tokio::test]
async fn syslog_tls_names_the_key_to_fix_when_the_name_does_not_match() {
    let pki = Pki::new(&["syslog.test"]);
    let sink = pki.collector();
    let ch = build(&tls_toml(
        &sink,
        &format!("ca_file = '{}'", pki.ca_file.display()),
    ))
    .unwrap();
    let msg = ch.send(&alert(1)).await.unwrap_err().to_string();
    assert!(
        msg.contains("(tls): its certificate is not valid for `127.0.0.1`; set `server_name` to a name the certificate carries"),
        "{msg}"
    );
    assert!(msg.starts_with("unreachable: channel `siem`: "), "{msg}");
    assert!(poll_until(DEADLINE, || !sink.errors().is_empty()));
    assert!(sink.frames().is_empty());
}

#[tokio::test]
async fn syslog_tls_to_a_plaintext_collector_fails_and_sends_it_nothing_readable() {
    let sink = SyslogTcpSink::start();
    let ch = build(&syslog_toml(
        &sink.addr().to_string(),
        "transport = \"tls\"\nserver_name = \"syslog.test\"",
    ))
    .unwrap();
    let err = ch.send(&alert(1)).await.unwrap_err();
    assert!(matches!(err, ChannelError::Unreachable(_)), "{err:?}");
    // It read the ClientHello as a malformed frame and hung up.
    assert!(poll_until(DEADLINE, || !sink.frames().is_empty()));
    assert!(!contains(&sink.wire(), "alice activated"));
}

#[test]
fn syslog_tls_config_errors_name_the_key_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let err = |extra: &str| build(&syslog_toml("127.0.0.1:6514", extra)).unwrap_err();

    // A missing CA file stops the load, with the key and the path.
    let missing = dir.path().join("no-such-ca.pem");
    let e = err(&format!(
        "transport = \"tls\"\nca_file = '{}'",
        missing.display()
    ));
    assert!(
        e.starts_with(&format!(
            "channel `siem`: `ca_file` `{}` cannot be read: ",
            missing.display()
        )),
        "{e}"
    );

    // A file with no certificate in it, even one holding a private key: refused, key unread.
    let key_only = dir.path().join("key.pem");
    let key = KeyPair::generate().unwrap().serialize_pem();
    std::fs::write(&key_only, &key).unwrap();
    let e = err(&format!(
        "transport = \"tls\"\nca_file = '{}'",
        key_only.display()
    ));
    assert_eq!(
        e,
        format!(
            "channel `siem`: `ca_file` `{}` holds no certificate; it must hold the CA certificate (`-----BEGIN CERTIFICATE-----`) that signed the collector's certificate",
            key_only.display()
        )
    );
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!e.contains(&body[..16]), "{e}");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
    let e = err(&format!(
        "transport = \"tls\"\nca_file = '{}'",
        garbage.display()
    ));
    assert!(
        e.starts_with(&format!(
            "channel `siem`: `ca_file` `{}` is not a PEM file; ",
            garbage.display()
        )),
        "{e}"
    );

    // TLS keys without TLS are a mistake, not ignored.
    assert_eq!(
        err("ca_file = '/etc/ssl/ca.pem'"),
        "channel `siem`: `ca_file` is only used with `transport = \"tls\"`, not `tcp`; set `transport = \"tls\"` or remove `ca_file`"
    );
    assert_eq!(
        err("transport = \"udp\"\nserver_name = \"siem.example.com\""),
        "channel `siem`: `server_name` is only used with `transport = \"tls\"`, not `udp`; set `transport = \"tls\"` or remove `server_name`"
    );
    assert_eq!(
        err("transport = \"tls\"\nserver_name = \"two words\""),
        "channel `siem`: `server_name` `two words` is not a DNS name or an IP address"
    );

    // Unknown keys and transports are refused by the parser.
    let e = err("transport = \"tls\"\nca = '/etc/ssl/ca.pem'");
    assert!(
        e.contains("unknown field `ca`") && e.contains("channels.siem"),
        "{e}"
    );
    let e = err("transport = \"ssl\"");
    assert!(e.contains("unknown variant `ssl`"), "{e}");
}
