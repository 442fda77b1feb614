//! Alert channels: where breakglass tells people that emergency access is being asked for, used
//! and ended. Each channel kind is one module behind [`Channel`]; the durable outbox (in the store)
//! and its dispatcher (in the server) call [`Channel::send`] at least once per alert, with
//! [`Alert::id`] as the idempotency key.
//!
//! Configuration comes from the `[channels.NAME]` tables of the config file ([`ChannelConfig`]).
//! Secrets (webhook HMAC keys, SMTP passwords) are never in the config text: the config names an
//! environment variable or a file ([`SecretSource`]). No alert carries a credential or secret.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use breakglass_core::Timestamp;
use serde::Deserialize;

/// How loud an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    /// Privilege is live: an activation, an emergency use, a failed revocation or delivery.
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::High => "high",
        }
    }
}

/// One alert, as every channel renders it. Holds no secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// Unique per alert and channel, stable across retries: the receiver's idempotency key.
    pub id: String,
    /// The audit event it reports (`grant.activated`, ...).
    pub event: String,
    /// The audit event's `seq`.
    pub seq: u64,
    pub severity: Severity,
    /// One line a person reads on a phone lock screen.
    pub summary: String,
    /// Everything else worth knowing, by name: `grant`, `role`, `requester`, `by`, `reason`,
    /// `incident`, `expires_at`, `link`, ... (only those that apply).
    pub fields: BTreeMap<String, String>,
    pub time: Timestamp,
}

/// Why a delivery failed. Messages name what went wrong and never hold a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChannelError {
    /// The receiver could not be reached or did not answer in time; retry later.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The receiver answered and refused (an HTTP 4xx/5xx, an SMTP rejection).
    #[error("refused: {0}")]
    Refused(String),
}

/// A place alerts go.
#[async_trait]
pub trait Channel: Send + Sync + fmt::Debug {
    /// The channel's name in the config (`oncall`).
    fn name(&self) -> &str;
    /// `webhook`, `smtp` or `syslog`.
    fn kind(&self) -> &'static str;
    /// Delivers one alert. Called at least once per alert: a retry carries the same `alert.id`.
    /// Must not take longer than the channel's timeout.
    async fn send(&self, alert: &Alert) -> Result<(), ChannelError>;
}

/// Where a secret comes from: an environment variable or a file, never the config text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretSource {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            #[serde(default)]
            env: Option<String>,
            #[serde(default)]
            file: Option<PathBuf>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Table(Table),
            // Read only to be refused; the value is never looked at or echoed.
            Text(#[allow(dead_code, reason = "refused unread")] String),
        }
        match Raw::deserialize(d)? {
            Raw::Table(t) => Ok(Self {
                env: t.env,
                file: t.file,
            }),
            // Never echo the value: it may be the secret itself.
            Raw::Text(_) => Err(serde::de::Error::custom(
                "a secret is given as `{ env = \"VARIABLE\" }` or `{ file = \"/path\" }`, never written into the config file itself",
            )),
        }
    }
}

/// A secret read from its source, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue([redacted])")
    }
}

/// A channel that cannot be built from its config. Names the channel and the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("channel `{channel}`: {message}")]
pub struct ConfigError {
    pub channel: String,
    pub message: String,
}

impl SecretSource {
    /// Reads the secret: exactly one of `env` and `file` must be set; a file's trailing newline is
    /// dropped. `key` names the config key in errors (`hmac_key`).
    pub fn read(&self, channel: &str, key: &str) -> Result<SecretValue, ConfigError> {
        let err = |message: String| ConfigError {
            channel: channel.to_owned(),
            message,
        };
        let value = match (&self.env, &self.file) {
            (Some(var), None) => std::env::var(var).map_err(|_| {
                err(format!(
                    "`{key}.env` names `{var}`, which is not set in the environment"
                ))
            })?,
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| {
                    err(format!(
                        "`{key}.file` `{}` cannot be read: {e}",
                        path.display()
                    ))
                })?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
            _ => {
                return Err(err(format!(
                    "`{key}` needs exactly one of `env` (a variable name) or `file` (a path); secrets never go in the config itself"
                )));
            }
        };
        if value.is_empty() {
            return Err(err(format!("`{key}` is empty")));
        }
        Ok(SecretValue(value))
    }
}

/// One `[channels.NAME]` table. `kind` selects the variant.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChannelConfig {
    Webhook(webhook::WebhookConfig),
    Smtp(smtp::SmtpConfig),
    Syslog(syslog::SyslogConfig),
}

impl ChannelConfig {
    /// Builds the channel, reading its secrets now: a missing secret is an error at start, not at
    /// the first alert.
    pub fn build(&self, name: &str) -> Result<Arc<dyn Channel>, ConfigError> {
        Ok(match self {
            Self::Webhook(c) => Arc::new(webhook::Webhook::new(name, c)?),
            Self::Smtp(c) => Arc::new(smtp::Smtp::new(name, c)?),
            Self::Syslog(c) => Arc::new(syslog::Syslog::new(name, c)?),
        })
    }
}

pub mod smtp;
pub mod syslog;
pub mod webhook;
