//! `breakglass serve`: run the broker, initialising an empty data directory first.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use breakglass_core::SystemClock;
use breakglass_server::{ServeConfig, Server, datadir};

use crate::client::{CliError, EXIT_FAILURE, EXIT_UNREACHABLE, EXIT_USAGE};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Where the embedded database and its key live (created and initialised if missing); with
    /// `--database`, only the default roles directory and checkpoint log.
    #[arg(long, env = "BREAKGLASS_DATA_DIR", default_value = breakglass_server::config::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// A shared PostgreSQL database (`postgres://user:pass@host:5432/db`) instead of the embedded
    /// SQLite store; any number of replicas may serve it. Initialise it first with `init`.
    #[arg(long, env = "BREAKGLASS_DATABASE")]
    database: Option<String>,
    /// The key-encryption key file `init --database` created; every replica needs the same one.
    #[arg(long, env = "BREAKGLASS_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// The directory of role files (`*.toml`); default `<data-dir>/roles`.
    #[arg(long, env = "BREAKGLASS_ROLES")]
    roles: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free one, logged at start).
    #[arg(long, env = "BREAKGLASS_LISTEN", default_value = breakglass_server::config::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// The `iss` of issued tokens; default `http://<listen address>`.
    #[arg(long, env = "BREAKGLASS_ISSUER")]
    issuer: Option<String>,
    /// How often to sign an audit checkpoint when the log has grown (`30s`, `1m`, `5m`).
    #[arg(long, env = "BREAKGLASS_CHECKPOINT_INTERVAL", default_value = "1m")]
    checkpoint_interval: String,
    /// Where signed checkpoints are published (JSON lines); default `<data-dir>/checkpoints.log`.
    /// Point it at storage the database's owner cannot rewrite.
    #[arg(long, env = "BREAKGLASS_CHECKPOINT_LOG")]
    checkpoint_log: Option<PathBuf>,
    /// The config file: alert channels (`[channels.NAME]`) and `[alerts]`; see docs/alerts.md.
    #[arg(long, env = "BREAKGLASS_CONFIG")]
    config: Option<PathBuf>,
    /// How often to re-check open intents and sweep targets for orphaned privileges.
    #[arg(long, env = "BREAKGLASS_RECONCILE_INTERVAL", default_value = "30s")]
    reconcile_interval: String,
    /// How long to keep retrying a revocation the target refuses before marking the grant
    /// `failed` (the target's own end still bounds the access).
    #[arg(long, env = "BREAKGLASS_REVOKE_GIVE_UP", default_value = "1h")]
    revoke_give_up: String,
    /// The directory of custom Cedar policies (`*.cedar`); default `<data-dir>/policies`.
    #[arg(long, env = "BREAKGLASS_POLICIES")]
    policies: Option<PathBuf>,
    /// How long a `breakglass login` session lasts.
    #[arg(long, env = "BREAKGLASS_SESSION_TTL", default_value = "8h")]
    session_ttl: String,
    /// How recently a second factor must have been verified for approve, credential, revoke of
    /// another's grant, extend, emergency requests and administration.
    #[arg(long, env = "BREAKGLASS_STEP_UP_WINDOW", default_value = "5m")]
    step_up_window: String,
    /// A reverse proxy whose `X-Forwarded-For` header names the client (an address or a network;
    /// repeat it, or comma-separate in the variable). From any other peer the header is ignored:
    /// sign-in throttling counts by the address a request really came from.
    #[arg(
        long = "trusted-proxy",
        env = "BREAKGLASS_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<String>,
    /// Serve HTTPS with this PEM certificate chain (the broker's certificate first); reloaded on
    /// SIGHUP.
    #[arg(long, env = "BREAKGLASS_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`; reloaded on SIGHUP.
    #[arg(long, env = "BREAKGLASS_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A PEM CA whose client certificates may stand in for a service principal's token (mutual
    /// TLS; the mapping is `[client_certs]` in the config file).
    #[arg(long, env = "BREAKGLASS_CLIENT_CA", requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Serve plain HTTP on an address other hosts can reach (only behind a TLS-terminating
    /// proxy on a trusted network); loopback never needs it.
    #[arg(long, env = "BREAKGLASS_INSECURE_HTTP")]
    insecure_http: bool,
    /// How long a client has to finish the TLS handshake, and then to send each request's
    /// headers (an idle connection is closed after it).
    #[arg(long, env = "BREAKGLASS_HEADER_TIMEOUT", default_value = "10s")]
    header_timeout: String,
    /// How long a client has to send a request's whole body once its headers are in.
    #[arg(long, env = "BREAKGLASS_BODY_TIMEOUT", default_value = "30s")]
    body_timeout: String,
    /// How long the broker works on one request before it answers `503 timeout`.
    #[arg(long, env = "BREAKGLASS_REQUEST_TIMEOUT", default_value = "1m")]
    request_timeout: String,
    /// Connections served at once; more wait until one closes.
    #[arg(long, env = "BREAKGLASS_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections: u32,
    /// Requests a second per source address (an IPv4 address or an IPv6 /64), sustained; more
    /// get `429` with `Retry-After`. 0 turns the limit off.
    #[arg(long, env = "BREAKGLASS_RATE_LIMIT", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    rate_limit: u32,
    /// Password hashes computed at once. Each worker keeps the 19 MiB an Argon2id hash needs,
    /// allocated at start; more sign-ins than workers wait their turn.
    #[arg(long, env = "BREAKGLASS_PASSWORD_WORKERS", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    password_workers: u32,
    /// Requests a source may send at once above `--rate-limit`.
    #[arg(long, env = "BREAKGLASS_RATE_BURST", default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    rate_burst: u32,
}

