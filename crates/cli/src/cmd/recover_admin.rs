//! `breakglass recover-admin --data-dir DIR [--user admin] [--ttl 1d]` (or `--database URL
//! --key-file PATH`): a new API token for an admin, written straight into the store. The way back
//! in when every admin token has expired or been lost.

use std::path::PathBuf;

use breakglass_core::{Duration, SystemClock};
use breakglass_server::datadir;
use serde_json::json;

use crate::Format;
use crate::client::{CliError, EXIT_REFUSED, EXIT_USAGE};
use crate::output;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The data directory of a stopped broker.
    #[arg(long, env = "BREAKGLASS_DATA_DIR", default_value = breakglass_server::config::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// The PostgreSQL database (`postgres://…`) instead of a data directory; replicas may run.
    #[arg(long, env = "BREAKGLASS_DATABASE")]
    database: Option<String>,
    /// With `--database`: the key-encryption key file made by `init`.
    #[arg(long, env = "BREAKGLASS_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// The admin to issue the token for.
    #[arg(long, default_value = datadir::FIRST_ADMIN)]
    user: String,
    /// How long the token lives.
    #[arg(long, default_value = "1d")]
    ttl: String,
}

pub(crate) async fn run(a: Args, format: Format) -> Result<(), CliError> {
    let ttl: Duration = a.ttl.parse().map_err(|e: breakglass_core::DomainError| {
        CliError::with_help(EXIT_REFUSED, e.code(), e.to_string(), &e.help())
    })?;
    let location =
        datadir::Location::from_args(&a.data_dir, a.database.as_deref(), a.key_file.as_deref())
            .map_err(|e| CliError::with_help(EXIT_USAGE, "usage", e.to_string(), &e.help()))?;
    let (token, record) = datadir::recover_admin(&location, &a.user, ttl, &SystemClock)
        .await
        .map_err(|e| CliError::with_help(EXIT_REFUSED, "recovery", e.to_string(), &e.help()))?;
    match format {
        Format::Json => output::json(&json!({
            "id": record.id, "user": record.principal, "expires_at": record.expires_at, "token": token.expose(),
        })),
        Format::Human => {
            println!(
                "API token `{}` for admin `{}`, expires {}; recorded in the audit log; shown once:",
                record.id, record.principal, record.expires_at
            );
            println!("{}", token.expose());
        }
    }
    Ok(())
}
