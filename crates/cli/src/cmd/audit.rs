//! `breakglass audit tail|key|checkpoint|prove|consistency|export|verify`.

use std::path::PathBuf;

use breakglass_server::verify::{VerifyOptions, verify};
use serde_json::{Value, json};

use crate::client::{CliError, Client, EXIT_AUDIT_FAILED, EXIT_REFUSED};
use crate::{Format, output};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Command {
    /// The latest events, oldest first.
    Tail {
        #[arg(short = 'n', default_value_t = 20)]
        n: u32,
    },
    /// The checkpoint verifier key (C2SP note verifier), alone on the last line.
    Key,
    /// The latest signed checkpoint, exactly as signed (signing one first if the log grew).
    Checkpoint,
    /// Inclusion proof of event SEQ against the latest checkpoint.
    Prove { seq: u64 },
    /// Consistency proof from OLD_SIZE to `--to` (default: the latest checkpoint's size).
    Consistency {
        old_size: u64,
        #[arg(long)]
        to: Option<u64>,
    },
    /// Every event as one JSON line, in seq order, with `seq` and `leaf` (base64 of its exact bytes).
    Export {
        #[arg(long, value_parser = ["jsonl"], default_value = "jsonl")]
        format: String,
        #[arg(long, default_value_t = 0)]
        from: u64,
    },
    /// Offline: recompute the whole log from the stored bytes and check every checkpoint.
    /// Exit 0 only if everything holds; 9 if the log fails verification.
    Verify {
        #[arg(
            long,
            conflicts_with = "database",
            required_unless_present = "database"
        )]
        data_dir: Option<PathBuf>,
        /// `sqlite://PATH`, or `postgres://…` (read through read-only transactions; point it at a
        /// replica or a restored backup if you like). Give `--checkpoint-log` too: a PostgreSQL
        /// store has no data directory to find one in.
        #[arg(long)]
        database: Option<String>,
        /// A checkpoint you kept (the note, or the JSON from `audit checkpoint --output json`).
        #[arg(long)]
        trusted: Option<PathBuf>,
        /// The verifier key you recorded (`audit key`); without it the key in the database is used.
        #[arg(long)]
        key: Option<String>,
        /// The published checkpoint log (default `<data-dir>/checkpoints.log`).
        #[arg(long)]
        checkpoint_log: Option<PathBuf>,
    },
}

const ENVELOPE: [&str; 6] = ["v", "seq", "time", "type", "actor", "grant"];

pub(crate) async fn run_offline(c: Command, format: Format) -> Result<(), CliError> {
    let Command::Verify {
        data_dir,
        database,
        trusted,
        key,
        checkpoint_log,
    } = c
    else {
        return Err(CliError::local("not an offline command".into()));
    };
    let opts = VerifyOptions {
        data_dir,
        database,
        trusted,
        key,
        checkpoint_log,
    };
    let report = verify(&opts)
        .await
        .map_err(|e| CliError::with_help(EXIT_REFUSED, "verify", e.to_string(), &e.help()))?;
    let ok = report.problems.is_empty();
    let problems: Vec<Value> = report
        .problems
        .iter()
        .map(|p| json!({ "seq": p.seq, "message": p.message }))
        .collect();
    match format {
        Format::Json => output::json(&json!({
            "verified": ok, "events": report.events, "root_hash": report.root.to_base64(),
            "origin": report.origin, "key": report.key, "checkpoints_checked": report.checkpoints_checked,
            "latest_good_checkpoint": report.latest_good_checkpoint, "trusted_size": report.trusted_size,
            "warnings": report.warnings, "problems": problems,
        })),
        Format::Human => {
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            if ok {
                println!("verified: {} events, root {}", report.events, report.root);
                println!(
                    "{} checkpoints signed by `{}` match the log",
                    report.checkpoints_checked, report.key
                );
                if let Some(t) = report.trusted_size {
                    println!("the trusted checkpoint at size {t} is consistent with the log now");
                }
            }
        }
    }
    if ok {
        return Ok(());
    }
    let first = report
        .problems
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    let more = report.problems.len().saturating_sub(1);
    if format == Format::Human && more > 0 {
        for p in report.problems.iter().skip(1) {
            eprintln!("also: {p}");
        }
    }
    Err(CliError::with_help(
        EXIT_AUDIT_FAILED,
        "audit_verification_failed",
        format!("audit log verification failed: {first}"),
        "treat the log as tampered with: preserve the data directory and the published checkpoints as evidence",
    ))
}

pub(crate) async fn run(c: Command, client: &Client) -> Result<(), CliError> {
    match c {
        Command::Tail { n } => tail(n, client).await,
        Command::Key => {
            let v = client.get("/v1/audit/key").await?;
            output::show(client.format, &v, |v| {
                println!("origin: {}", output::cell(v, "origin"));
                println!("{}", output::cell(v, "key"));
            });
            Ok(())
        }
        Command::Checkpoint => {
            let v = client.get("/v1/audit/checkpoint").await?;
            output::show(client.format, &v, |v| {
                print!(
                    "{}",
                    v.get("checkpoint")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                )
            });
            Ok(())
        }
        Command::Prove { seq } => {
            let v = client.get(&format!("/v1/audit/prove/{seq}")).await?;
            output::json(&proof_only(
                &v,
                &["index", "tree_size", "leaf_hash", "root_hash", "proof"],
            ));
            Ok(())
        }
        Command::Consistency { old_size, to } => {
            let path = match to {
                Some(t) => format!("/v1/audit/consistency?from={old_size}&to={t}"),
                None => format!("/v1/audit/consistency?from={old_size}"),
            };
            let v = client.get(&path).await?;
            output::json(&v);
            Ok(())
        }
        Command::Export { from, .. } => {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            let mut next = from;
            loop {
                let page = client
                    .get_text(&format!("/v1/audit/export?from={next}"))
                    .await?;
                let mut last = None;
                for line in page.lines().filter(|l| !l.is_empty()) {
                    // A closed pipe (`| head`) ends the export quietly.
                    if writeln!(out, "{line}").is_err() {
                        return Ok(());
                    }
                    last = serde_json::from_str::<Value>(line)
                        .ok()
                        .and_then(|v| v.get("seq").and_then(Value::as_u64));
                }
                match last {
                    Some(s) => next = s + 1,
                    None => return Ok(()),
                }
            }
        }
        Command::Verify { .. } => Err(CliError::local("`audit verify` runs offline".into())),
    }
}

fn proof_only(v: &Value, keys: &[&str]) -> Value {
    Value::Object(
        keys.iter()
            .filter_map(|k| v.get(*k).map(|x| ((*k).to_owned(), x.clone())))
            .collect(),
    )
}

async fn tail(n: u32, client: &Client) -> Result<(), CliError> {
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
