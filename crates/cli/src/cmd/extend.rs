//! `breakglass extend ID --duration D --reason TEXT`.

use serde_json::json;

use crate::client::{CliError, Client, seg};
use crate::{Format, output};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    id: String,
    /// How much longer (`15m`); the total never exceeds the role's `max_duration`.
    #[arg(long)]
    duration: String,
    #[arg(long)]
    reason: String,
}

pub(crate) async fn run(a: Args, client: &Client) -> Result<(), CliError> {
    let v = client
        .post(
            &format!("/v1/grants/{}/extend", seg(&a.id)),
            json!({ "duration": a.duration, "reason": a.reason }),
        )
        .await?;
    match client.format {
        Format::Json => output::json(&v),
        Format::Human => {
            output::grant(&v);
            println!();
            println!(
                "the extension needs approval: an approver runs `breakglass approve {}`",
                output::cell(&v, "id")
            );
        }
    }
    Ok(())
}
