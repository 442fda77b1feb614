//! `breakglass tokens create|list|revoke`.

use serde_json::json;

use crate::client::{CliError, Client, seg};
use crate::{Format, output};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Command {
    /// Create an API token (shown once): for yourself, or, as an admin, for a service principal
    /// with `--scopes`.
    Create {
        #[arg(long)]
        user: String,
        /// How long the token lives (`30d`, `12h`, at most `366d`).
        #[arg(long, default_value = "30d")]
        ttl: String,
        /// What the token may do, comma-separated: read, request, credential, approve, revoke,
        /// admin, factors (required for service principals; `factors`, changing one's own
        /// password or authenticator and revoking one's own tokens, is for a person's own tokens
        /// only).
        #[arg(long, value_delimiter = ',')]
        scopes: Option<Vec<String>>,
    },
    /// List API tokens (yours, or all for admins and auditors).
    List,
    /// Revoke a token by its id.
    Revoke { id: String },
}

pub(crate) async fn run(c: Command, client: &Client) -> Result<(), CliError> {
    match c {
        Command::Create { user, ttl, scopes } => {
            let v = client
                .post(
                    "/v1/tokens",
                    json!({ "user": user, "ttl": ttl, "scopes": scopes }),
                )
                .await?;
            match client.format {
                Format::Json => output::json(&v),
                Format::Human => {
                    println!(
                        "API token `{}` for user `{}`, expires {}; shown once:",
                        output::cell(&v, "id"),
                        output::cell(&v, "user"),
                        output::cell(&v, "expires_at")
                    );
                    println!("{}", output::cell(&v, "token"));
                }
            }
        }
        Command::List => {
            let v = client.get("/v1/tokens").await?;
            output::show(client.format, &v, |v| {
                output::list(
                    v,
                    &["ID", "USER", "STATUS", "EXPIRES"],
                    &["id", "user", "status", "expires_at"],
                );
            });
        }
        Command::Revoke { id } => {
            let v = client
                .post(&format!("/v1/tokens/{}/revoke", seg(&id)), json!({}))
                .await?;
            match client.format {
                Format::Json => output::json(&v),
                Format::Human => println!("revoked API token `{}`", output::cell(&v, "id")),
            }
        }
    }
    Ok(())
}
