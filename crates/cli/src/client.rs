//! The API client and the CLI's error type, with the documented exit codes.

use std::path::Path;
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
    /// A TOTP code given with `--totp`, used once if the broker asks for a step-up.
    totp: Option<String>,
    pub(crate) format: Format,
}

impl Client {
    pub(crate) fn new(
        base: &str,
        format: Format,
        totp: Option<String>,
        ca_cert: Option<&Path>,
    ) -> Result<Self, CliError> {
        // reqwest is built without a default crypto provider (no C dependencies); pick ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = ca_cert {
            // A private CA replaces the system's roots: the CLI talks to this broker only.
            builder = builder.tls_certs_only(ca_certificates(path)?);
        }
        let http = builder
            .build()
            .map_err(|e| CliError::local(format!("cannot build the HTTP client: {e}")))?;
        // An explicit token wins; otherwise the session `breakglass login` saved for this URL.
        let token = std::env::var("BREAKGLASS_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| crate::session::load(base).map(|s| s.token));
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
            totp,
            format,
        })
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// A POST that needs no token (signing in).
    pub(crate) async fn post_anonymous(&self, path: &str, body: Value) -> Result<Value, CliError> {
        let text = self
            .exchange_with(Method::POST, path, Some(body), None)
            .await?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Verifies a second factor for the current session or token.
    pub(crate) async fn step_up(&self, code: &str) -> Result<Value, CliError> {
        let text = self
            .exchange(
                Method::POST,
                "/v1/step-up",
                Some(serde_json::json!({ "code": code.trim() })),
            )
            .await?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
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
        let text = match self.exchange(method.clone(), path, body.clone()).await {
            // The broker wants a fresh second factor: take it from `--totp`, or ask at a
            // terminal, then try once more.
            Err(e) if e.code == "step_up_required" => {
                let Some(code) = self.totp.clone().or_else(|| prompt_code(Some(&e.message))) else {
                    return Err(e);
                };
                self.step_up(&code).await?;
                self.exchange(method, path, body).await?
            }
            other => other?,
        };
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
                "not signed in: no session and `BREAKGLASS_TOKEN` is not set".into(),
                "sign in with `breakglass login --user NAME`, or export BREAKGLASS_TOKEN=<token>",
            ));
        };
        self.exchange_with(method, path, body, Some(token)).await
    }

    async fn exchange_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Result<String, CliError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
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
                tls_help(&e).unwrap_or(
                    "check `BREAKGLASS_URL` (`https://` for a broker serving TLS) and that `breakglass serve` is running",
                ),
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
        let code = field("code");
        Err(CliError {
            // The rate limit makes the broker unavailable to this client for now, like a broker
            // that is down (a locked sign-in, also a 429, is a refusal).
            exit_code: if code == "rate_limited" {
                EXIT_UNREACHABLE
            } else {
                exit_code(status)
            },
            code,
            message,
            help: field("help"),
        })
    }
}

/// Asks for a TOTP code (or a recovery code) at a terminal, saying `why` first if given; `None`
/// when there is no terminal to ask at, or nothing was typed.
pub(crate) fn prompt_code(why: Option<&str>) -> Option<String> {
    use std::io::{BufRead as _, IsTerminal as _, Write as _};
    if !std::io::stdin().is_terminal() {
        return None;
    }
    if let Some(why) = why {
        eprintln!("{why}.");
    }
    eprint!("Code from your authenticator app (or a recovery code): ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).ok()?;
    let code = line.trim().to_owned();
    (!code.is_empty()).then_some(code)
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

/// The certificates of a `--ca-cert` file (PEM, one or more).
fn ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, CliError> {
    let bad = |why: String| {
        CliError::with_help(
            EXIT_USAGE,
            "usage",
            format!("`--ca-cert` file `{}` {why}", path.display()),
            "pass the PEM file of the CA that signed the broker's certificate (after `init --self-signed-tls`, the data directory's `tls.crt`)",
        )
    };
    let pem = std::fs::read(path)
        .map_err(|e| bad(format!("cannot be read: {}", e.to_string().to_lowercase())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| bad(format!("is not PEM: {}", root_cause(&e))))?;
    if certs.is_empty() {
        return Err(bad(
            "holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)".into(),
        ));
    }
    Ok(certs)
}

/// What to check when the broker could not be reached because of TLS.
fn tls_help(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    use rustls::{CertificateError as C, Error as R};
    let mut cur = Some(e);
    let mut found = None;
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<R>() {
            found = Some(r);
            break;
        }
        // An I/O error hides the error it wraps from `source()`: step into it instead.
        cur = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    Some(match found? {
        R::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "the broker's certificate is not from a CA this CLI trusts: pass `--ca-cert FILE` (or set `BREAKGLASS_CA_CERT`) naming the CA that signed it; after `init --self-signed-tls` that is the data directory's `tls.crt`"
        }
        R::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "the broker's certificate does not name the host in `BREAKGLASS_URL`: use a host name the certificate was made for"
        }
        R::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        ) => {
            "the broker's certificate has expired or is not valid yet: check this host's clock, and have the operator renew the certificate (then send the broker SIGHUP)"
        }
        R::InvalidCertificate(_) => {
            "the broker's certificate was refused: check `--ca-cert` and that the certificate is valid for the host in `BREAKGLASS_URL`"
        }
        _ => {
            "the TLS handshake failed: check that the broker serves HTTPS on that port (`serve --tls-cert`), or use an `http://` URL for one that does not"
        }
    })
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
