//! `breakglass credential ID`: the credential, once, alone on the last line.

use serde_json::json;

use crate::client::{CliError, Client, seg};
use crate::{Format, output};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    id: String,
}

pub(crate) async fn run(a: Args, client: &Client) -> Result<(), CliError> {
    let v = client
        .post(&format!("/v1/grants/{}/credential", seg(&a.id)), json!({}))
        .await?;
    match client.format {
        Format::Json => output::json(&v),
        Format::Human => {
            println!(
                "{} credential for grant {}, valid until {}; shown once:",
                output::cell(&v, "kind"),
                output::cell(&v, "grant"),
                output::cell(&v, "expires_at")
            );
            println!("{}", output::cell(&v, "credential"));
        }
    }
    Ok(())
}
