//! `breakglass grants list [--state S]`, `grants show ID`.

use serde_json::Value;

use crate::client::{CliError, Client, seg};
use crate::{Format, output};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Command {
    /// List the grants you can see, newest first.
    List {
        /// Only grants in this state (`requested`, `active`, `expired`, …).
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one grant.
    Show { id: String },
}

pub(crate) async fn run(c: Command, client: &Client) -> Result<(), CliError> {
    match c {
        Command::List { state } => {
            let path = match state {
                Some(s) => format!("/v1/grants?state={}", seg(&s)),
                None => "/v1/grants".into(),
            };
            let v = client.get(&path).await?;
            match client.format {
                Format::Json => output::json(&v),
                Format::Human => {
                    let rows: Vec<Vec<String>> = v
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                        .iter()
                        .map(|g: &Value| {
                            ["id", "state", "role", "requester", "expires_at"]
                                .iter()
                                .map(|k| output::cell(g, k))
                                .collect()
                        })
                        .collect();
                    output::table(&["ID", "STATE", "ROLE", "REQUESTER", "EXPIRES"], &rows);
                }
            }
        }
        Command::Show { id } => {
            let v = client.get(&format!("/v1/grants/{}", seg(&id))).await?;
            match client.format {
                Format::Json => output::json(&v),
                Format::Human => output::grant(&v),
            }
        }
    }
    Ok(())
}
