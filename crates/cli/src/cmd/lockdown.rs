//! `breakglass lockdown --role ROLE | --all --reason TEXT`, `breakglass lockdown lift [--role ROLE |
//! --all]` and `breakglass lockdown status`.

use serde_json::{Value, json};

use crate::client::{CliError, Client};
use crate::{Format, output};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Lock down this role.
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    role: Option<String>,
    /// Lock down every role, including roles added while it is in force.
    #[arg(long)]
    all: bool,
    /// Why: shown to everyone refused until it is lifted, and in every alert.
    #[arg(long, required = true)]
    reason: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Command {
    /// Lift a lockdown (without --role or --all: every lockdown in force).
    Lift {
        #[arg(long, conflicts_with = "all")]
        role: Option<String>,
        #[arg(long)]
        all: bool,
        /// Why it is safe again (recorded and alerted).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Show the lockdowns in force.
    Status,
}

pub(crate) async fn run(a: Args, client: &Client) -> Result<(), CliError> {
    match a.command {
        None => {
            let body = json!({ "role": a.role, "all": a.all, "reason": a.reason });
            let v = client.post("/v1/lockdown", body).await?;
            output::show(client.format, &v, |v| {
                let l = &v["lockdown"];
                println!(
                    "lockdown {} of {} engaged by {}",
                    output::cell(l, "id"),
                    output::cell(l, "scope"),
                    output::cell(l, "engaged_by"),
                );
                println!(
                    "grants: {} revoked, {} cancelled, {} still revoking (retried until the target accepts)",
                    output::cell(v, "revoked"),
                    output::cell(v, "cancelled"),
                    output::cell(v, "retrying"),
                );
                println!("every new request in scope is refused until `breakglass lockdown lift`");
            });
        }
        Some(Command::Lift { role, all, reason }) => {
            let body = json!({ "role": role, "all": all, "reason": reason });
            let v = client.post("/v1/lockdown/lift", body).await?;
            output::show(client.format, &v, |v| {
                for l in v["lifted"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    println!(
                        "lifted lockdown {} of {} (engaged by {})",
                        output::cell(l, "id"),
                        output::cell(l, "scope"),
                        output::cell(l, "engaged_by"),
                    );
                }
            });
        }
        Some(Command::Status) => {
            let v = client.get("/v1/lockdown").await?;
            match client.format {
                Format::Json => output::json(&v),
                Format::Human => status(&v),
            }
        }
    }
    Ok(())
}

fn status(v: &Value) {
    let list = v["lockdowns"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if list.is_empty() {
        println!("no lockdown in force");
        return;
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|l| {
            ["id", "scope", "engaged_by", "engaged_at", "reason"]
                .iter()
                .map(|k| output::cell(l, k))
                .collect()
        })
        .collect();
    output::table(&["ID", "SCOPE", "BY", "SINCE", "REASON"], &rows);
}
