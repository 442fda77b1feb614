//! Text that people type and other people read: free-text fields (a reason, a comment, notes) and
//! input echoed back in messages.
//!
//! Free text refuses what would make it read differently from what was typed: control characters
//! (other than newline and tab), bidirectional overrides and isolates, and invisible format
//! characters. Input echoed in a message or an audit event is cut to a length, has any such
//! character escaped, and has any whole API token (`bgt_<id>_<secret>`) cut down to its id, so a
//! secret pasted into the wrong field never reaches the append-only log.

use std::borrow::Cow;

use crate::DomainError;

/// The prefix of every API token.
pub const TOKEN_PREFIX: &str = "bgt_";
/// Hex characters in a token id.
const TOKEN_ID_LEN: usize = 12;

/// Whether `c` would make text read differently from what was typed: a control character other
/// than newline and tab, a line or paragraph separator, a bidirectional control, or an invisible
/// format character (Unicode category Cf).
pub fn is_deceptive(c: char) -> bool {
    if c == '\n' || c == '\t' {
        return false;
    }
    c.is_control()
        || matches!(
            u32::from(c),
            0x00AD
                | 0x0600..=0x0605
                | 0x061C
                | 0x06DD
                | 0x070F
                | 0x0890..=0x0891
                | 0x08E2
                | 0x180E
                | 0x200B..=0x200F
                | 0x2028..=0x202E
                | 0x2060..=0x2064
                | 0x2066..=0x206F
                | 0xFEFF
                | 0xFFF9..=0xFFFB
                | 0x110BD
                | 0x110CD
                | 0x13430..=0x1343F
                | 0x1BCA0..=0x1BCA3
                | 0x1D173..=0x1D17A
                | 0xE0001
                | 0xE0020..=0xE007F
        )
}

/// A required or optional free-text field, checked: trimmed, non-empty when `required`, at most
/// `max` characters, and free of [deceptive](is_deceptive) characters.
pub fn free_text(
    field: &'static str,
    s: &str,
    max: usize,
    required: bool,
) -> Result<String, DomainError> {
    let t = s.trim();
    if required && t.is_empty() {
        return Err(DomainError::InvalidField {
            field,
            problem: "it must not be empty".into(),
        });
    }
    if t.chars().count() > max {
        return Err(DomainError::InvalidField {
            field,
            problem: format!("it is longer than {max} characters"),
        });
    }
    if let Some(c) = t.chars().find(|c| is_deceptive(*c)) {
        let what = if c.is_control() {
            "a control character"
        } else {
            "an invisible or text-direction character"
        };
        return Err(DomainError::InvalidField {
            field,
            problem: format!(
                "it contains {what} (U+{:04X}), which would make it read differently from what was typed",
                u32::from(c)
            ),
        });
    }
    Ok(t.to_owned())
}

/// `s` with every [deceptive](is_deceptive) character written as a visible `\u{…}` escape, for
/// printing text that was stored before it was checked.
pub fn escape_deceptive(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_deceptive) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_deceptive(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `s` with every whole API token in it cut down to `bgt_<id>_[redacted]`.
pub fn redact_tokens(s: &str) -> Cow<'_, str> {
    if !s.contains(TOKEN_PREFIX) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find(TOKEN_PREFIX) {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let after_prefix = from.get(TOKEN_PREFIX.len()..).unwrap_or_default();
        let id = after_prefix.get(..TOKEN_ID_LEN).filter(|id| {
            id.bytes().all(|b| b.is_ascii_hexdigit())
                && after_prefix.as_bytes().get(TOKEN_ID_LEN) == Some(&b'_')
        });
        match id {
            Some(id) => {
                // The secret is base64url: everything up to the next character outside it.
                let secret = after_prefix.get(TOKEN_ID_LEN + 1..).unwrap_or_default();
                let len = secret
                    .bytes()
                    .take_while(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
                    .count();
                out.push_str(TOKEN_PREFIX);
                out.push_str(id);
                out.push_str("_[redacted]");
                rest = secret.get(len..).unwrap_or_default();
            }
            None => {
                out.push_str(TOKEN_PREFIX);
                rest = after_prefix;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Input echoed back in a message or an audit event: any token redacted, cut to `max`
/// characters, deceptive characters escaped.
pub fn shown(s: &str, max: usize) -> String {
    let redacted = redact_tokens(s);
    let cut: String = redacted.chars().take(max).collect();
    escape_deceptive(&cut).into_owned()
}

/// Where and why a TOML file does not parse, as `line L, column C: reason`, on one line. The
/// offending text is not quoted: a line can be as long as the file, and a secret pasted into a
/// file by mistake must not reach a log line.
pub fn toml_reason(text: &str, e: &toml::de::Error) -> String {
    let reason = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!("line {line}, column {column}: {reason}")
        }
        None => reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "bgt_0123456789ab_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_0123456";

    #[test]
    fn a_whole_token_is_cut_down_to_its_id_wherever_it_stands() {
        assert_eq!(redact_tokens(TOKEN), "bgt_0123456789ab_[redacted]");
        assert_eq!(
            redact_tokens(&format!("unknown grant `{TOKEN}` (x)")),
            "unknown grant `bgt_0123456789ab_[redacted]` (x)"
        );
        assert_eq!(
            redact_tokens(&format!("{TOKEN}/{TOKEN}")),
            "bgt_0123456789ab_[redacted]/bgt_0123456789ab_[redacted]"
        );
        // Not a token: left alone.
        assert_eq!(redact_tokens("bgt_notatoken"), "bgt_notatoken");
        assert_eq!(redact_tokens("plain"), "plain");
        let shown = shown(&format!("  {TOKEN}"), 200);
        assert!(!shown.contains("abcdefghij"), "{shown}");
    }

    #[test]
    fn free_text_refuses_what_reads_differently_from_what_was_typed() {
        for bad in [
            "pay \u{202E}rof\u{202C}",
            "a\u{200B}b",
            "a\u{2066}b",
            "a\u{FEFF}b",
            "bell\u{7}",
            "line\u{2028}sep",
            "tag\u{E0041}",
        ] {
            let e = free_text("reason", bad, 100, true).unwrap_err();
            assert!(
                e.to_string().starts_with("invalid `reason`: it contains"),
                "{e}"
            );
        }
        assert_eq!(
            free_text("reason", "  café ok\nnext\tline ", 100, true).unwrap(),
            "café ok\nnext\tline"
        );
        assert!(free_text("reason", "  ", 100, true).is_err());
        assert!(free_text("reason", "abc", 2, true).is_err());
    }

    #[test]
    fn escaping_makes_every_deceptive_character_visible() {
        assert_eq!(escape_deceptive("a\u{202E}b"), "a\\u{202e}b");
        assert_eq!(escape_deceptive("fine\n"), "fine\n");
        assert_eq!(shown("ab\u{200B}cdef", 3), "ab\\u{200b}");
    }
}
