//! `breakglass login|logout|step-up|passwd` and `breakglass totp enroll|confirm`.
//!
//! Passwords are read from a terminal without echo, or from a file named on the command line
//! (`--password-file`, for scripts); never from an argument or an environment variable, which
//! other users and process listings can see.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::client::{CliError, Client, EXIT_USAGE, prompt_code};
use crate::session::{self, Saved};
use crate::{Format, output};

#[derive(clap::Args, Debug)]
pub(crate) struct LoginArgs {
    /// Your user name.
    #[arg(long, env = "BREAKGLASS_USER")]
    user: String,
    /// Read the password from this file (its first line) instead of asking.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// When the password must be changed: read the new one from this file instead of asking.
    #[arg(long)]
    new_password_file: Option<PathBuf>,
    /// Do not save the session; print it (with `--output json`) for the caller to keep.
    #[arg(long)]
    no_save: bool,
}

#[derive(clap::Args, Debug)]
pub(crate) struct PasswdArgs {
    /// Read the current password from this file instead of asking.
    #[arg(long)]
    current_file: Option<PathBuf>,
    /// Read the new password from this file instead of asking.
    #[arg(long)]
    new_file: Option<PathBuf>,
}

#[derive(clap::Subcommand, Debug)]
pub(crate) enum TotpCommand {
    /// Start enrolling an authenticator app: shows the secret and the otpauth URI once.
    Enroll,
    /// Finish enrolling with the app's current code; shows your recovery codes once.
    Confirm { code: String },
}

fn read_secret_file(path: &PathBuf, what: &str) -> Result<String, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::with_help(
            EXIT_USAGE,
            "usage",
            format!("cannot read the {what} from `{}`: {e}", path.display()),
            "check the path and its permissions",
        )
    })?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

fn ask(prompt: &str) -> Result<String, CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::with_help(
            EXIT_USAGE,
            "usage",
            format!("{prompt} is needed and there is no terminal to ask at"),
            "pass it in a file (`--password-file`, `--new-password-file`), or run at a terminal",
        ));
    }
    rpassword::prompt_password(format!("{prompt}: "))
        .map_err(|e| CliError::local(format!("cannot read from the terminal: {e}")))
}

fn ask_new() -> Result<String, CliError> {
    let first = ask("New password (at least 12 characters)")?;
    let again = ask("New password again")?;
    if first != again {
        return Err(CliError::with_help(
            EXIT_USAGE,
            "usage",
            "the two new passwords differ".into(),
            "run the command again",
        ));
    }
    Ok(first)
}

pub(crate) async fn login(
    a: LoginArgs,
    totp: Option<String>,
    client: &Client,
) -> Result<(), CliError> {
    let password = match &a.password_file {
        Some(p) => read_secret_file(p, "password")?,
        None => ask(&format!("Password for `{}`", a.user))?,
    };
    let mut code = totp;
    let mut new_password = match &a.new_password_file {
        Some(p) => Some(read_secret_file(p, "new password")?),
        None => None,
    };
    // At most one round each for a missing code and a required password change.
    let mut v = Value::Null;
    for _ in 0..3 {
        let body = json!({ "user": a.user, "password": password, "code": code, "new_password": new_password });
        match client.post_anonymous("/v1/login", body).await {
            Ok(ok) => {
                v = ok;
                break;
            }
            Err(e) if e.code == "totp_required" && code.is_none() => match prompt_code(None) {
                Some(c) => code = Some(c),
                None => return Err(e),
            },
            Err(e) if e.code == "password_change_required" && new_password.is_none() => {
                if !std::io::stdin().is_terminal() {
                    return Err(e);
                }
                eprintln!("{}", e.message);
                new_password = Some(ask_new()?);
            }
            Err(e) => return Err(e),
        }
    }
    if v.is_null() {
        return Err(CliError::local("sign-in did not finish".into()));
    }
    let saved_to = if a.no_save {
        None
    } else {
        Some(session::save(&Saved {
            url: client.base().to_owned(),
            user: output::cell(&v, "user"),
            token: output::cell(&v, "token"),
            token_id: output::cell(&v, "token_id"),
            expires_at: output::cell(&v, "expires_at"),
        })?)
    };
    match client.format {
        Format::Json => output::json(&v),
        Format::Human => {
            println!(
                "signed in as `{}` ({}), session `{}` until {}",
                output::cell(&v, "user"),
                output::cell(&v, "method"),
                output::cell(&v, "token_id"),
                output::cell(&v, "expires_at")
            );
            if let Some(p) = saved_to {
                println!("session saved to {}", p.display());
            } else {
                println!("session token (shown once): {}", output::cell(&v, "token"));
            }
            if v.get("totp_enrolled") == Some(&Value::Bool(false)) {
                println!(
                    "no authenticator enrolled: approving, collecting credentials and administration need one; run `breakglass totp enroll`"
                );
            }
        }
    }
    Ok(())
}

pub(crate) async fn logout(client: &Client) -> Result<(), CliError> {
    let v = client.post("/v1/logout", json!({})).await?;
    if let Some(s) = session::load(client.base())
        && s.token_id == output::cell(&v, "token_id")
    {
        session::remove();
    }
    output::show(client.format, &v, |v| {
        println!(
            "signed out; `{}` no longer works",
            output::cell(v, "token_id")
        );
    });
    Ok(())
}

pub(crate) async fn step_up(totp: Option<String>, client: &Client) -> Result<(), CliError> {
    let Some(code) = totp.or_else(|| prompt_code(None)) else {
        return Err(CliError::with_help(
            EXIT_USAGE,
            "usage",
            "a code is needed and there is no terminal to ask at".into(),
            "pass it with `--totp CODE`",
        ));
    };
    let v = client.step_up(&code).await?;
    output::show(client.format, &v, |v| {
        println!(
            "second factor verified; approve, credential, revoke, extend and admin commands work for {}",
            output::cell(v, "valid_for")
        );
    });
    Ok(())
}

pub(crate) async fn passwd(a: PasswdArgs, client: &Client) -> Result<(), CliError> {
    let current = match &a.current_file {
        Some(p) => read_secret_file(p, "current password")?,
        None => ask("Current password")?,
    };
    let new = match &a.new_file {
        Some(p) => read_secret_file(p, "new password")?,
        None => ask_new()?,
    };
    let v = client
        .post("/v1/password", json!({ "current": current, "new": new }))
        .await?;
    output::show(client.format, &v, |_| println!("password changed"));
    Ok(())
}

pub(crate) async fn totp(c: TotpCommand, client: &Client) -> Result<(), CliError> {
    match c {
        TotpCommand::Enroll => {
            let v = client.post("/v1/totp/enroll", json!({})).await?;
            output::show(client.format, &v, |v| {
                println!("add this account to your authenticator app (shown once):");
                println!("  secret: {}", output::cell(v, "secret"));
                println!("  uri:    {}", output::cell(v, "uri"));
                println!("then finish with `breakglass totp confirm CODE` using the code it shows");
            });
        }
        TotpCommand::Confirm { code } => {
            let v = client
                .post("/v1/totp/confirm", json!({ "code": code }))
                .await?;
            output::show(client.format, &v, |v| {
                println!(
                    "authenticator enrolled. Recovery codes (shown once; each works once in place of a code; keep them offline):"
                );
                if let Some(codes) = v.get("recovery_codes").and_then(Value::as_array) {
                    for c in codes {
                        println!("  {}", c.as_str().unwrap_or_default());
                    }
                }
            });
        }
    }
    Ok(())
}
