//! `breakglass roles list|show|attest`.

use serde_json::{Value, json};

use crate::client::{CliError, Client, seg};
use crate::{Format, output};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Command {
    /// List the roles in force, with each role's attestation status.
    List,
    /// Show one role.
    Show { id: String },
    /// Confirm, as a member of the role's owner group, that the role is still needed and
    /// correctly scoped (needs a step-up). Bound to the role file as it reads now: a changed file
    /// needs a fresh attestation.
    Attest {
        /// The role to attest.
        id: String,
        /// What was checked, for the audit log.
        #[arg(long)]
        note: String,
    },
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
                            let mut row = vec![
                                output::cell(r, "id"),
                                r.get("target")
                                    .map_or("-".into(), |t| output::cell(t, "kind")),
                                output::cell(r, "max_duration"),
                                output::cell(r, "quorum"),
                            ];
                            // Owner attestation (issue 13, item 2).
                            row.extend(attestation_cells(r.get("attestation")));
                            row.push(output::cell(r, "title"));
                            // Drill status (issue 13, item 3).
                            row.push(
                                r.get("drill")
                                    .map_or("-".into(), |d| output::cell(d, "last_result")),
                            );
                            row.push(r.get("drill").map_or("-".into(), |d| {
                                let due = output::cell(d, "drill_due");
                                if d.get("drill_overdue") == Some(&Value::Bool(true)) {
                                    format!("{due} OVERDUE")
                                } else {
                                    due
                                }
                            }));
                            row
                        })
                        .collect();
                    output::table(
                        &[
                            "ID",
                            "TARGET",
                            "MAX",
                            "QUORUM",
                            "ATTESTATION",
                            "ATTESTED",
                            "BY",
                            "DUE",
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
                    if let Some(a) = v.get("attestation") {
                        print_attestation(a);
                    }
                }
            }
        }
        Command::Attest { id, note } => {
            let v = client
                .post(
                    &format!("/v1/roles/{}/attest", seg(&id)),
                    json!({ "note": note }),
                )
                .await?;
            match client.format {
                Format::Json => output::json(&v),
                Format::Human => {
                    println!(
                        "attested role {} as {}: next attestation due {}",
                        output::cell(&v, "role"),
                        output::cell(&v, "by"),
                        output::cell(&v, "next_due"),
                    );
                    if let Some(a) = v.get("attestation") {
                        print_attestation(a);
                    }
                }
            }
        }
    }
    Ok(())
}

/// The attestation columns of `roles list`: status, last attested (date), by whom, due (date).
fn attestation_cells(a: Option<&Value>) -> [String; 4] {
    let Some(a) = a else {
        return ["-".into(), "-".into(), "-".into(), "-".into()];
    };
    let date = |k: &str| {
        let c = output::cell(a, k);
        c.get(..10).map_or(c.clone(), str::to_owned)
    };
    [
        output::cell(a, "status"),
        date("last_attested"),
        output::cell(a, "last_attested_by"),
        date("due"),
    ]
}

fn print_attestation(a: &Value) {
    for (label, k) in [
        ("attestation:", "status"),
        ("attested:", "last_attested"),
        ("attested by:", "last_attested_by"),
        ("attest by:", "due"),
        ("expires:", "expires"),
        ("on lapse:", "on_lapse"),
    ] {
        println!("{label:<17} {}", output::cell(a, k));
    }
}
