//! `breakglass reviews [--owed] [--overdue] [--mine]`, `breakglass review GRANT` (the evidence,
//! every event proven here against the signed checkpoint) and `breakglass review GRANT --outcome
//! O --notes TEXT` (records the review; needs a step-up).
//!
//! The evidence is not taken on the broker's word: each event arrives as its exact canonical
//! bytes with an inclusion proof, and this command checks the checkpoint's signature (with the
//! key given by `--verifier-key`, or the broker's), each leaf hash and each proof, then tells the
//! story from the events it proved. If anything fails to verify it shows nothing and fails loudly.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use breakglass_audit::{Checkpoint, Hash, NoteVerifier, SignedNote, leaf_hash, verify_inclusion};
use breakglass_core::review::evidence::{Summary, human_ms};
use serde_json::{Value, json};

use crate::client::{CliError, Client, EXIT_AUDIT_FAILED, seg};
use crate::{Format, output};

#[derive(clap::Args, Debug)]
pub(crate) struct ListArgs {
    /// Only reviews still owed (no final outcome yet; follow-ups included).
    #[arg(long)]
    owed: bool,
    /// Only owed reviews past their due time.
    #[arg(long)]
    overdue: bool,
    /// Only owed reviews you may record.
    #[arg(long)]
    mine: bool,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ReviewArgs {
    /// The grant whose use is reviewed.
    grant: String,
    /// Record the review: `legitimate`, `drill`, `misuse` or `follow-up`. Without it, the
    /// evidence is shown.
    #[arg(long, requires = "notes")]
    outcome: Option<String>,
    /// What you concluded and why (required with `--outcome`).
    #[arg(long)]
    notes: Option<String>,
    /// The audit verifier key you kept (`breakglass audit key`); without it the broker's own key
    /// is used, and the output says so.
    #[arg(long)]
    verifier_key: Option<String>,
}

pub(crate) async fn list(a: ListArgs, client: &Client) -> Result<(), CliError> {
    let v = client
        .get(&format!(
            "/v1/reviews?owed={}&overdue={}&mine={}",
            a.owed, a.overdue, a.mine
        ))
        .await?;
    output::show(client.format, &v, |v| {
        let rows: Vec<Vec<String>> = v
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let mut status = output::cell(r, "status");
                if at(r, &["escalated"]) == true {
                    status.push_str(" (overdue, escalated)");
                } else if at(r, &["overdue"]) == true {
                    status.push_str(" (overdue)");
                }
                vec![
                    output::cell(r, "grant"),
                    output::cell(r, "role"),
                    output::cell(r, "requester"),
                    output::cell(r, "ended_at"),
                    output::cell(r, "due"),
                    status,
                    output::cell(r, "reviewer"),
                ]
            })
            .collect();
        output::table(
            &[
                "GRANT",
                "ROLE",
                "REQUESTER",
                "ENDED",
                "DUE",
                "STATUS",
                "REVIEWER",
            ],
            &rows,
        );
    });
    Ok(())
}

pub(crate) async fn review(a: ReviewArgs, client: &Client) -> Result<(), CliError> {
    let path = format!("/v1/grants/{}/review", seg(&a.grant));
    if let Some(outcome) = a.outcome {
        let v = client
            .post(
                &path,
                json!({ "outcome": outcome, "notes": a.notes.unwrap_or_default() }),
            )
            .await?;
        output::show(client.format, &v, |v| {
            let open = if at(v, &["final"]) == true {
                ""
            } else {
                " (the review stays open until a final outcome)"
            };
            println!(
                "review of {} recorded: {} by {}{open}",
                output::cell(v, "grant"),
                output::cell(v, "outcome"),
                output::cell(v, "reviewer"),
            );
        });
        return Ok(());
    }
    let mut v = client.get(&path).await?;
    let proven = verify(&v, a.verifier_key.as_deref())?;
    let summary = Summary::from_events(
        proven
            .iter()
            .filter(|(about, _)| about == "grant")
            .map(|(_, e)| e),
    );
    let verification = json!({
        "verified": true,
        "events": proven.len(),
        "checkpoint_size": at(&v, &["checkpoint", "size"]),
        "key": a.verifier_key.as_deref().map_or_else(|| at(&v, &["checkpoint", "verifier_key"]).clone(), |k| json!(k)),
        "pinned": a.verifier_key.is_some(),
    });
    if let Some(o) = v.as_object_mut() {
        // What this command proved, in place of what the broker said.
        o.insert("summary".into(), json!(summary));
        o.insert("verification".into(), verification);
    }
    match client.format {
        Format::Json => output::json(&v),
        Format::Human => human(&v, &summary, &proven, a.verifier_key.is_some()),
    }
    Ok(())
}

