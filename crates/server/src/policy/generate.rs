//! Cedar policy text generated from the role files, plus the built-in rules every installation
//! has. The text is meant to be read (`policy show` prints it): one commented section per role,
//! one `@id`-annotated policy per subject and action.

use std::fmt::Write as _;

use breakglass_core::{ADMIN_GROUP, AUDITOR_GROUP, Subject};

use super::RoleFacts;

/// Generated text, split into the pieces that are parsed one by one so that a failure names
/// the role it came from.
pub(super) struct Generated {
    /// Everything, in order: what `Policies::generated` returns.
    pub(super) text: String,
    pub(super) chunks: Vec<Chunk>,
}

/// The policies of one role, or the built-in ones.
pub(super) struct Chunk {
    /// `Some((role id, role file))`, or `None` for the built-in rules.
    pub(super) role: Option<(String, String)>,
    pub(super) text: String,
}

pub(super) fn generate<'a>(roles: impl IntoIterator<Item = RoleFacts<'a>>) -> Generated {
    let mut chunks = vec![Chunk {
        role: None,
        text: builtin(),
    }];
    for facts in roles {
        chunks.push(Chunk {
            role: Some((facts.role.id.to_string(), facts.role.file.clone())),
            text: role_policies(&facts),
        });
    }
    let text = chunks
        .iter()
        .map(|c| c.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    Generated { text, chunks }
}

/// The rules that do not depend on any role file.
fn builtin() -> String {
    let admins = quote(ADMIN_GROUP);
    let auditors = quote(AUDITOR_GROUP);
    format!(
        r#"// Built-in rules, the same in every installation.

// A holder may always end their own grant early.
@id("builtin:own-revoke")
permit(principal, action == Breakglass::Action::"revoke", resource)
when {{ context.own }};

// A holder may always read their own grants.
@id("builtin:own-read")
permit(principal, action == Breakglass::Action::"read", resource)
when {{ context.own }};

// Administrators run the installation and may read and end every grant; they do not request,
// approve or review anything unless a role file names them.
@id("builtin:admins")
permit(
  principal in Breakglass::Group::{admins},
  action in [
    Breakglass::Action::"administer",
    Breakglass::Action::"read_audit",
    Breakglass::Action::"read",
    Breakglass::Action::"revoke"
  ],
  resource
);

// Auditors read every grant and the audit trail, and change nothing.
@id("builtin:auditors")
permit(
  principal in Breakglass::Group::{auditors},
  action in [Breakglass::Action::"read_audit", Breakglass::Action::"read"],
  resource
);

// A workload never administers breakglass, whatever its groups.
@id("builtin:no-service-administer")
forbid(principal, action == Breakglass::Action::"administer", resource)
when {{ principal.kind == "service" }};
"#
    )
}

/// The policies one role file implies, in the order request, emergency, approve, revoke, review,
/// read.
fn role_policies(facts: &RoleFacts<'_>) -> String {
    let role = facts.role;
    let id = role.id.as_str();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// Role {}, from role file {}.",
        quote(id),
        quote(&role.file)
    );
    let approvers_and_owner = dedup(role.approvers.iter().chain([&role.owner]));
    let readers = dedup(
        role.requesters
            .iter()
            .chain(&role.approvers)
            .chain([&role.owner]),
    );
    let mut rules: Vec<(&str, Vec<&Subject>)> = vec![("request", dedup(&role.requesters))];
    if facts.emergency_allowed {
        rules.push(("emergency", dedup(&role.requesters)));
    }
    rules.push(("approve", dedup(&role.approvers)));
    rules.push(("revoke", dedup(&role.approvers)));
    rules.push(("review", approvers_and_owner));
    rules.push(("read", readers));
    for (action, subjects) in rules {
        for subject in subjects {
            let principal = match subject {
                Subject::User(n) => {
                    format!("principal == Breakglass::Principal::{}", quote(n.as_str()))
                }
                Subject::Group(g) => {
                    format!("principal in Breakglass::Group::{}", quote(g.as_str()))
                }
            };
            let _ = writeln!(
                out,
                "@id({})\npermit({principal}, action == Breakglass::Action::\"{action}\", resource == Breakglass::Role::{});",
                quote(&format!("role:{id}:{action}:{subject}")),
                quote(id),
            );
        }
    }
    out
}

/// The subjects in their first order, each once.
fn dedup<'s>(subjects: impl IntoIterator<Item = &'s Subject>) -> Vec<&'s Subject> {
    let mut out: Vec<&Subject> = Vec::new();
    for s in subjects {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// `s` as a Cedar string literal. Names are already restricted to `[a-z0-9._-]`, but the text is
/// escaped anyway so that no input can ever end a literal (or a comment) early.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || !c.is_ascii() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quoting_escapes_what_could_end_a_literal_or_a_comment() {
        assert_eq!(quote("db"), r#""db""#);
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote("a\nb"), r#""a\u{a}b""#);
    }
}
