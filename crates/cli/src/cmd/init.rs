//! `breakglass init`: create a data directory and the first admin.

use std::path::PathBuf;

use breakglass_core::SystemClock;
use breakglass_server::datadir;
use serde_json::json;

use crate::Format;
use crate::client::{CliError, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE};
use crate::output;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The data directory to create (the embedded SQLite store).
    #[arg(long, env = "BREAKGLASS_DATA_DIR", default_value = breakglass_server::config::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Initialise this PostgreSQL database (`postgres://…`) instead of a data directory.
    #[arg(long, env = "BREAKGLASS_DATABASE")]
    database: Option<String>,
    /// With `--database`: where to create the key-encryption key (0600). Every replica is
    /// started with this file; back it up, since the stored keys cannot be opened without it.
    #[arg(long, env = "BREAKGLASS_KEY_FILE")]
    key_file: Option<PathBuf>,
}

pub(crate) async fn run(a: Args, format: Format) -> Result<(), CliError> {
    let location =
        datadir::Location::from_args(&a.data_dir, a.database.as_deref(), a.key_file.as_deref())
            .map_err(|e| CliError::with_help(EXIT_USAGE, "usage", e.to_string(), &e.help()))?;
    let done = datadir::init(&location, &SystemClock).await.map_err(|e| {
        let code = if e.is_unavailable() {
            EXIT_UNREACHABLE
        } else {
            EXIT_REFUSED
        };
        CliError::with_help(code, "init", e.to_string(), &e.help())
    })?;
    let (where_key, where_value) = match &location {
        datadir::Location::Dir(d) => ("data_dir", d.display().to_string()),
        datadir::Location::Postgres { url, .. } => ("database", datadir::redact_url(url)),
    };
    match format {
        Format::Json => output::json(&json!({
            where_key: where_value,
            "admin": datadir::FIRST_ADMIN,
            "admin_token": done.admin_token.expose(),
            "audit_key": done.audit_key,
        })),
        Format::Human => {
            println!("initialised breakglass in {}", location.describe());
            if let datadir::Location::Postgres { key_file, .. } = &location {
                println!(
                    "key-encryption key written to `{}` (0600): start every replica with `--key-file` pointing at a copy, and back it up",
                    key_file.display()
                );
            }
            println!("first admin: `{}` (group `admins`)", datadir::FIRST_ADMIN);
            println!("audit log verifier key (record it somewhere this host cannot change):");
            println!("  {}", done.audit_key);
            println!("admin API token, shown once; store it like a root password:");
            println!("{}", done.admin_token.expose());
        }
    }
    Ok(())
}
