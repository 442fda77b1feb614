//! `breakglass deny ID --reason TEXT`.

use serde_json::json;

use crate::client::{CliError, Client, seg};
use crate::output;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    id: String,
    #[arg(long)]
    reason: String,
}

pub(crate) async fn run(a: Args, client: &Client) -> Result<(), CliError> {
    let v = client
        .post(
            &format!("/v1/grants/{}/deny", seg(&a.id)),
            json!({ "reason": a.reason }),
        )
        .await?;
    output::show(client.format, &v, output::grant);
    Ok(())
}
