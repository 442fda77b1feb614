//! The API client and the CLI's error type, with the documented exit codes.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::Format;

pub(crate) const EXIT_FAILURE: i32 = 1;
pub(crate) const EXIT_USAGE: i32 = 2;
pub(crate) const EXIT_UNAUTHENTICATED: i32 = 3;
pub(crate) const EXIT_FORBIDDEN: i32 = 4;
pub(crate) const EXIT_NOT_FOUND: i32 = 5;
pub(crate) const EXIT_REFUSED: i32 = 6;
pub(crate) const EXIT_UNREACHABLE: i32 = 7;
pub(crate) const EXIT_BROKER_ERROR: i32 = 8;
pub(crate) const EXIT_AUDIT_FAILED: i32 = 9;

#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) exit_code: i32,
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) help: String,
}

impl CliError {
    pub(crate) fn local(message: String) -> Self {
        Self {
            exit_code: EXIT_FAILURE,
            code: "cli".into(),
            message,
            help: String::new(),
        }
    }

    pub(crate) fn with_help(exit_code: i32, code: &str, message: String, help: &str) -> Self {
        Self {
            exit_code,
            code: code.into(),
            message,
            help: help.into(),
        }
    }
}

pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    pub(crate) format: Format,
}

impl Client {
    pub(crate) fn new(base: &str, format: Format) -> Result<Self, CliError> {
        // reqwest is built without a default crypto provider (no C dependencies); pick ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| CliError::local(format!("cannot build the HTTP client: {e}")))?;
        let token = std::env::var("BREAKGLASS_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty());
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
            format,
        })
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Result<Value, CliError> {
        self.send(Method::POST, path, Some(body)).await
    }

    /// A GET whose successful answer is text (JSON lines), not one JSON document.
    pub(crate) async fn get_text(&self, path: &str) -> Result<String, CliError> {
        self.exchange(Method::GET, path, None).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let text = self.exchange(method, path, body).await?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<String, CliError> {
        let Some(token) = &self.token else {
            return Err(CliError::with_help(
                EXIT_UNAUTHENTICATED,
                "unauthenticated",
                "no API token: `BREAKGLASS_TOKEN` is not set".into(),
                "export BREAKGLASS_TOKEN=<your token>; an admin creates one with `breakglass tokens create --user NAME`",
            ));
        };
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            CliError::with_help(
                EXIT_UNREACHABLE,
                "unreachable",
                format!(
                    "cannot reach the broker at `{}`: {}",
                    self.base,
                    root_cause(&e)
                ),
                "check `BREAKGLASS_URL` and that `breakglass serve` is running",
            )
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| {
            CliError::with_help(
                EXIT_UNREACHABLE,
                "unreachable",
                format!("the broker's answer was cut off: {e}"),
                "retry",
            )
        })?;
        if status.is_success() {
            return Ok(text);
        }
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let err = value.get("error");
        let field = |k: &str| {
            err.and_then(|e| e.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let message = match field("message") {
            m if m.is_empty() => format!("the broker answered {status}"),
            m => m,
        };
        Err(CliError {
            exit_code: exit_code(status),
            code: field("code"),
            message,
            help: field("help"),
        })
    }
}

fn exit_code(s: StatusCode) -> i32 {
    match s.as_u16() {
        401 => EXIT_UNAUTHENTICATED,
        403 => EXIT_FORBIDDEN,
        404 => EXIT_NOT_FOUND,
        503 => EXIT_UNREACHABLE,
        400..=499 => EXIT_REFUSED,
        _ => EXIT_BROKER_ERROR,
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string().to_lowercase()
}

/// Percent-encodes one path segment (ids are already safe; this guards against typos).
pub(crate) fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
