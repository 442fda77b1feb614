//! `breakglass cancel ID`.

use serde_json::json;

use crate::client::{CliError, Client, seg};
use crate::output;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    id: String,
}

pub(crate) async fn run(a: Args, client: &Client) -> Result<(), CliError> {
    let v = client
        .post(&format!("/v1/grants/{}/cancel", seg(&a.id)), json!({}))
        .await?;
    output::show(client.format, &v, output::grant);
    Ok(())
}