impl Args {
    /// The limits these flags ask for.
    fn limits(&self) -> Result<breakglass_server::config::Limits, CliError> {
        let timeout = |flag: &str, value: &str| {
            core_duration(flag, value, 3600)
                .map(|d| std::time::Duration::from_secs(d.as_secs().unsigned_abs()))
        };
        let rate = std::num::NonZeroU32::new(self.rate_limit).map(|per_second| {
            breakglass_server::config::RateLimit {
                per_second,
                burst: std::num::NonZeroU32::new(self.rate_burst)
                    .unwrap_or(std::num::NonZeroU32::MIN),
            }
        });
        Ok(breakglass_server::config::Limits {
            header_timeout: timeout("--header-timeout", &self.header_timeout)?,
            body_timeout: timeout("--body-timeout", &self.body_timeout)?,
            request_timeout: timeout("--request-timeout", &self.request_timeout)?,
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            rate,
        })
    }
}

/// Parses a duration flag, naming the flag in the error.
fn duration_flag(flag: &str, value: &str) -> Result<std::time::Duration, CliError> {
    let d: breakglass_core::Duration =
        value.parse().map_err(|e: breakglass_core::DomainError| {
            CliError::with_help(
                crate::client::EXIT_REFUSED,
                e.code(),
                format!("`{flag}`: {e}"),
                &e.help(),
            )
        })?;
    Ok(std::time::Duration::from_secs(d.as_secs().unsigned_abs()))
}

/// A duration flag with an upper bound (a session or step-up window that never ends would be
/// standing privilege under another name).
fn core_duration(
    flag: &str,
    value: &str,
    max_secs: i64,
) -> Result<breakglass_core::Duration, CliError> {
    let d = duration_flag(flag, value)?;
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    if secs == 0 || secs > max_secs {
        return Err(CliError::with_help(
            EXIT_USAGE,
            "usage",
            format!(
                "`{flag}` must be more than 0 and at most {}",
                breakglass_core::Duration::from_secs(max_secs)
            ),
            "pass a shorter duration such as `5m` or `8h`",
        ));
    }
    Ok(breakglass_core::Duration::from_secs(secs))
}