/// Refuses loudly: nothing of the evidence is shown.
fn unverified(what: String) -> CliError {
    CliError::with_help(
        EXIT_AUDIT_FAILED,
        "evidence_unverified",
        format!("the review evidence does not verify: {what}"),
        "do not rely on this evidence; treat the audit log as tampered with and check it with `breakglass audit verify` against a checkpoint you kept",
    )
}

/// Checks the checkpoint's signature with `pinned` (or the broker's key), then every event's leaf
/// hash and inclusion proof; returns each event (`about`, parsed JSON) in the order given.
fn verify(v: &Value, pinned: Option<&str>) -> Result<Vec<(String, Value)>, CliError> {
    let cp = &at(v, &["checkpoint"]);
    let key = pinned
        .or_else(|| at(cp, &["verifier_key"]).as_str())
        .ok_or_else(|| unverified("no verifier key".into()))?;
    let verifier =
        NoteVerifier::parse(key).map_err(|e| unverified(format!("verifier key: {e}")))?;
    let note = SignedNote::parse(at(cp, &["note"]).as_str().unwrap_or_default())
        .map_err(|e| unverified(format!("checkpoint: {e}")))?;
    let text = verifier
        .verify(&note)
        .map_err(|e| unverified(format!("checkpoint signature: {e}")))?;
    let checkpoint = Checkpoint::parse(text).map_err(|e| unverified(format!("checkpoint: {e}")))?;
    let mut out = Vec::new();
    for e in at(v, &["events"])
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let seq = at(e, &["seq"])
            .as_u64()
            .ok_or_else(|| unverified("an event without a seq".into()))?;
        let bytes = B64
            .decode(at(e, &["leaf"]).as_str().unwrap_or_default())
            .map_err(|_| unverified(format!("event {seq}: its bytes are not base64")))?;
        let proof = at(e, &["proof"])
            .as_array()
            .ok_or_else(|| unverified(format!("event {seq} has no inclusion proof")))?
            .iter()
            .map(|h| h.as_str().and_then(Hash::from_base64))
            .collect::<Option<Vec<Hash>>>()
            .ok_or_else(|| unverified(format!("event {seq}: a proof hash is malformed")))?;
        if !verify_inclusion(
            seq,
            checkpoint.size,
            &leaf_hash(&bytes),
            &proof,
            &checkpoint.root,
        ) {
            return Err(unverified(format!(
                "event {seq} is not in the log the checkpoint of size {} signs",
                checkpoint.size
            )));
        }
        let parsed: Value = serde_json::from_slice(&bytes)
            .map_err(|_| unverified(format!("event {seq} is not JSON")))?;
        if at(&parsed, &["seq"]).as_u64() != Some(seq) {
            return Err(unverified(format!("event {seq} says it is another seq")));
        }
        out.push((
            at(e, &["about"]).as_str().unwrap_or_default().to_owned(),
            parsed,
        ));
    }
    Ok(out)
}

/// The value at `path` in `v` (`null` where there is none).
fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .unwrap_or(&Value::Null)
}

fn opt(v: Option<&str>) -> &str {
    v.unwrap_or("-")
}

fn t(ts: Option<breakglass_core::Timestamp>) -> String {
    ts.map_or_else(|| "-".into(), |t| t.to_rfc3339())
}

