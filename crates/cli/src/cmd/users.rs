//! `breakglass users add|list`.

use serde_json::json;

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
            output::show(client.format, &v, |v| {
                output::list(
                    v,
                    &["NAME", "KIND", "GROUPS", "DISABLED"],
                    &["name", "kind", "groups", "disabled"],
                );
            });
        }
    }
    Ok(())
}
