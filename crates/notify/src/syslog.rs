//! `syslog`: one RFC 5424 message per alert, for a SIEM or a local rsyslog / syslog-ng.
//!
//! ```text
//! <34>1 2027-01-15T08:00:00.123Z bastion-1 breakglass 4711 grant.activated [breakglass@32473 id="a-1" seq="42" grant="g-7" role="prod-admin"] alice activated prod-admin
//! ```
//!
//! - PRI is `facility * 8 + severity`: a `high` alert is 2 (crit), `warning` 4, `info` 6.
//! - TIMESTAMP is the alert's time (not the send time) in UTC with milliseconds, so a retry
//!   carries the same bytes.
//! - MSGID is the audit event type (`grant.activated`), at most 32 printable ASCII characters.
//! - One SD-ELEMENT `breakglass@32473` holds `id` (the idempotency key), `seq` and one SD-PARAM
//!   per alert field. Names outside the RFC 5424 SD-NAME set become `_`; values escape `"`, `\`
//!   and `]`, and control characters become spaces so a record stays on one line downstream.
//! - MSG is the summary, UTF-8 without a BOM.
//!
//! Over `tcp` (the default) each alert opens a connection and writes one RFC 6587 octet-counted
//! frame (`<length> <message>`); a send succeeds only once the frame is written to an established
//! connection, so a collector that is down is an error and the outbox retries it with backoff.
//! `tls` (RFC 5425) is the same frame inside a TLS session (rustls on ring, like the webhook and
//! SMTP channels): the collector's certificate must chain to the web PKI roots, or to the CA in
//! `ca_file`, and carry the host of `address` (or `server_name`); nothing of the alert is written
//! before it has. Over `udp` each alert is one datagram: best effort, since nothing says whether
//! it arrived (an alert to a down collector is lost, yet counted as delivered).
//!
//! Any failure, and any attempt longer than `timeout`, is [`ChannelError::Unreachable`]: a syslog
//! receiver never answers, so it cannot refuse. Errors name the channel, the receiver and the
//! transport; a certificate problem also says what to change.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use breakglass_core::Duration;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, RootCertStore};
use serde::Deserialize;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::TlsConnector;

use crate::{Alert, Channel, ChannelError, ConfigError, Severity};

/// How messages travel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// One datagram per alert (RFC 5426). Best effort: nothing tells the sender whether it
    /// arrived, so the outbox cannot confirm it.
    Udp,
    /// A connection per alert, octet-counted framing (RFC 6587). The default: a collector that
    /// is down is an error, and the outbox retries.
    #[default]
    Tcp,
    /// As `tcp`, inside TLS (RFC 5425), the collector's certificate verified first.
    Tls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }
}

/// `[channels.NAME]` with `kind = "syslog"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// The receiver, `host:port` (`siem.example.com:514`, `[::1]:514`). Resolved at each send.
    pub address: String,
    /// `tcp` (default), `tls` or `udp`.
    #[serde(default)]
    pub transport: Transport,
    /// APP-NAME: 1 to 48 printable ASCII characters (default `breakglass`).
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// `kern`, `user`, `mail`, `daemon`, `auth` (default), `syslog`, `lpr`, `news`, `uucp`,
    /// `cron`, `authpriv`, `ftp` or `local0` to `local7`.
    #[serde(default = "default_facility")]
    pub facility: String,
    /// How long one send may take, connection and TLS handshake included (default `5s`).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// `tls` only: a PEM file of the CA certificate(s) to trust, for a collector whose
    /// certificate a private CA signed. Replaces the web PKI roots (the default).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `tls` only: the name the collector's certificate must carry, when it differs from the
    /// host in `address` (default: that host).
    #[serde(default)]
    pub server_name: Option<String>,
}

/// A syslog receiver, ready to send to.
#[derive(Debug)]
pub struct Syslog {
    name: String,
    address: String,
    transport: Link,
    facility: u8,
    app_name: String,
    hostname: String,
    procid: String,
    timeout: StdDuration,
}

