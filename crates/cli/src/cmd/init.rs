//! `breakglass init`: create a data directory and the first admin.

use std::path::PathBuf;

use breakglass_core::SystemClock;
use breakglass_server::datadir;
use serde_json::json;

use crate::Format;
use crate::client::{CliError, EXIT_REFUSED};
use crate::output;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The data directory to create.
    #[arg(long, env = "BREAKGLASS_DATA_DIR", default_value = breakglass_server::config::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
}

pub(crate) async fn run(a: Args, format: Format) -> Result<(), CliError> {
    let done = datadir::init(&a.data_dir, &SystemClock)
        .await
        .map_err(|e| CliError::with_help(EXIT_REFUSED, "init", e.to_string(), &e.help()))?;
    match format {
        Format::Json => output::json(&json!({
            "data_dir": a.data_dir.display().to_string(),
            "admin": datadir::FIRST_ADMIN,
            "admin_token": done.admin_token.expose(),
            "audit_key": done.audit_key,
        })),
        Format::Human => {
            println!("initialised breakglass in `{}`", a.data_dir.display());
            println!("first admin: `{}` (group `admins`)", datadir::FIRST_ADMIN);
            println!("audit log verifier key (record it somewhere this host cannot change):");
            println!("  {}", done.audit_key);
            println!("admin API token, shown once; store it like a root password:");
            println!("{}", done.admin_token.expose());
        }
    }
    Ok(())
}
