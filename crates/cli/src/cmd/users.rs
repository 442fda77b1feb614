//! `breakglass users add|list`.

use serde_json::{Value, json};

use crate::client::{CliError, Client};
use crate::{Format, output};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Command {
    /// Add a user (admins only).
    Add {
        name: String,
        /// A group to put the user in; repeat for several.
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// List users.
    List,
}

pub(crate) async fn run(c: Command, client: &Client) -> Result<(), CliError> {
    match c {
        Command::Add { name, groups } => {
            let v = client
                .post("/v1/users", json!({ "name": name, "groups": groups }))
                .await?;
            match client.format {
                Format::Json => output::json(&v),
                Format::Human => println!(
                    "added user `{}` in groups [{}]",
                    output::cell(&v, "name"),
                    output::cell(&v, "groups")
                ),
            }
        }
        Command::List => {
            let v = client.get("/v1/users").await?;
            match client.format {
                Format::Json => output::json(&v),
                Format::Human => {
                    let rows: Vec<Vec<String>> = v
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                        .iter()
                        .map(|u: &Value| {
                            vec![
                                output::cell(u, "name"),
                                output::cell(u, "kind"),
                                output::cell(u, "groups"),
                                output::cell(u, "disabled"),
                            ]
                        })
                        .collect();
                    output::table(&["NAME", "KIND", "GROUPS", "DISABLED"], &rows);
                }
            }
        }
    }
    Ok(())
}