/// How a channel reaches its collector: the transport, with what TLS needs already loaded.
#[derive(Debug)]
enum Link {
    Udp,
    Tcp,
    Tls(TlsClient),
}

/// What a `tls` channel verifies its collector with.
struct TlsClient {
    connector: TlsConnector,
    /// The name the collector's certificate must carry.
    server_name: ServerName<'static>,
    /// Where the trusted roots came from: `None` for the web PKI roots.
    ca_file: Option<PathBuf>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name.to_str())
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// The SD-ID: `breakglass` at the private enterprise number the RFC 5424 examples use.
pub const SD_ID: &str = "breakglass@32473";

/// Facility names and codes (RFC 5424 section 6.2.1).
const FACILITIES: [(&str, u8); 20] = [
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// Longest MSGID (RFC 5424).
const MAX_MSGID: usize = 32;
/// Longest SD-NAME (RFC 5424).
const MAX_SD_NAME: usize = 32;
/// Longest APP-NAME (RFC 5424).
const MAX_APP_NAME: usize = 48;
/// Longest HOSTNAME (RFC 5424).
const MAX_HOSTNAME: usize = 255;
/// Longest SD-PARAM value and MSG, in characters: keeps a datagram well inside what receivers
/// take without dropping anything an operator needs.
const MAX_TEXT: usize = 1024;

impl Syslog {
    /// Checks the config: the address has a port, the facility is a known name, the app name
    /// is valid, TLS keys come only with `tls`. For `tls`, loads the trusted roots now (a
    /// missing or empty `ca_file` stops the start). Reads the host name once, for HOSTNAME.
    pub fn new(name: &str, config: &SyslogConfig) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError {
            channel: name.to_owned(),
            message,
        };
        let address = config.address.trim();
        let Some(host) = address
            .rsplit_once(':')
            .filter(|(host, _)| !host.is_empty())
            .filter(|(_, port)| port.parse::<u16>().is_ok_and(|port| port != 0))
            .map(|(host, _)| host.trim_start_matches('[').trim_end_matches(']'))
        else {
            return Err(err(format!(
                "`address` `{address}` is not `host:port` (for example `siem.example.com:514`)"
            )));
        };
        let facility = FACILITIES
            .iter()
            .find(|(n, _)| *n == config.facility)
            .map(|(_, code)| *code)
            .ok_or_else(|| {
                let names: Vec<&str> = FACILITIES.iter().map(|(n, _)| *n).collect();
                err(format!(
                    "`facility` `{}` is not a syslog facility; use one of {}",
                    config.facility,
                    names.join(", ")
                ))
            })?;
        let app_name = &config.app_name;
        if app_name.is_empty()
            || app_name.len() > MAX_APP_NAME
            || !app_name.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(err(format!(
                "`app_name` `{app_name}` must be 1 to {MAX_APP_NAME} printable ASCII characters without spaces"
            )));
        }
        let transport = match config.transport {
            Transport::Tls => Link::Tls(TlsClient::new(host, config, &err)?),
            plain => {
                for (key, set) in [
                    ("ca_file", config.ca_file.is_some()),
                    ("server_name", config.server_name.is_some()),
                ] {
                    if set {
                        return Err(err(format!(
                            "`{key}` is only used with `transport = \"tls\"`, not `{}`; set `transport = \"tls\"` or remove `{key}`",
                            plain.as_str()
                        )));
                    }
                }
                if plain == Transport::Udp {
                    Link::Udp
                } else {
                    Link::Tcp
                }
            }
        };
        let hostname = hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| {
                !h.is_empty() && h.len() <= MAX_HOSTNAME && h.bytes().all(|b| b.is_ascii_graphic())
            })
            .unwrap_or_else(|| "-".to_owned());
        Ok(Self {
            name: name.to_owned(),
            address: address.to_owned(),
            transport,
            facility,
            app_name: app_name.clone(),
            hostname,
            procid: std::process::id().to_string(),
            timeout: StdDuration::from_secs(config.timeout.as_secs().unsigned_abs()),
        })
    }

    /// The RFC 5424 message for `alert`, without any transport framing.
    pub fn format(&self, alert: &Alert) -> String {
        format_message(
            self.facility,
            &self.hostname,
            &self.app_name,
            &self.procid,
            alert,
        )
    }

    async fn send_udp(&self, message: &str) -> Result<(), ChannelError> {
        let target = tokio::net::lookup_host(&self.address)
            .await
            .map_err(|e| self.unreachable(&format!("cannot resolve: {e}")))?
            .next()
            .ok_or_else(|| self.unreachable("resolves to no address"))?;
        let local: SocketAddr = if target.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)
            .await
            .map_err(|e| self.unreachable(&format!("cannot open a UDP socket: {e}")))?;
        let sent = socket
            .send_to(message.as_bytes(), target)
            .await
            .map_err(|e| self.unreachable(&e.to_string()))?;
        if sent != message.len() {
            return Err(self.unreachable("the datagram was truncated"));
        }
        Ok(())
    }

    async fn send_tcp(&self, message: &str) -> Result<(), ChannelError> {
        let mut stream = self.connect().await?;
        self.write_frame(&mut stream, message).await
    }

    async fn send_tls(&self, tls: &TlsClient, message: &str) -> Result<(), ChannelError> {
        let tcp = self.connect().await?;
        // The handshake verifies the collector's certificate and name; only then is a byte of
        // the alert written, so an untrusted collector gets nothing.
        let mut stream = tls
            .connector
            .connect(tls.server_name.clone(), tcp)
            .await
            .map_err(|e| self.tls_failure(tls, &e))?;
        self.write_frame(&mut stream, message).await
    }

    async fn connect(&self) -> Result<TcpStream, ChannelError> {
        TcpStream::connect(&self.address)
            .await
            .map_err(|e| self.unreachable(&e.to_string()))
    }

    /// Writes one octet-counted frame (RFC 6587, RFC 5425), flushes it and closes the stream
    /// (for TLS, with `close_notify`): done once it is written to the established connection.
    async fn write_frame(
        &self,
        stream: &mut (impl AsyncWrite + Unpin),
        message: &str,
    ) -> Result<(), ChannelError> {
        let frame = format!("{} {message}", message.len());
        stream
            .write_all(frame.as_bytes())
            .await
            .map_err(|e| self.unreachable(&e.to_string()))?;
        stream
            .flush()
            .await
            .map_err(|e| self.unreachable(&e.to_string()))?;
        stream
            .shutdown()
            .await
            .map_err(|e| self.unreachable(&e.to_string()))
    }

    /// A failed TLS handshake, said so that an operator knows which key to change.
    fn tls_failure(&self, tls: &TlsClient, e: &std::io::Error) -> ChannelError {
        let Some(cause) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        else {
            return self.unreachable(&format!("TLS handshake failed: {e}"));
        };
        let name = tls.server_name.to_str();
        let what = match cause {
            rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature,
            ) => match &tls.ca_file {
                Some(path) => format!(
                    "its certificate is not signed by the CA in `ca_file` `{}`; set `ca_file` to the PEM file of the CA that signed the collector's certificate",
                    path.display()
                ),
                None => "its certificate is not signed by a CA in the web PKI roots; for a private CA, set `ca_file` to the PEM file of the CA that signed the collector's certificate".to_owned(),
            },
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => format!(
                "its certificate is not valid for `{name}`; set `server_name` to a name the certificate carries, or give the collector a certificate for `{name}`"
            ),
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            ) => "its certificate has expired; renew it on the collector (and check this host's clock)".to_owned(),
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
            ) => "its certificate is not valid yet; check this host's clock and the collector's certificate".to_owned(),
            rustls::Error::InvalidCertificate(
                CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. },
            ) => "its certificate is not for a TLS server; give the collector one with the `serverAuth` extended key usage".to_owned(),
            rustls::Error::InvalidCertificate(_) => {
                "its certificate is refused; give the collector a valid certificate".to_owned()
            }
            _ => "the TLS handshake failed; check that the collector speaks syslog over TLS on this port".to_owned(),
        };
        // rustls's own words too: a certificate error names no secret, only public facts.
        self.unreachable(&format!("{what} ({cause})"))
    }

    fn unreachable(&self, what: &str) -> ChannelError {
        ChannelError::Unreachable(format!(
            "channel `{}`: syslog receiver `{}` ({}): {what}",
            self.name,
            self.address,
            self.transport_name()
        ))
    }

    fn transport_name(&self) -> &'static str {
        match self.transport {
            Link::Udp => Transport::Udp.as_str(),
            Link::Tcp => Transport::Tcp.as_str(),
            Link::Tls(_) => Transport::Tls.as_str(),
        }
    }
}

