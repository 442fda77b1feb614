//! `breakglass serve`: run the broker, initialising an empty data directory first.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use breakglass_core::SystemClock;
use breakglass_server::{ServeConfig, Server, datadir};

use crate::client::{CliError, EXIT_FAILURE};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Where the database and keys live; created and initialised if missing.
    #[arg(long, env = "BREAKGLASS_DATA_DIR", default_value = breakglass_server::config::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
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
}

pub(crate) async fn run(a: Args) -> Result<(), CliError> {
    let interval: breakglass_core::Duration =
        a.checkpoint_interval
            .parse()
            .map_err(|e: breakglass_core::DomainError| {
                CliError::with_help(
                    crate::client::EXIT_REFUSED,
                    e.code(),
                    format!("`--checkpoint-interval`: {e}"),
                    &e.help(),
                )
            })?;
    init_logging();
    let fail = |e: breakglass_server::StartupError| {
        CliError::with_help(EXIT_FAILURE, "startup", e.to_string(), &e.help())
    };
    if !datadir::is_initialized(&a.data_dir) {
        let done = datadir::init(&a.data_dir, &SystemClock)
            .await
            .map_err(fail)?;
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
    let mut config = ServeConfig::new(a.data_dir, a.listen);
    config.checkpoint_interval = std::time::Duration::from_secs(interval.as_secs().unsigned_abs());
    config.checkpoint_log = a.checkpoint_log;
    config.roles_dir = a.roles;
    config.issuer = a.issuer;
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
