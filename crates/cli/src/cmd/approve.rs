//! `breakglass approve ID [--comment TEXT]`.

use serde_json::json;

use crate::client::{CliError, Client, seg};
use crate::{Format, output};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The grant to approve.
    id: String,
    #[arg(long)]
    comment: Option<String>,
}

pub(crate) async fn run(a: Args, client: &Client) -> Result<(), CliError> {
    let v = client
        .post(
            &format!("/v1/grants/{}/approve", seg(&a.id)),
            json!({ "comment": a.comment }),
        )
        .await?;
    match client.format {
        Format::Json => output::json(&v),
        Format::Human => {
            output::grant(&v);
            if output::cell(&v, "state") == "active" {
                println!();
                println!(
                    "active: the requester collects the credential with `breakglass credential {}`",
                    output::cell(&v, "id")
                );
            }
        }
    }
    Ok(())
}