impl TlsClient {
    /// The roots (from `ca_file`, or the web PKI) and the name to verify, on the ring provider
    /// the other channels use.
    fn new(
        host: &str,
        config: &SyslogConfig,
        err: &impl Fn(String) -> ConfigError,
    ) -> Result<Self, ConfigError> {
        let roots = match &config.ca_file {
            Some(path) => ca_roots(path, err)?,
            None => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let server_name = match &config.server_name {
            Some(given) => ServerName::try_from(given.trim().to_owned()).map_err(|_| {
                err(format!(
                    "`server_name` `{given}` is not a DNS name or an IP address"
                ))
            })?,
            None => ServerName::try_from(host.to_owned()).map_err(|_| {
                err(format!(
                    "`address` host `{host}` cannot be checked against a TLS certificate; set `server_name` to the name the collector's certificate carries"
                ))
            })?,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| err(format!("cannot set up TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            connector: TlsConnector::from(Arc::new(tls)),
            server_name,
            ca_file: config.ca_file.clone(),
        })
    }
}

#[async_trait]
impl Channel for Syslog {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "syslog"
    }

    async fn send(&self, alert: &Alert) -> Result<(), ChannelError> {
        let message = self.format(alert);
        let attempt = async {
            match &self.transport {
                Link::Udp => self.send_udp(&message).await,
                Link::Tcp => self.send_tcp(&message).await,
                Link::Tls(tls) => self.send_tls(tls, &message).await,
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => {
                Err(self.unreachable(&format!("no delivery within {}s", self.timeout.as_secs())))
            }
        }
    }
}

/// The CA certificates in the PEM file at `path` (`ca_file`), as the only roots a `tls` channel
/// trusts. Other PEM sections (a key someone left in the file) are skipped and never echoed.
fn ca_roots(
    path: &Path,
    err: &impl Fn(String) -> ConfigError,
) -> Result<RootCertStore, ConfigError> {
    let shown = path.display();
    let bytes =
        std::fs::read(path).map_err(|e| err(format!("`ca_file` `{shown}` cannot be read: {e}")))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        // The PEM error can quote a line of the file: not echoed.
        let cert = cert.map_err(|_| {
            err(format!(
                "`ca_file` `{shown}` is not a PEM file; it must hold the CA certificate (`-----BEGIN CERTIFICATE-----`) that signed the collector's certificate"
            ))
        })?;
        roots.add(cert).map_err(|e| {
            err(format!(
                "`ca_file` `{shown}` holds a certificate that cannot be a trust anchor: {e}"
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(err(format!(
            "`ca_file` `{shown}` holds no certificate; it must hold the CA certificate (`-----BEGIN CERTIFICATE-----`) that signed the collector's certificate"
        )));
    }
    Ok(roots)
}

fn default_app_name() -> String {
    "breakglass".to_owned()
}

fn default_facility() -> String {
    "auth".to_owned()
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// The syslog severity for an alert's: crit, warning, info.
fn severity_code(severity: Severity) -> u8 {
    match severity {
        Severity::High => 2,
        Severity::Warning => 4,
        Severity::Info => 6,
    }
}

fn format_message(
    facility: u8,
    hostname: &str,
    app_name: &str,
    procid: &str,
    alert: &Alert,
) -> String {
    let pri = u16::from(facility) * 8 + u16::from(severity_code(alert.severity));
    let mut out = format!(
        "<{pri}>1 {} {hostname} {app_name} {procid} {} [{SD_ID}",
        alert.time.to_rfc3339(),
        printable_token(&alert.event, MAX_MSGID),
    );
    push_param(&mut out, "id", &alert.id);
    push_param(&mut out, "seq", &alert.seq.to_string());
    for (name, value) in &alert.fields {
        push_param(&mut out, name, value);
    }
    out.push(']');
    let msg = one_line(&alert.summary);
    if !msg.is_empty() {
        out.push(' ');
        out.push_str(&msg);
    }
    out
}

/// ` name="value"`, with the name cut to SD-NAME characters and the value escaped.
fn push_param(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(&sd_name(name));
    out.push_str("=\"");
    for c in one_line(value).chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// An SD-NAME: printable US-ASCII except `=`, space, `]` and `"`, at most 32 characters; any
/// other character becomes `_`.
fn sd_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .take(MAX_SD_NAME)
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, '=' | ']' | '"') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "_".to_owned()
    } else {
        cleaned
    }
}

/// A header token (MSGID): printable US-ASCII, other characters as `_`, at most `max`; `-`
/// (the NILVALUE) when empty.
fn printable_token(s: &str, max: usize) -> String {
    let cleaned: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    if cleaned.is_empty() {
        "-".to_owned()
    } else {
        cleaned
    }
}

/// Control characters (newlines, tabs) as spaces, cut to [`MAX_TEXT`] characters with `…`.
fn one_line(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(MAX_TEXT)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().nth(MAX_TEXT).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use breakglass_core::Timestamp;

    use super::*;

    fn alert(severity: Severity) -> Alert {
        Alert {
            id: "a-1".into(),
            event: "grant.activated".into(),
            seq: 42,
            severity,
            summary: "alice activated prod-admin".into(),
            fields: BTreeMap::from([
                ("grant".to_owned(), "g-7".to_owned()),
                ("role".to_owned(), "prod-admin".to_owned()),
            ]),
            time: Timestamp::from_unix_millis(1_800_000_000_123),
        }
    }

    #[test]
    fn formats_the_whole_message() {
        assert_eq!(
            format_message(4, "bastion-1", "breakglass", "4711", &alert(Severity::High)),
            "<34>1 2027-01-15T08:00:00.123Z bastion-1 breakglass 4711 grant.activated \
             [breakglass@32473 id=\"a-1\" seq=\"42\" grant=\"g-7\" role=\"prod-admin\"] \
             alice activated prod-admin"
        );
    }

    #[test]
    fn pri_is_facility_times_eight_plus_severity() {
        for (facility, severity, pri) in [
            (4, Severity::High, "<34>"),
            (4, Severity::Warning, "<36>"),
            (4, Severity::Info, "<38>"),
            (0, Severity::High, "<2>"),
            (10, Severity::Info, "<86>"),
            (23, Severity::High, "<186>"),
            (23, Severity::Info, "<190>"),
        ] {
            let m = format_message(facility, "h", "a", "1", &alert(severity));
            assert!(
                m.starts_with(&format!("{pri}1 ")),
                "{facility} {severity:?}: {m}"
            );
        }
    }

    #[test]
    fn escapes_values_and_cleans_names() {
        let mut a = alert(Severity::Info);
        a.fields = BTreeMap::from([
            ("reason".to_owned(), r#"say "hi" \ [x] done"#.to_owned()),
            ("we ird=na]me\"".to_owned(), "v".to_owned()),
            ("".to_owned(), "empty name".to_owned()),
            ("multi".to_owned(), "line\none\ttab".to_owned()),
        ]);
        let m = format_message(4, "h", "a", "1", &a);
        assert!(m.contains(r#" reason="say \"hi\" \\ [x\] done""#), "{m}");
        assert!(m.contains(r#" we_ird_na_me_="v""#), "{m}");
        assert!(m.contains(r#" _="empty name""#), "{m}");
        assert!(m.contains(r#" multi="line one tab""#), "{m}");
    }

    #[test]
    fn truncates_msgid_names_and_long_text() {
        let mut a = alert(Severity::Info);
        a.event = format!("{}tail", "e".repeat(32));
        a.fields = BTreeMap::from([(format!("{}tail", "n".repeat(32)), "x".repeat(2000))]);
        a.summary = "s".repeat(1500);
        let m = format_message(4, "h", "a", "1", &a);
        assert!(m.contains(&format!(" {} [", "e".repeat(32))), "{m}");
        assert!(m.contains(&format!(" {}=\"{}…\"]", "n".repeat(32), "x".repeat(1024))));
        assert!(m.ends_with(&format!("] {}…", "s".repeat(1024))));
    }

    #[test]
    fn msgid_is_printable_ascii_or_nil() {
        assert_eq!(printable_token("grant.activated", 32), "grant.activated");
        assert_eq!(printable_token("a b\u{e9}", 32), "a_b_");
        assert_eq!(printable_token("", 32), "-");
    }

    #[test]
    fn empty_summary_has_no_trailing_space() {
        let mut a = alert(Severity::Info);
        a.summary = String::new();
        assert!(format_message(4, "h", "a", "1", &a).ends_with("role=\"prod-admin\"]"));
    }

    #[test]
    fn facilities_and_addresses_are_checked() {
        let config = |facility: &str, address: &str| SyslogConfig {
            address: address.into(),
            transport: Transport::Udp,
            app_name: "breakglass".into(),
            facility: facility.into(),
            timeout: default_timeout(),
            ca_file: None,
            server_name: None,
        };
        assert_eq!(
            Syslog::new("s", &config("local3", "127.0.0.1:514"))
                .unwrap()
                .facility,
            19
        );
        assert_eq!(
            Syslog::new("s", &config("authpriv", "[::1]:514"))
                .unwrap()
                .facility,
            10
        );
        for bad in ["127.0.0.1", ":514", "host:0", "host:port", "host:70000"] {
            let e = Syslog::new("s", &config("auth", bad)).unwrap_err();
            assert!(e.message.starts_with("`address`"), "{bad}: {e}");
        }
        let e = Syslog::new("s", &config("AUTH", "h:1")).unwrap_err();
        assert!(e.message.starts_with("`facility` `AUTH`"), "{e}");
    }

    #[test]
    fn tls_verifies_the_host_of_the_address_unless_told_otherwise() {
        let config = |address: &str, server_name: Option<&str>| SyslogConfig {
            address: address.into(),
            transport: Transport::Tls,
            app_name: "breakglass".into(),
            facility: "auth".into(),
            timeout: default_timeout(),
            ca_file: None,
            server_name: server_name.map(Into::into),
        };
        let name = |c: &SyslogConfig| match Syslog::new("s", c).unwrap().transport {
            Link::Tls(tls) => tls.server_name.to_str().into_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            name(&config("siem.example.com:6514", None)),
            "siem.example.com"
        );
        assert_eq!(name(&config("[::1]:6514", None)), "::1");
        assert_eq!(name(&config("10.0.0.7:6514", None)), "10.0.0.7");
        assert_eq!(
            name(&config("10.0.0.7:6514", Some("siem.example.com"))),
            "siem.example.com"
        );
        let e = Syslog::new("s", &config("h:6514", Some("not a name"))).unwrap_err();
        assert_eq!(
            e.message,
            "`server_name` `not a name` is not a DNS name or an IP address"
        );
    }
}
