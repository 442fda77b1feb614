//! `breakglass grants list [--state S]`, `grants show ID`.

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
            output::show(client.format, &v, |v| {
                output::list(
                    v,
                    &["ID", "STATE", "ROLE", "REQUESTER", "EXPIRES"],
                    &["id", "state", "role", "requester", "expires_at"],
                );
            });
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