fn human(v: &Value, s: &Summary, proven: &[(String, Value)], pinned: bool) {
    let safe = |x: &str| output::safe(x);
    println!(
        "grant {}  role {}  requester {}{}",
        opt(s.grant.as_deref()),
        opt(s.role.as_deref()),
        opt(s.requester.as_deref()),
        if s.emergency { "  EMERGENCY" } else { "" }
    );
    println!("reason:   {}", safe(opt(s.reason.as_deref())));
    println!("incident: {}", safe(opt(s.incident.as_deref())));
    println!();
    println!("timeline:");
    println!(
        "  requested  {}  (for {})",
        t(s.requested_at),
        opt(s.duration.as_deref())
    );
    for a in &s.approvals {
        let what = if a.extension {
            "extension approved"
        } else {
            "approved"
        };
        println!(
            "  {what:<10} {}  by {}{}",
            t(a.at),
            safe(&a.approver),
            a.comment
                .as_deref()
                .map(|c| format!(": \"{}\"", safe(c)))
                .unwrap_or_default()
        );
    }
    if let Some(ms) = s.waited_for_approval_ms {
        println!("             waited {} for approval", human_ms(ms));
    }
    println!("  active     {}", t(s.activated_at));
    println!(
        "  ended      {}  {}",
        t(s.ended_at),
        safe(opt(s.ended_how.as_deref()))
    );
    if let Some(ms) = s.active_for_ms {
        println!("             active for {}", human_ms(ms));
    }
    println!();
    if s.collected.is_empty() {
        println!("credential: never collected (the approval was not used)");
    } else {
        for c in &s.collected {
            println!(
                "credential: collected {} by {} ({})",
                t(c.at),
                safe(&c.to),
                safe(&c.fingerprint)
            );
        }
    }
    for x in &s.extensions {
        println!(
            "extension:  {} {} {} {}",
            x.what,
            t(x.at),
            opt(x.duration.as_deref()),
            safe(opt(x.reason.as_deref()))
        );
    }
    for f in &s.target {
        println!("target:     {}", safe(f));
    }
    println!();
    println!(
        "what {} did inside the window:",
        opt(s.requester.as_deref())
    );
    let mine: Vec<&Value> = proven
        .iter()
        .filter(|(about, _)| about == "requester")
        .map(|(_, e)| e)
        .collect();
    if mine.is_empty() {
        println!("  nothing else");
    }
    for e in mine {
        println!(
            "  {:>6} {} {}",
            output::cell(e, "seq"),
            output::cell(e, "time"),
            output::cell(e, "type")
        );
    }
    println!();
    println!("alerts sent (from the broker's delivery records, not the signed log):");
    let alerts = at(v, &["alerts"])
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if alerts.is_empty() {
        println!("  none");
    }
    for a in alerts {
        println!(
            "  {:>6} {:<26} {:<12} {}{}",
            output::cell(a, "seq"),
            output::cell(a, "event"),
            output::cell(a, "channel"),
            output::cell(a, "status"),
            at(a, &["last_error"])
                .as_str()
                .map(|e| format!(" ({})", safe(e)))
                .unwrap_or_default()
        );
    }
    println!();
    let r = &at(v, &["review"]);
    print!("review: {}", output::cell(r, "status"));
    if at(r, &["due"]).is_string() {
        print!(", due {}", output::cell(r, "due"));
    }
    if at(r, &["overdue"]) == true {
        print!(" (OVERDUE)");
    }
    println!();
    for f in &s.reviews {
        println!(
            "  {} {} by {}: {}",
            t(f.at),
            safe(&f.outcome),
            safe(&f.reviewer),
            safe(&f.notes)
        );
    }
    println!();
    let cp = &at(v, &["checkpoint"]);
    println!(
        "verified: {} events proven against the checkpoint of size {} signed by {} ({})",
        proven.len(),
        output::cell(cp, "size"),
        output::cell(cp, "origin"),
        if pinned {
            "the key you gave"
        } else {
            "the broker's key; pass --verifier-key to check it against one you kept"
        }
    );
}
