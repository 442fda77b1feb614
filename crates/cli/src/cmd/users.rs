//! `breakglass users add|list`.

use serde_json::json;

use crate::client::{CliError, Client, seg};
use crate::{Format, output};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Command {
    /// Add a person (who gets a one-time password, shown once) or, with `--service`, a service
    /// principal (which uses scoped tokens). Admins only.
    Add {
        name: String,
        /// A group to put the user in; repeat for several.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// A non-human identity (automation).
        #[arg(long)]
        service: bool,
    },
    /// List users.
    List,
    /// Set a one-time password for a person (they pick their own at next sign-in); ends their
    /// sessions.
    ResetPassword { name: String },
    /// Remove a person's authenticator (a lost phone); they enrol a new one.
    ResetTotp { name: String },
    /// Disable a principal: every token and session it holds stops working at once.
    Disable { name: String },
    /// Enable a disabled principal again.
    Enable { name: String },
}

pub(crate) async fn run(c: Command, client: &Client) -> Result<(), CliError> {
    match c {
        Command::Add {
            name,
            groups,
            service,
        } => {
            let kind = if service { "service" } else { "human" };
            let v = client
                .post(
                    "/v1/users",
                    json!({ "name": name, "groups": groups, "kind": kind }),
                )
                .await?;
            match client.format {
                Format::Json => output::json(&v),
                Format::Human => {
                    println!(
                        "added {kind} `{}` in groups [{}]",
                        output::cell(&v, "name"),
                        output::cell(&v, "groups")
                    );
                    if v.get("initial_password").is_some() {
                        println!(
                            "one-time password (shown once; give it to them privately, they choose their own at `breakglass login`):"
                        );
                        println!("{}", output::cell(&v, "initial_password"));
                    }
                }
            }
        }
        Command::ResetPassword { name } => {
            let v = client
                .post(
                    &format!("/v1/users/{}/password-reset", seg(&name)),
                    json!({}),
                )
                .await?;
            match client.format {
                Format::Json => output::json(&v),
                Format::Human => {
                    println!(
                        "one-time password for `{name}` (shown once; their sessions were ended):"
                    );
                    println!("{}", output::cell(&v, "initial_password"));
                }
            }
        }
        Command::ResetTotp { name } => {
            let v = client
                .post(&format!("/v1/users/{}/totp-reset", seg(&name)), json!({}))
                .await?;
            output::show(client.format, &v, |_| {
                println!(
                    "removed the authenticator of `{name}`; they enrol a new one with `breakglass totp enroll`"
                );
            });
        }
        Command::Disable { name } => {
            let v = client
                .post(&format!("/v1/users/{}/disable", seg(&name)), json!({}))
                .await?;
            output::show(client.format, &v, |_| {
                println!("disabled `{name}`; its tokens and sessions no longer work");
            });
        }
        Command::Enable { name } => {
            let v = client
                .post(&format!("/v1/users/{}/enable", seg(&name)), json!({}))
                .await?;
            output::show(client.format, &v, |_| println!("enabled `{name}`"));
        }
        Command::List => {
            let v = client.get("/v1/users").await?;
            output::show(client.format, &v, |v| {
                output::list(
                    v,
                    &["NAME", "KIND", "GROUPS", "DISABLED"],
                    &["name", "kind", "groups", "disabled"],
                );
            });
        }
    }
    Ok(())
}
