//! `breakglass audit tail [-n N]`.

use serde_json::Value;

use crate::client::{CliError, Client};
use crate::{Format, output};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Command {
    /// The latest events, oldest first.
    Tail {
        #[arg(short = 'n', default_value_t = 20)]
        n: u32,
    },
}

const ENVELOPE: [&str; 6] = ["v", "seq", "time", "type", "actor", "grant"];

pub(crate) async fn run(c: Command, client: &Client) -> Result<(), CliError> {
    let Command::Tail { n } = c;
    let v = client.get(&format!("/v1/audit/tail?n={n}")).await?;
    match client.format {
        Format::Json => output::json(&v),
        Format::Human => {
            for e in v.as_array().map(Vec::as_slice).unwrap_or_default() {
                let fields: Vec<String> = e
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .filter(|(k, _)| !ENVELOPE.contains(&k.as_str()))
                            .map(|(k, v): (&String, &Value)| {
                                format!(
                                    "{k}={}",
                                    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                println!(
                    "{:>6} {} {:<20} {:<16} {} {}",
                    output::cell(e, "seq"),
                    output::cell(e, "time"),
                    output::cell(e, "type"),
                    output::cell(e, "actor"),
                    output::cell(e, "grant"),
                    fields.join(" ")
                );
            }
        }
    }
    Ok(())
}
