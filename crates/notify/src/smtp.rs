//! `smtp`: one plain-text mail per alert, to every configured recipient, for people whose phone
//! shows mail best.
//!
//! ```text
//! Subject: [breakglass] HIGH alice activated prod-admin
//! X-Breakglass-Alert-Id: a-1
//! Message-ID: <a-1@example.com>
//!
//! alice activated prod-admin
//!
//! grant: g-7
//! role: prod-admin
//!
//! event: grant.activated seq 42
//! ```
//!
//! The alert id is both the `X-Breakglass-Alert-Id` header and the left part of `Message-ID`, so
//! a retry is the same message and a receiver can drop duplicates; `Date` is the alert's time for
//! the same reason. `Auto-Submitted: auto-generated` keeps vacation responders quiet.
//!
//! TLS is rustls: `starttls` (the default, port 587) requires the upgrade and never falls back
//! to plaintext, `tls` is implicit TLS (port 465), and `none` is plaintext (port 25) for a relay on
//! the same host or a trusted network only. A password is never sent over `none` to anything but
//! a loopback address.
//!
//! A server that answers with a 4xx or 5xx reply is [`ChannelError::Refused`] with its code and
//! text; anything else (refused connection, TLS failure, a timeout) is
//! [`ChannelError::Unreachable`]. The whole attempt is bounded by `timeout`.

use std::net::IpAddr;
use std::time::{Duration as StdDuration, SystemTime};

use async_trait::async_trait;
use breakglass_core::Duration;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};
use serde::Deserialize;

use crate::{Alert, Channel, ChannelError, ConfigError, SecretSource, SecretValue};

/// How the connection is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum SmtpTls {
    /// `starttls`: plaintext greeting, then a required STARTTLS upgrade (default port 587).
    #[default]
    #[serde(rename = "starttls")]
    Starttls,
    /// `tls`: TLS from the first byte, "SMTPS" (default port 465).
    #[serde(rename = "tls")]
    Implicit,
    /// `none`: no encryption at all (default port 25). Only for a relay on the same host or a
    /// trusted network segment.
    #[serde(rename = "none")]
    Plain,
}

/// `[channels.NAME]` with `kind = "smtp"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// The SMTP server's host name (also the name its TLS certificate must carry).
    pub host: String,
    /// Default 587 (465 with `tls = "tls"`, 25 with `tls = "none"`).
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (default), `tls` or `none`.
    #[serde(default)]
    pub tls: SmtpTls,
    /// The sender, `breakglass@example.com` or `Breakglass <breakglass@example.com>`.
    pub from: String,
    /// At least one recipient, in the same forms as `from`.
    pub to: Vec<String>,
    /// Login for SMTP AUTH; needs `password`.
    #[serde(default)]
    pub username: Option<String>,
    /// The SMTP AUTH password, from `env` or `file`; needs `username`.
    #[serde(default)]
    pub password: Option<SecretSource>,
    /// How long one delivery may take, connection to final reply (default `10s`).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
}

