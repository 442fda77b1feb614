//! `breakglass`: the command-line front end. `init` and `serve` run the broker; every other
//! command is a client of its API at `BREAKGLASS_URL`, authenticated by `BREAKGLASS_TOKEN`.
//!
//! Exit codes (also in `docs/cli.md`):
//! 0 success · 1 unexpected error · 2 usage error · 3 not authenticated · 4 not allowed ·
//! 5 not found · 6 refused (invalid input or wrong state) · 7 broker unreachable or unavailable ·
//! 8 broker internal error.

mod client;
mod cmd;
mod output;
mod session;

use clap::{Parser, Subcommand, ValueEnum};

use crate::client::{CliError, Client};

#[derive(Parser, Debug)]
#[command(
    name = "breakglass",
    version,
    about = "Emergency privileged access: scoped, time-bound, approved, recorded",
    after_help = "Client commands read the API token from BREAKGLASS_TOKEN and the broker from BREAKGLASS_URL.\n\
Exit codes: 0 success, 1 unexpected error, 2 usage error, 3 not authenticated, 4 not allowed,\n\
5 not found, 6 refused (invalid input or wrong state), 7 broker unreachable or unavailable,\n\
8 broker internal error, 9 audit log failed verification. See docs/cli.md."
)]
struct Cli {
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    output: Format,
    /// The broker's URL (for client commands).
    #[arg(
        long,
        global = true,
        env = "BREAKGLASS_URL",
        default_value = "http://127.0.0.1:7070"
    )]
    url: String,
    /// A code from your authenticator app, used if the broker asks for a second factor (step-up).
    /// Without it the CLI asks at a terminal.
    #[arg(long, global = true)]
    totp: Option<String>,
    /// Trust only this CA (PEM) for an `https://` broker URL, instead of the system's roots.
    #[arg(long, global = true, env = "BREAKGLASS_CA_CERT")]
    ca_cert: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per process; boxing the serve flags buys nothing"
)]
enum Command {
    /// Create a data directory, its keys and the first admin; prints the admin API token once.
    Init(cmd::init::Args),
    /// Run the broker (initialising an empty data directory first).
    Serve(cmd::serve::Args),
    /// Manage users (admins only).
    #[command(subcommand)]
    Users(cmd::users::Command),
    /// Manage API tokens.
    #[command(subcommand)]
    Tokens(cmd::tokens::Command),
    /// Show the break-glass roles.
    #[command(subcommand)]
    Roles(cmd::roles::Command),
    /// Request a role.
    Request(cmd::request::Args),
    /// Approve a request (or a pending extension).
    Approve(cmd::approve::Args),
    /// Deny a request (or a pending extension).
    Deny(cmd::deny::Args),
    /// Cancel your own pending request.
    Cancel(cmd::cancel::Args),
    /// List and show grants.
    #[command(subcommand)]
    Grants(cmd::grants::Command),
    /// Collect a grant's credential (shown once).
    Credential(cmd::credential::Args),
    /// End an active grant now.
    Revoke(cmd::revoke::Args),
    /// Ask for more time on an active grant (needs approval again).
    Extend(cmd::extend::Args),
    /// List post-use reviews: owed, overdue, yours to record, and recorded.
    Reviews(cmd::reviews::ListArgs),
    /// Show a grant's review evidence, every event proven against the signed log; with
    /// `--outcome` and `--notes`, record the review (needs a step-up).
    Review(cmd::reviews::ReviewArgs),
    /// Read, prove, export and verify the tamper-evident audit log (admins and auditors).
    #[command(subcommand)]
    Audit(cmd::audit::Command),
    /// Show who the current token belongs to.
    Whoami,
    /// Sign in with your password (and authenticator code); the session is saved for later
    /// commands.
    Login(cmd::signin::LoginArgs),
    /// End the current session.
    Logout,
    /// Verify a second factor now (approve, credential, revoke, extend and admin commands need
    /// one within the last few minutes).
    StepUp,
    /// Change your password.
    Passwd(cmd::signin::PasswdArgs),
    /// Enrol an authenticator app (TOTP).
    #[command(subcommand)]
    Totp(cmd::signin::TotpCommand),
    /// Check the authorization policies, or explain a decision.
    #[command(subcommand)]
    Policy(cmd::policy::Command),
    /// Offline, broker stopped: issue a new API token for an admin from the data directory.
    RecoverAdmin(cmd::recover_admin::Args),
    /// Shut the break-glass path: revoke every grant in scope now and refuse every new request,
    /// emergency ones included, until lifted (admins, with a step-up).
    Lockdown(cmd::lockdown::Args),
    /// Drill a role's whole path (its owners and reviewers, with a step-up): a real grant that the
    /// broker exercises, revokes and checks, with its alerts.
    Drill(cmd::drills::DrillArgs),
    /// List drills (of one role), or show one with its report.
    Drills(cmd::drills::DrillsArgs),
}

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(()) => 0,
        Err((e, format)) => {
            output::error(&e, format);
            e.exit_code
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> Result<(), (CliError, Format)> {
    let format = cli.output;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            (
                CliError::local(format!("cannot start the async runtime: {e}")),
                format,
            )
        })?;
    rt.block_on(async move {
        let totp = cli.totp.clone();
        let ctx = || Client::new(&cli.url, format, totp.clone(), cli.ca_cert.as_deref());
        match cli.command {
            Command::Init(a) => cmd::init::run(a, format).await,
            Command::Serve(a) => cmd::serve::run(a).await,
            Command::Users(c) => cmd::users::run(c, &ctx()?).await,
            Command::Tokens(c) => cmd::tokens::run(c, &ctx()?).await,
            Command::Roles(c) => cmd::roles::run(c, &ctx()?).await,
            Command::Request(a) => cmd::request::run(a, &ctx()?).await,
            Command::Approve(a) => cmd::approve::run(a, &ctx()?).await,
            Command::Deny(a) => cmd::deny::run(a, &ctx()?).await,
            Command::Cancel(a) => cmd::cancel::run(a, &ctx()?).await,
            Command::Grants(c) => cmd::grants::run(c, &ctx()?).await,
            Command::Credential(a) => cmd::credential::run(a, &ctx()?).await,
            Command::Revoke(a) => cmd::revoke::run(a, &ctx()?).await,
            Command::Extend(a) => cmd::extend::run(a, &ctx()?).await,
            Command::Audit(c @ cmd::audit::Command::Verify { .. }) => {
                cmd::audit::run_offline(c, format).await
            }
            Command::Reviews(a) => cmd::reviews::list(a, &ctx()?).await,
            Command::Review(a) => cmd::reviews::review(a, &ctx()?).await,
            Command::Audit(c) => cmd::audit::run(c, &ctx()?).await,
            Command::Whoami => cmd::whoami::run(&ctx()?).await,
            Command::Login(a) => cmd::signin::login(a, cli.totp.clone(), &ctx()?).await,
            Command::Logout => cmd::signin::logout(&ctx()?).await,
            Command::StepUp => cmd::signin::step_up(cli.totp.clone(), &ctx()?).await,
            Command::Passwd(a) => cmd::signin::passwd(a, &ctx()?).await,
            Command::Totp(c) => cmd::signin::totp(c, &ctx()?).await,
            Command::Policy(c @ cmd::policy::Command::Check { .. }) => {
                cmd::policy::check(&c, format)
            }
            Command::Policy(c) => cmd::policy::explain(c, &ctx()?).await,
            Command::RecoverAdmin(a) => cmd::recover_admin::run(a, format).await,
            Command::Lockdown(a) => cmd::lockdown::run(a, &ctx()?).await,
            Command::Drill(a) => cmd::drills::drill(a, &ctx()?).await,
            Command::Drills(a) => cmd::drills::drills(a, &ctx()?).await,
        }
    })
    .map_err(|e| (e, format))
}
