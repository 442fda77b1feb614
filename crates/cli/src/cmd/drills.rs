//! `breakglass drill ROLE [--emergency]`, `breakglass drills [ROLE]` and
//! `breakglass drills show ID`.

use serde_json::{Value, json};

use crate::client::{CliError, Client, seg};
use crate::{Format, output};

#[derive(clap::Args, Debug)]
pub(crate) struct DrillArgs {
    /// The role whose path to drill.
    role: String,
    /// Take the role's emergency path instead of its approval (the role must allow it).
    #[arg(long)]
    emergency: bool,
}

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct DrillsArgs {
    #[command(subcommand)]
    command: Option<DrillsCommand>,
    /// Only the drills of this role.
    role: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
enum DrillsCommand {
    /// Show one drill with its report: each step, its timing and its outcome.
    Show { id: String },
}

/// Starts a drill: prints its id and what it waits for.
pub(crate) async fn drill(a: DrillArgs, client: &Client) -> Result<(), CliError> {
    let v = client
        .post(
            "/v1/drills",
            json!({ "role": a.role, "emergency": a.emergency }),
        )
        .await?;
    match client.format {
        Format::Json => output::json(&v),
        Format::Human => {
            println!("drill:    {}", output::cell(&v, "id"));
            println!("role:     {}", output::cell(&v, "role"));
            println!(
                "grant:    {} ({})",
                output::cell(&v, "grant"),
                output::cell(&v, "grant_state")
            );
            println!("channels: {}", output::cell(&v, "channels"));
            println!();
            println!("waiting for {}", output::cell(&v, "waiting_for"));
            if output::cell(&v, "grant_state") == "requested" {
                println!(
                    "an approver runs `breakglass approve {}`; follow it with `breakglass drills show {}`",
                    output::cell(&v, "grant"),
                    output::cell(&v, "id")
                );
            } else {
                println!(
                    "follow it with `breakglass drills show {}`",
                    output::cell(&v, "id")
                );
            }
        }
    }
    Ok(())
}

/// Lists drills, or shows one.
pub(crate) async fn drills(a: DrillsArgs, client: &Client) -> Result<(), CliError> {
    match a.command {
        Some(DrillsCommand::Show { id }) => {
            let v = client.get(&format!("/v1/drills/{}", seg(&id))).await?;
            output::show(client.format, &v, report);
        }
        None => {
            let path = match &a.role {
                Some(r) => format!("/v1/drills?role={}", seg(r)),
                None => "/v1/drills".to_owned(),
            };
            let v = client.get(&path).await?;
            output::show(client.format, &v, |v| {
                output::list(
                    v,
                    &["ID", "ROLE", "RUNNER", "STARTED", "STAGE", "FAILED"],
                    &["id", "role", "runner", "started_at", "stage", "failed"],
                );
            });
        }
    }
    Ok(())
}

/// One drill as people read it: its facts, then a line per checked step.
fn report(v: &Value) {
    for k in [
        "id",
        "role",
        "grant",
        "runner",
        "emergency",
        "channels",
        "started_at",
        "stage",
        "completed_at",
    ] {
        println!("{:<13} {}", format!("{k}:"), output::cell(v, k));
    }
    let checks = v
        .get("checks")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if checks.is_empty() {
        return;
    }
    println!();
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            let passed = c.get("passed").and_then(Value::as_bool) == Some(true);
            vec![
                output::cell(c, "step"),
                if passed { "pass" } else { "FAIL" }.to_owned(),
                format!("{}ms", output::cell(c, "ms")),
                output::cell(c, "detail"),
            ]
        })
        .collect();
    output::table(&["STEP", "RESULT", "TIME", "DETAIL"], &rows);
}