/// An SMTP server to mail alerts through.
pub struct Smtp {
    name: String,
    host: String,
    port: u16,
    tls: SmtpTls,
    from: Mailbox,
    to: Vec<Mailbox>,
    /// Kept only to scrub it out of any error text a server might echo it into.
    password: Option<SecretValue>,
    timeout: StdDuration,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("from", &self.from.to_string())
            .field("to", &self.to.len())
            .field("authenticated", &self.password.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The header that carries [`Alert::id`].
pub const HEADER_ID: &str = "X-Breakglass-Alert-Id";

/// Longest summary in a subject, in characters, before it is cut with `…`.
const MAX_SUBJECT_SUMMARY: usize = 120;

impl Smtp {
    /// Checks the addresses and the TLS setup and reads the password now.
    pub fn new(name: &str, config: &SmtpConfig) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError {
            channel: name.to_owned(),
            message,
        };
        let host = config.host.trim();
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(err(format!("`host` `{host}` is not a host name")));
        }
        let from: Mailbox = config.from.parse().map_err(|e| {
            err(format!(
                "`from` `{}` is not a mail address: {e}",
                config.from
            ))
        })?;
        if config.to.is_empty() {
            return Err(err(
                "`to` is empty; list at least one recipient address".to_owned()
            ));
        }
        let to = config
            .to
            .iter()
            .map(|a| {
                a.parse::<Mailbox>()
                    .map_err(|e| err(format!("`to` entry `{a}` is not a mail address: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let credentials = match (&config.username, &config.password) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(err(
                    "`username` is set without `password`; set both or neither".to_owned(),
                ));
            }
            (None, Some(_)) => {
                return Err(err(
                    "`password` is set without `username`; set both or neither".to_owned(),
                ));
            }
            (Some(user), Some(source)) => Some((user.clone(), source.read(name, "password")?)),
        };
        let loopback =
            host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if credentials.is_some() && config.tls == SmtpTls::Plain && !loopback {
            return Err(err(format!(
                "`tls = \"none\"` would send the password to `{host}` in plaintext; use `tls = \"starttls\"` or `\"tls\"`, or a relay on a loopback address"
            )));
        }
        let (tls, port) = match config.tls {
            SmtpTls::Starttls => (Tls::Required(tls_parameters(host, &err)?), 587),
            SmtpTls::Implicit => (Tls::Wrapper(tls_parameters(host, &err)?), 465),
            SmtpTls::Plain => (Tls::None, 25),
        };
        let port = config.port.unwrap_or(port);
        let timeout = StdDuration::from_secs(config.timeout.as_secs().unsigned_abs());
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(tls)
            .timeout(Some(timeout));
        let password = match credentials {
            Some((user, password)) => {
                builder = builder.credentials(Credentials::new(user, password.expose().to_owned()));
                Some(password)
            }
            None => None,
        };
        Ok(Self {
            name: name.to_owned(),
            host: host.to_owned(),
            port,
            tls: config.tls,
            from,
            to,
            password,
            timeout,
            transport: builder.build(),
        })
    }

    /// The mail for `alert`, ready to send.
    fn message(&self, alert: &Alert) -> Result<Message, ChannelError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject(alert))
            .message_id(Some(format!(
                "<{}@{}>",
                message_id_part(&alert.id),
                self.from.email.domain()
            )))
            .date(
                SystemTime::UNIX_EPOCH
                    .checked_add(StdDuration::from_millis(
                        alert.time.unix_millis().max(0).unsigned_abs(),
                    ))
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            )
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str(HEADER_ID),
                alert.id.clone(),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".to_owned(),
            ))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .body(body(alert))
            .map_err(|e| ChannelError::Refused(format!("cannot build the mail: {e}")))
    }

    fn server(&self) -> String {
        format!("`{}:{}`", self.host, self.port)
    }

    /// The error text with the password (if a server echoed it) replaced.
    fn scrub(&self, text: String) -> String {
        match &self.password {
            Some(p) if !p.expose().is_empty() => text.replace(p.expose(), "[redacted]"),
            _ => text,
        }
    }
}

#[async_trait]
impl Channel for Smtp {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "smtp"
    }

    async fn send(&self, alert: &Alert) -> Result<(), ChannelError> {
        let message = self.message(alert)?;
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.is_permanent() || e.is_transient() => {
                Err(ChannelError::Refused(format!(
                    "smtp server {} refused the mail: {}",
                    self.server(),
                    self.scrub(e.to_string())
                )))
            }
            Ok(Err(e)) => Err(ChannelError::Unreachable(format!(
                "smtp server {}: {}",
                self.server(),
                self.scrub(e.to_string())
            ))),
            Err(_) => Err(ChannelError::Unreachable(format!(
                "smtp server {}: no delivery within {}s",
                self.server(),
                self.timeout.as_secs()
            ))),
        }
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn tls_parameters(
    host: &str,
    err: &impl Fn(String) -> ConfigError,
) -> Result<TlsParameters, ConfigError> {
    TlsParameters::new(host.to_owned())
        .map_err(|e| err(format!("`host` `{host}` cannot be used for TLS: {e}")))
}

