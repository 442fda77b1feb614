//! `breakglass policy check` (offline: the role files and `policies/*.cedar` as they are on disk)
//! and `breakglass policy explain` (asks the running broker).

use std::path::PathBuf;

use serde_json::Value;

use crate::client::{CliError, Client, EXIT_REFUSED};
use crate::{Format, output};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Command {
    /// Validate the role files and custom policies against the schema, without a broker.
    Check {
        /// The data directory whose `roles/` and `policies/` are checked by default.
        #[arg(long, env = "BREAKGLASS_DATA_DIR", default_value = "breakglass-data")]
        data_dir: PathBuf,
        /// The roles directory (default `<data-dir>/roles`).
        #[arg(long, env = "BREAKGLASS_ROLES")]
        roles: Option<PathBuf>,
        /// The custom policies directory (default `<data-dir>/policies`).
        #[arg(long, env = "BREAKGLASS_POLICIES")]
        policies: Option<PathBuf>,
    },
    /// Show the decision for one principal, action and role, and the policies that caused it.
    Explain {
        #[arg(long)]
        principal: String,
        /// request, emergency, approve, revoke, review, read, read_audit or administer.
        #[arg(long)]
        action: String,
        #[arg(long)]
        role: Option<String>,
        /// Decide as if the grant acted on were the principal's own.
        #[arg(long)]
        own: bool,
    },
}

pub(crate) fn check(c: &Command, format: Format) -> Result<(), CliError> {
    let Command::Check {
        data_dir,
        roles,
        policies,
    } = c
    else {
        return Ok(());
    };
    let roles_dir = roles.clone().unwrap_or_else(|| data_dir.join("roles"));
    let policies_dir = policies
        .clone()
        .unwrap_or_else(|| data_dir.join("policies"));
    let set = breakglass_server::roles::load(&roles_dir)
        .map_err(|e| CliError::with_help(EXIT_REFUSED, "invalid", e.to_string(), &e.help()))?;
    let p = breakglass_server::policy::build(&set, Some(&policies_dir)).map_err(|e| {
        CliError::with_help(
            EXIT_REFUSED,
            "invalid_policy",
            format!("policy: {e}"),
            "fix the file at that line; docs/policy.md lists the entities, actions and context",
        )
    })?;
    let v = serde_json::json!({
        "status": "ok",
        "roles": set.len(),
        "policies": p.len(),
        "files": p.files().iter().map(|(f, h)| serde_json::json!({"file": f, "sha256": h})).collect::<Vec<_>>(),
        "hash": p.hash(),
    });
    match format {
        Format::Json => output::json(&v),
        Format::Human => println!(
            "ok: {} roles, {} policies ({} custom files in {}), policy hash {}",
            set.len(),
            p.len(),
            p.files().len(),
            policies_dir.display(),
            p.hash()
        ),
    }
    Ok(())
}

pub(crate) async fn explain(c: Command, client: &Client) -> Result<(), CliError> {
    let Command::Explain {
        principal,
        action,
        role,
        own,
    } = c
    else {
        return Ok(());
    };
    let mut q = format!(
        "/v1/policy/explain?principal={}&action={}&own={own}",
        crate::client::seg(&principal),
        crate::client::seg(&action)
    );
    if let Some(r) = &role {
        q.push_str(&format!("&role={}", crate::client::seg(r)));
    }
    let v = client.get(&q).await?;
    output::show(client.format, &v, |v| {
        println!(
            "{}: `{}` {} {}",
            output::cell(v, "decision").to_uppercase(),
            output::cell(v, "principal"),
            output::cell(v, "action"),
            role.as_deref()
                .map(|r| format!("on role `{r}`"))
                .unwrap_or_default()
        );
        let reasons = v.get("reasons").and_then(Value::as_array);
        match reasons {
            Some(rs) if !rs.is_empty() => {
                println!("because of:");
                for r in rs {
                    println!(
                        "  {} {} ({})",
                        output::cell(r, "effect"),
                        output::cell(r, "id"),
                        output::cell(r, "source")
                    );
                    for line in output::cell(r, "text").lines() {
                        println!("      {line}");
                    }
                }
            }
            _ => println!("no policy permits it (deny by default)"),
        }
    });
    Ok(())
}
