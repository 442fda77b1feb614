//! `breakglass roles list|show`.

use serde_json::Value;

use crate::client::{CliError, Client, seg};
use crate::{Format, output};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Command {
    /// List the roles in force.
    List,
    /// Show one role.
    Show { id: String },
}

pub(crate) async fn run(c: Command, client: &Client) -> Result<(), CliError> {
    match c {
        Command::List => {
            let v = client.get("/v1/roles").await?;
            match client.format {
                Format::Json => output::json(&v),
                Format::Human => {
                    let rows: Vec<Vec<String>> = v
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                        .iter()
                        .map(|r: &Value| {
                            vec![
                                output::cell(r, "id"),
                                r.get("target")
                                    .map_or("-".into(), |t| output::cell(t, "kind")),
                                output::cell(r, "max_duration"),
                                output::cell(r, "quorum"),
                                output::cell(r, "title"),
                                // Drill status (issue 13, item 3).
                                r.get("drill")
                                    .map_or("-".into(), |d| output::cell(d, "last_result")),
                                r.get("drill").map_or("-".into(), |d| {
                                    let due = output::cell(d, "drill_due");
                                    if d.get("drill_overdue") == Some(&Value::Bool(true)) {
                                        format!("{due} OVERDUE")
                                    } else {
                                        due
                                    }
                                }),
                            ]
                        })
                        .collect();
                    output::table(
                        &[
                            "ID",
                            "TARGET",
                            "MAX",
                            "QUORUM",
                            "TITLE",
                            "DRILL",
                            "DRILL DUE",
                        ],
                        &rows,
                    );
                }
            }
        }
        Command::Show { id } => {
            let v = client.get(&format!("/v1/roles/{}", seg(&id))).await?;
            match client.format {
                Format::Json => output::json(&v),
                Format::Human => {
                    for k in [
                        "id",
                        "title",
                        "owner",
                        "requesters",
                        "approvers",
                        "quorum",
                        "default_duration",
                        "max_duration",
                        "max_extensions",
                        "request_ttl",
                        "require_incident",
                        "incident_pattern",
                        "file",
                        "hash",
                    ] {
                        println!("{:<17} {}", format!("{k}:"), output::cell(&v, k));
                    }
                    if let Some(t) = v.get("target") {
                        println!("{:<17} {}", "target:", t);
                    }
                }
            }
        }
    }
    Ok(())
}
