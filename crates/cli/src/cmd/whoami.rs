//! `breakglass whoami`.

use crate::client::{CliError, Client};
use crate::{Format, output};

pub(crate) async fn run(client: &Client) -> Result<(), CliError> {
    let v = client.get("/v1/whoami").await?;
    match client.format {
        Format::Json => output::json(&v),
        Format::Human => println!(
            "{} (groups: {})",
            output::cell(&v, "name"),
            output::cell(&v, "groups")
        ),
    }
    Ok(())
}