pub(crate) async fn run(a: Args) -> Result<(), CliError> {
    let checkpoint_interval = duration_flag("--checkpoint-interval", &a.checkpoint_interval)?;
    let reconcile_interval = duration_flag("--reconcile-interval", &a.reconcile_interval)?;
    let revoke_give_up = duration_flag("--revoke-give-up", &a.revoke_give_up)?;
    let auth = breakglass_server::signin::AuthSettings {
        session_ttl: core_duration("--session-ttl", &a.session_ttl, 7 * 86_400)?,
        step_up_window: core_duration("--step-up-window", &a.step_up_window, 86_400)?,
    };
    let limits = a.limits()?;
    init_logging();
    let fail = |e: breakglass_server::StartupError| {
        let code = if e.is_unavailable() {
            EXIT_UNREACHABLE
        } else {
            EXIT_FAILURE
        };
        CliError::with_help(code, "startup", e.to_string(), &e.help())
    };
    let location =
        datadir::Location::from_args(&a.data_dir, a.database.as_deref(), a.key_file.as_deref())
            .map_err(|e| CliError::with_help(EXIT_USAGE, "usage", e.to_string(), &e.help()))?;
    let mut config = ServeConfig::new(a.data_dir.clone(), a.listen);
    config.location = location.clone();
    config.checkpoint_interval = checkpoint_interval;
    config.reconcile_interval = reconcile_interval;
    config.revoke_give_up = revoke_give_up;
    config.checkpoint_log = a.checkpoint_log;
    config.roles_dir = a.roles;
    config.policies_dir = a.policies;
    config.auth = auth;
    config.config_file = a.config;
    config.issuer = a.issuer;
    config.trusted_proxies = a
        .trusted_proxies
        .iter()
        .map(|p| breakglass_server::config::parse_trusted_proxy(p))
        .collect::<Result<_, _>>()
        .map_err(fail)?;
    config.insecure_http = a.insecure_http;
    config.limits = limits;
    config.password_workers = usize::try_from(a.password_workers).unwrap_or(1);
    if let (Some(cert), Some(key)) = (a.tls_cert, a.tls_key) {
        config.tls = Some(breakglass_server::config::TlsFiles {
            cert,
            key,
            client_ca: a.client_ca,
        });
    }
    // What must not be served stops the start before a new data directory is made.
    config.check().map_err(fail)?;
    // The embedded store initialises itself on first start. A shared database never does: two
    // replicas starting at once would each make a key, so `init` is run once, by hand.
    if matches!(location, datadir::Location::Dir(_)) && !datadir::is_initialized(&a.data_dir) {
        let done = datadir::init(&location, &SystemClock).await.map_err(fail)?;
        // INVARIANT(6): the first admin token goes to a terminal, or to a 0600 file; never to the
        // log stream, which stdout usually is for a service.
        if std::io::stderr().is_terminal() {
            eprintln!("initialised breakglass in `{}`", a.data_dir.display());
            eprintln!(
                "admin API token for user `{}`, shown once; store it like a root password:",
                datadir::FIRST_ADMIN
            );
            eprintln!("{}", done.admin_token.expose());
            eprintln!(
                "audit log verifier key (record it somewhere this host cannot change): {}",
                done.audit_key
            );
        } else {
            let file =
                datadir::write_initial_token(&a.data_dir, &done.admin_token).map_err(fail)?;
            tracing::warn!(file = %file.display(), audit_key = %done.audit_key, "initialised a new data directory; the first admin token is in this file: read it, store it safely, then delete the file");
        }
    }
    let server = Server::start(config, Arc::new(SystemClock))
        .await
        .map_err(fail)?;
    server
        .run(breakglass_server::shutdown_signal())
        .await
        .map_err(|e| CliError::local(format!("server stopped with an error: {e}")))
}

/// JSON log lines on stdout; `BREAKGLASS_LOG` sets the filter (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BREAKGLASS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Serve {
        #[command(flatten)]
        args: super::Args,
    }

    #[test]
    fn the_flags_defaults_are_the_servers() {
        let s = Serve::try_parse_from(["serve"]).unwrap();
        assert_eq!(
            s.args.limits().unwrap(),
            breakglass_server::config::Limits::default()
        );
        let off = Serve::try_parse_from(["serve", "--rate-limit", "0"]).unwrap();
        assert_eq!(off.args.limits().unwrap().rate, None);
        let long = Serve::try_parse_from(["serve", "--header-timeout", "2h"]).unwrap();
        let e = long.args.limits().unwrap_err();
        assert_eq!(e.exit_code, crate::client::EXIT_USAGE);
        assert_eq!(
            e.message,
            "`--header-timeout` must be more than 0 and at most 1h"
        );
        let zero = Serve::try_parse_from(["serve", "--body-timeout", "0s"]).unwrap();
        let e = zero.args.limits().unwrap_err();
        assert!(e.message.starts_with("`--body-timeout`: "), "{}", e.message);
        assert_eq!(
            usize::try_from(s.args.password_workers).unwrap(),
            breakglass_server::signin::crypto::pool::DEFAULT_WORKERS
        );
        assert!(Serve::try_parse_from(["serve", "--password-workers", "0"]).is_err());
        assert!(Serve::try_parse_from(["serve", "--password-workers", "65"]).is_err());
    }
}
