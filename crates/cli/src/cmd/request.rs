//! `breakglass request ROLE --reason TEXT [--incident REF] [--duration 30m]`.

use serde_json::json;

use crate::client::{CliError, Client};
use crate::{Format, output};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The role to request.
    role: String,
    /// Why you need it (recorded in the audit log).
    #[arg(long)]
    reason: String,
    /// The incident reference, if the role requires one.
    #[arg(long)]
    incident: Option<String>,
    /// How long (`30m`, `2h`); default: the role's default. The window starts at activation.
    #[arg(long)]
    duration: Option<String>,
    /// Emergency self-activation, with no approver: only where the role allows it; needs a
    /// fresh second factor, is capped shorter, alerts loudly and owes a review.
    #[arg(long)]
    emergency: bool,
}

pub(crate) async fn run(a: Args, client: &Client) -> Result<(), CliError> {
    let v = client
        .post("/v1/grants", json!({ "role": a.role, "reason": a.reason, "incident": a.incident, "duration": a.duration, "emergency": a.emergency }))
        .await?;
    match client.format {
        Format::Json => output::json(&v),
        Format::Human => {
            output::grant(&v);
            println!();
            if a.emergency {
                println!(
                    "EMERGENCY self-activation: the role's alert channels were told; a review by someone else is owed by {}.\ncollect the credential with `breakglass credential {}`",
                    output::cell(&v, "review_due"),
                    output::cell(&v, "id")
                );
            } else {
                println!(
                    "waiting for approval: an approver runs `breakglass approve {}`",
                    output::cell(&v, "id")
                );
            }
        }
    }
    Ok(())
}