/// `[breakglass] HIGH <summary>`, the summary on one line and cut so a lock screen shows it.
fn subject(alert: &Alert) -> String {
    let mut summary: String = alert
        .summary
        .chars()
        .take(MAX_SUBJECT_SUMMARY)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if alert.summary.chars().nth(MAX_SUBJECT_SUMMARY).is_some() {
        summary.push('…');
    }
    format!(
        "[breakglass] {} {summary}",
        alert.severity.as_str().to_ascii_uppercase()
    )
}

/// The summary, a blank line, one `key: value` line per field, a blank line and
/// `event: <event> seq <seq>`. Values are kept on their line.
fn body(alert: &Alert) -> String {
    let line = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    let mut out = line(&alert.summary);
    out.push_str("\n\n");
    for (key, value) in &alert.fields {
        out.push_str(&format!("{}: {}\n", line(key), line(value)));
    }
    if !alert.fields.is_empty() {
        out.push('\n');
    }
    // No final newline: the transport ends the last line itself.
    out.push_str(&format!("event: {} seq {}", line(&alert.event), alert.seq));
    out
}

/// The id as the left part of a `Message-ID` (RFC 5322 `dot-atom-text`): every byte outside
/// `atext` (and `=`, and a dot that would lead, trail or double) as `=XX`, so distinct ids stay
/// distinct and a typical id stays readable (`none` for an empty id).
fn message_id_part(id: &str) -> String {
    if id.is_empty() {
        return "none".to_owned();
    }
    let bytes = id.as_bytes();
    let mut out = String::with_capacity(id.len());
    let mut previous: Option<u8> = None;
    for (i, &b) in bytes.iter().enumerate() {
        let atext = b.is_ascii_alphanumeric() || b"!#$%&'*+-/?^_`{|}~".contains(&b);
        let dot = b == b'.' && i != 0 && i + 1 != bytes.len() && previous != Some(b'.');
        if atext || dot {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
        previous = Some(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use breakglass_core::Timestamp;

    use super::*;
    use crate::Severity;

    fn alert() -> Alert {
        Alert {
            id: "a-1".into(),
            event: "grant.activated".into(),
            seq: 42,
            severity: Severity::High,
            summary: "alice activated prod-admin".into(),
            fields: BTreeMap::from([
                ("grant".to_owned(), "g-7".to_owned()),
                ("role".to_owned(), "prod-admin".to_owned()),
            ]),
            time: Timestamp::from_unix_millis(1_800_000_000_123),
        }
    }

    #[test]
    fn subject_is_tagged_and_cut() {
        assert_eq!(
            subject(&alert()),
            "[breakglass] HIGH alice activated prod-admin"
        );
        let mut a = alert();
        a.severity = Severity::Info;
        a.summary = format!("line\n{}", "x".repeat(200));
        let s = subject(&a);
        assert!(s.starts_with("[breakglass] INFO line xxx"), "{s}");
        assert!(s.ends_with("x…"), "{s}");
        assert_eq!(s.chars().count(), "[breakglass] INFO ".len() + 121);
    }

    #[test]
    fn body_reads_top_down() {
        assert_eq!(
            body(&alert()),
            "alice activated prod-admin\n\ngrant: g-7\nrole: prod-admin\n\nevent: grant.activated seq 42"
        );
    }

    #[test]
    fn message_ids_are_dot_atoms() {
        assert_eq!(message_id_part("a-1.b_2/x"), "a-1.b_2/x");
        assert_eq!(
            message_id_part("breakglass/test/1a2b:17:oncall"),
            "breakglass/test/1a2b=3A17=3Aoncall"
        );
        assert_eq!(message_id_part("a b=c"), "a=20b=3Dc");
        assert_eq!(message_id_part(".a..b."), "=2Ea.=2Eb=2E");
        assert_eq!(message_id_part("é"), "=C3=A9");
        assert_eq!(message_id_part(""), "none");
    }
}
