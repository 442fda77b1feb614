//! `webhook`: a JSON POST per alert, signed with HMAC-SHA256.
//!
//! The body is either breakglass's own JSON (`format = "generic"`, the default) or a
//! Slack-compatible message (`format = "slack"`: `text` plus `blocks`, for an incoming webhook).
//! Every request carries:
//!
//! - `X-Breakglass-Alert-Id`: the alert's idempotency key (the same on every retry);
//! - `X-Breakglass-Timestamp`: unix seconds when this attempt was signed;
//! - `X-Breakglass-Signature`: `v1=<hex HMAC-SHA256(key, "<timestamp>.<body>")>`, when an
//!   `hmac_key` is configured. docs/alerts.md shows how a receiver checks it.
//!
//! Redirects are never followed (a redirect is a refusal), TLS is rustls, and each attempt is
//! bounded by the channel's `timeout`.

use std::time::Duration as StdDuration;

use async_trait::async_trait;
use hmac::{KeyInit as _, Mac as _};
use serde::Deserialize;
use serde_json::{Value, json};

use breakglass_core::{Clock as _, SystemClock};

use crate::{Alert, Channel, ChannelError, ConfigError, SecretSource, SecretValue, Severity};

/// The body shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Generic,
    Slack,
}

/// `[channels.NAME]` with `kind = "webhook"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `https://…` (or `http://` for a receiver on the same host).
    pub url: String,
    #[serde(default)]
    pub format: Format,
    /// The HMAC-SHA256 signing key (from `env` or `file`). Strongly recommended.
    #[serde(default)]
    pub hmac_key: Option<SecretSource>,
    /// How long one attempt may take (default `10s`).
    #[serde(default)]
    pub timeout: Option<breakglass_core::Duration>,
}

pub struct Webhook {
    name: String,
    url: reqwest::Url,
    format: Format,
    key: Option<SecretValue>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("host", &self.url.host_str())
            .field("format", &self.format)
            .field("signed", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

pub const HEADER_ID: &str = "x-breakglass-alert-id";
pub const HEADER_TIMESTAMP: &str = "x-breakglass-timestamp";
pub const HEADER_SIGNATURE: &str = "x-breakglass-signature";

/// `v1=<hex>`: HMAC-SHA256 over `<timestamp>.<body>`.
pub fn signature(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length, so this cannot fail; an empty signature would only make
    // the receiver refuse the request, never accept a forged one.
    let Ok(mut mac) = <hmac::Hmac<sha2::Sha256>>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

impl Webhook {
    pub fn new(name: &str, c: &WebhookConfig) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError {
            channel: name.to_owned(),
            message,
        };
        let url =
            reqwest::Url::parse(&c.url).map_err(|e| err(format!("`url` is not a URL: {e}")))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(err(format!(
                "`url` must be https:// (or http:// for a receiver on the same host), not `{}`",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(err(
                "`url` must not hold credentials; use `hmac_key` to sign requests".into(),
            ));
        }
        let key = c
            .hmac_key
            .as_ref()
            .map(|s| s.read(name, "hmac_key"))
            .transpose()?;
        let timeout = c.timeout.map_or(StdDuration::from_secs(10), |d| {
            StdDuration::from_secs(d.as_secs().unsigned_abs())
        });
        // reqwest is built without a default crypto provider in this workspace; ring is ours.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("breakglass/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| err(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            name: name.to_owned(),
            url,
            format: c.format,
            key,
            http,
        })
    }

    /// The JSON body for `alert` in this channel's format.
    pub fn body(&self, alert: &Alert) -> Value {
        match self.format {
            Format::Generic => json!({
                "id": alert.id,
                "event": alert.event,
                "seq": alert.seq,
                "severity": alert.severity.as_str(),
                "summary": alert.summary,
                "time": alert.time,
                "fields": alert.fields,
            }),
            Format::Slack => {
                let icon = match alert.severity {
                    Severity::High => ":rotating_light:",
                    Severity::Warning => ":warning:",
                    Severity::Info => ":information_source:",
                };
                let text = format!("{icon} {}", alert.summary);
                let lines: Vec<String> = alert
                    .fields
                    .iter()
                    .map(|(k, v)| format!("*{k}:* {v}"))
                    .collect();
                json!({
                    "text": text,
                    "blocks": [
                        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
                        {"type": "section", "text": {"type": "mrkdwn", "text": lines.join("\n")}},
                        {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("`{}` seq {} · alert {}", alert.event, alert.seq, alert.id)}]},
                    ],
                })
            }
        }
    }
}

#[async_trait]
impl Channel for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }

    async fn send(&self, alert: &Alert) -> Result<(), ChannelError> {
        let body = serde_json::to_vec(&self.body(alert))
            .map_err(|e| ChannelError::Refused(format!("cannot encode the alert: {e}")))?;
        // The signing time is the attempt's, not the alert's: receivers may refuse stale ones.
        let now = SystemClock.now().unix_seconds();
        let mut req = self
            .http
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header(HEADER_ID, &alert.id)
            .header(HEADER_TIMESTAMP, now.to_string());
        if let Some(key) = &self.key {
            req = req.header(
                HEADER_SIGNATURE,
                signature(key.expose().as_bytes(), now, &body),
            );
        }
        let host = self.url.host_str().unwrap_or_default().to_owned();
        let resp = req.body(body).send().await.map_err(|e| {
            // reqwest's message may quote the URL, which can carry a token in its path (Slack's
            // do): name only the host.
            let what = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            ChannelError::Unreachable(format!("{what} posting to {host}"))
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        if status.is_redirection() {
            return Err(ChannelError::Refused(format!(
                "{host} answered {status} (a redirect, which is never followed)"
            )));
        }
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(ChannelError::Unreachable(format!(
                "{host} answered {status}"
            )));
        }
        Err(ChannelError::Refused(format!("{host} answered {status}")))
    }
}
