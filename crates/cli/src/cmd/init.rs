//! `breakglass init`: create a data directory and the first admin.

use std::path::PathBuf;

use breakglass_core::SystemClock;
use breakglass_server::datadir;
use serde_json::json;

use std::os::unix::fs::DirBuilderExt as _;

use breakglass_core::Clock as _;
use breakglass_server::startup::tls;

use crate::Format;
use crate::client::{CliError, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE};
use crate::output;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The data directory to create (the embedded SQLite store).
    #[arg(long, env = "BREAKGLASS_DATA_DIR", default_value = breakglass_server::config::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Initialise this PostgreSQL database (`postgres://…`) instead of a data directory.
    #[arg(long, env = "BREAKGLASS_DATABASE")]
    database: Option<String>,
    /// With `--database`: where to create the key-encryption key (0600). Every replica is
    /// started with this file; back it up, since the stored keys cannot be opened without it.
    #[arg(long, env = "BREAKGLASS_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// Also make a self-signed TLS certificate for HOSTNAME (a DNS name or an IP address) with a
    /// new key, as `tls.crt` and `tls.key` (0600) in the data directory, for a quick start. It
    /// prints the certificate's SHA-256 fingerprint and the `serve` command that uses it;
    /// `serve` never picks the files up by itself.
    #[arg(long, value_name = "HOSTNAME")]
    self_signed_tls: Option<String>,
}

pub(crate) async fn run(a: Args, format: Format) -> Result<(), CliError> {
    let usage = |e: breakglass_server::StartupError| {
        CliError::with_help(EXIT_USAGE, "usage", e.to_string(), &e.help())
    };
    let location =
        datadir::Location::from_args(&a.data_dir, a.database.as_deref(), a.key_file.as_deref())
            .map_err(usage)?;
    let refused = |e: breakglass_server::StartupError| {
        let code = if e.is_unavailable() {
            EXIT_UNREACHABLE
        } else {
            EXIT_REFUSED
        };
        CliError::with_help(code, "init", e.to_string(), &e.help())
    };
    // Everything that can be checked first is, so a refusal leaves nothing behind.
    let tls_host = a
        .self_signed_tls
        .as_deref()
        .map(str::parse::<tls::TlsHost>)
        .transpose()
        .map_err(usage)?;
    if tls_host.is_some() {
        for name in [tls::CERT_FILE, tls::KEY_FILE] {
            let path = a.data_dir.join(name);
            if path.exists() {
                return Err(refused(breakglass_server::StartupError::Tls {
                    path,
                    reason: "it already exists, and is never overwritten".into(),
                }));
            }
        }
    }
    let done = datadir::init(&location, &SystemClock)
        .await
        .map_err(refused)?;
    let tls = match (&tls_host, a.self_signed_tls.clone()) {
        (Some(host), Some(name)) => {
            // With `--database` the data directory holds only roles and the checkpoint log, and
            // may not exist yet.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&a.data_dir)
                .map_err(|e| {
                    refused(breakglass_server::StartupError::DataDirNotWritable {
                        path: a.data_dir.clone(),
                        reason: e.to_string().to_lowercase(),
                    })
                })?;
            let made =
                tls::write_self_signed(&a.data_dir, host, SystemClock.now()).map_err(refused)?;
            Some((name, made))
        }
        _ => None,
    };
    let (where_key, where_value) = match &location {
        datadir::Location::Dir(d) => ("data_dir", d.display().to_string()),
        datadir::Location::Postgres { url, .. } => ("database", datadir::redact_url(url)),
    };
    let tls_json = tls.as_ref().map(|(host, made)| {
        json!({
            "host": host,
            "cert": made.cert.display().to_string(),
            "key": made.key.display().to_string(),
            "sha256_fingerprint": made.fingerprint,
            "serve": serve_command(&a.data_dir, &location, host, made),
        })
    });
    match format {
        Format::Json => output::json(&json!({
            where_key: where_value,
            "admin": datadir::FIRST_ADMIN,
            "admin_token": done.admin_token.expose(),
            "audit_key": done.audit_key,
            "tls": tls_json,
        })),
        Format::Human => {
            println!("initialised breakglass in {}", location.describe());
            if let Some((host, made)) = &tls {
                println!(
                    "self-signed TLS certificate for `{host}` written to `{}`, its key to `{}` (0600)",
                    made.cert.display(),
                    made.key.display()
                );
                println!("  SHA-256 fingerprint: {}", made.fingerprint);
                println!(
                    "  serve HTTPS with: {}",
                    serve_command(&a.data_dir, &location, host, made)
                );
                println!(
                    "  clients trust it with: BREAKGLASS_URL=https://{}:7070 BREAKGLASS_CA_CERT={} breakglass whoami",
                    url_host(host),
                    made.cert.display()
                );
            }
            if let datadir::Location::Postgres { key_file, .. } = &location {
                println!(
                    "key-encryption key written to `{}` (0600): start every replica with `--key-file` pointing at a copy, and back it up",
                    key_file.display()
                );
            }
            println!("first admin: `{}` (group `admins`)", datadir::FIRST_ADMIN);
            println!("audit log verifier key (record it somewhere this host cannot change):");
            println!("  {}", done.audit_key);
            println!("admin API token, shown once; store it like a root password:");
            println!("{}", done.admin_token.expose());
        }
    }
    Ok(())
}

/// The exact `serve` command that uses a self-signed pair from `init`.
fn serve_command(
    data_dir: &std::path::Path,
    location: &datadir::Location,
    host: &str,
    made: &tls::SelfSigned,
) -> String {
    // `--listen` takes an address: the host's own for an IP, every interface for a name.
    let listen = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => std::net::SocketAddr::new(ip, 7070).to_string(),
        Err(_) => "0.0.0.0:7070".into(),
    };
    let store = match location {
        datadir::Location::Dir(_) => String::new(),
        datadir::Location::Postgres { key_file, .. } => {
            format!(
                " --database \"$BREAKGLASS_DATABASE\" --key-file {}",
                key_file.display()
            )
        }
    };
    format!(
        "breakglass serve --data-dir {}{store} --listen {listen} --tls-cert {} --tls-key {}",
        data_dir.display(),
        made.cert.display(),
        made.key.display()
    )
}

/// A host as it goes in a URL (an IPv6 address in brackets).
fn url_host(host: &str) -> String {
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => host.to_owned(),
    }
}
