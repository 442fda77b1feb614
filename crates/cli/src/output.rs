//! Printing results: human-readable by default, JSON with `--output json`.

use std::io::Write as _;

use serde_json::Value;

use breakglass_core::text::escape_deceptive;

use crate::Format;
use crate::client::CliError;

/// Text from the broker as a person should see it: control, text-direction and invisible
/// characters written as visible `\u{…}` escapes, so a reason cannot read differently from what
/// was typed (text stored before the broker refused such characters included).
pub(crate) fn safe(s: &str) -> String {
    escape_deceptive(s).into_owned()
}

pub(crate) fn json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub(crate) fn error(e: &CliError, format: Format) {
    let mut err = std::io::stderr().lock();
    match format {
        Format::Json => {
            let v = serde_json::json!({ "error": { "code": e.code, "message": e.message, "help": e.help, "exit_code": e.exit_code } });
            let _ = writeln!(err, "{v}");
        }
        Format::Human => {
            let _ = writeln!(err, "error: {}", safe(&e.message));
            if !e.help.is_empty() {
                let _ = writeln!(err, "  help: {}", safe(&e.help));
            }
        }
    }
}

fn s(v: &Value, k: &str) -> String {
    safe(v.get(k).and_then(Value::as_str).unwrap_or("-"))
}

/// One grant, as `key: value` lines.
pub(crate) fn grant(v: &Value) {
    let approvals: Vec<String> = v
        .get("approvals")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.get("approver").and_then(Value::as_str))
                .map(safe)
                .collect()
        })
        .unwrap_or_default();
    let quorum = v
        .get("quorum")
        .and_then(Value::as_u64)
        .map_or("?".into(), |q| q.to_string());
    println!("grant:      {}", s(v, "id"));
    println!("role:       {}", s(v, "role"));
    println!("requester:  {}", s(v, "requester"));
    println!("state:      {}", s(v, "state"));
    println!("reason:     {}", s(v, "reason"));
    if let Some(i) = v.get("incident").and_then(Value::as_str) {
        println!("incident:   {}", safe(i));
    }
    println!("duration:   {}", s(v, "duration"));
    if approvals.is_empty() {
        println!("approvals:  0/{quorum}");
    } else {
        println!(
            "approvals:  {}/{quorum} ({})",
            approvals.len(),
            approvals.join(", ")
        );
    }
    if let Some(e) = v.get("expires_at").and_then(Value::as_str) {
        println!("expires at: {}", safe(e));
    }
    if let Some(p) = v.get("pending_extension").filter(|p| !p.is_null()) {
        println!(
            "extension:  {} pending approval ({})",
            s(p, "duration"),
            s(p, "reason")
        );
    }
    // Why and when it ended, for whichever way it ended.
    for (key, label) in [
        ("ended_at", "ended at: "),
        ("revoked_by", "revoked by:"),
        ("revoke_reason", "because:  "),
        ("denied_by", "denied by: "),
        ("deny_reason", "because:  "),
        ("cancelled_by", "cancelled: "),
        ("timed_out_at", "timed out: "),
        ("failure", "failure:   "),
    ] {
        if let Some(x) = v.get(key).and_then(Value::as_str) {
            println!("{label} {}", safe(x));
        }
    }
}

/// Rows under a header, columns padded to the widest cell.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for r in rows {
        line(r.clone());
    }
}

/// A JSON array of objects as a table: one column per key.
pub(crate) fn list(v: &Value, header: &[&str], keys: &[&str]) {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|item| keys.iter().map(|k| cell(item, k)).collect())
        .collect();
    table(header, &rows);
}

/// Prints `v` as JSON, or through `human`.
pub(crate) fn show(format: Format, v: &Value, human: impl FnOnce(&Value)) {
    match format {
        Format::Json => json(v),
        Format::Human => human(v),
    }
}

pub(crate) fn cell(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => safe(s),
        Some(Value::Null) | None => "-".into(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), safe))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{cell, safe};

    #[test]
    fn text_from_the_broker_is_shown_as_it_reads() {
        // A reason stored before the broker refused such characters still prints visibly.
        assert_eq!(safe("pay \u{202E}gnp.exe"), "pay \\u{202e}gnp.exe");
        assert_eq!(safe("zero\u{200B}width"), "zero\\u{200b}width");
        assert_eq!(safe("plain text, ünïcode"), "plain text, ünïcode");
        let row = json!({ "reason": "a\u{2066}b", "groups": ["x\u{7}"] });
        assert_eq!(cell(&row, "reason"), "a\\u{2066}b");
        assert_eq!(cell(&row, "groups"), "x\\u{7}");
    }
}
