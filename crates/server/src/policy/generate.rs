//! The policies generated from the role files, plus the built-in rules every installation has.
//!
//! Every role policy has one of a few shapes ("members of `S` may `A` on role `R`"), so each
//! shape is a Cedar template and each role policy a link of it: linking costs no parsing and
//! strict validation checks a template once, which keeps loading a thousand roles fast. What is
//! shown to people ([`Generated::text`], `policy show`) is the same policies written out as
//! plain Cedar, one commented section per role and one `@id`-annotated policy per subject and
//! action; a test checks that the written text and the links are the same policies.
//!
//! The schema, the built-in policies and the templates never change, so they are parsed once per
//! process ([`FIXED`]).

use std::fmt::Write as _;
use std::str::FromStr as _;
use std::sync::LazyLock;

use breakglass_core::{ADMIN_GROUP, AUDITOR_GROUP, Subject};
use cedar_policy::ffi::DetailedError;
use cedar_policy::{Policy, PolicyId, PolicySet, Schema, Template};

use super::{Origin, PolicyError, RoleFacts, internal, load};

/// The actions role files give, in the order they are generated.
const ROLE_ACTIONS: [&str; 6] = [
    "request",
    "emergency",
    "approve",
    "revoke",
    "review",
    "read",
];

/// What the role files and the built-in rules generate.
pub(super) struct Generated {
    /// Everything, written out as readable Cedar: what `Policies::generated` returns.
    pub(super) text: String,
    pub(super) roles: Vec<RolePolicies>,
}

/// What every load uses and no file changes, parsed once per process: the schema, the built-in
/// policies and the templates role policies link.
pub(super) struct Fixed {
    pub(super) schema: Schema,
    pub(super) builtin: Vec<Policy>,
    pub(super) templates: Vec<Template>,
}

pub(super) static FIXED: LazyLock<Result<Fixed, PolicyError>> = LazyLock::new(|| {
    Ok(Fixed {
        schema: Schema::from_cedarschema_str(SCHEMA)
            .map(|(schema, _warnings)| schema)
            .map_err(|e| internal(&format!("the built-in schema does not load: {e}")))?,
        builtin: parse(&builtin(), Origin::Builtin)?.policies,
        templates: parse(&templates(), Origin::Template)?.templates,
    })
});

const SCHEMA: &str = include_str!("schema.cedarschema");

/// Static policies and templates parsed from generated text, in text order, each renamed to its
/// `@id`.
struct Parsed {
    policies: Vec<Policy>,
    templates: Vec<Template>,
}

fn parse(text: &str, origin: Origin<'_>) -> Result<Parsed, PolicyError> {
    let set = PolicySet::from_str(text).map_err(|errors| {
        let reason = errors
            .iter()
            .next()
            .map(|e| load::sentence(&DetailedError::from(e)))
            .unwrap_or_default();
        origin.bug(&format!("generated policy text does not parse: {reason}"))
    })?;
    let mut out = Parsed {
        policies: Vec::new(),
        templates: Vec::new(),
    };
    // Cedar names the statements of a text `policy0`, `policy1`, … in order.
    for n in 0..set.num_of_policies() + set.num_of_templates() {
        let cedar_id = PolicyId::new(format!("policy{n}"));
        if let Some(policy) = set.policy(&cedar_id) {
            let id = policy
                .annotation("id")
                .ok_or_else(|| origin.bug("a generated policy has no `@id`"))?;
            out.policies.push(policy.new_id(PolicyId::new(id)));
        } else if let Some(template) = set.template(&cedar_id) {
            let id = template
                .annotation("id")
                .ok_or_else(|| origin.bug("a generated template has no `@id`"))?;
            out.templates.push(template.new_id(PolicyId::new(id)));
        }
    }
    Ok(out)
}

/// The policies of one role.
pub(super) struct RolePolicies {
    pub(super) id: String,
    /// The role file, for messages.
    pub(super) file: String,
    pub(super) links: Vec<Link>,
}

/// One role policy: a link of the template for its action and kind of subject.
pub(super) struct Link {
    /// E.g. `role:db:request:group:sre`.
    pub(super) id: String,
    /// The id of the template to link, see [`templates`].
    pub(super) template: String,
    pub(super) subject: Subject,
    /// The policy written out as Cedar, with its `@id`.
    pub(super) text: String,
}

pub(super) fn generate<'a>(roles: impl IntoIterator<Item = RoleFacts<'a>>) -> Generated {
    let builtin = builtin();
    let mut text = builtin.clone();
    let mut out = Vec::new();
    for facts in roles {
        let role = role_policies(&facts);
        let _ = writeln!(
            text,
            "\n// Role {}, from role file {}.",
            quote(&role.id),
            quote(&role.file)
        );
        for link in &role.links {
            text.push_str(&link.text);
            text.push('\n');
        }
        out.push(role);
    }
    Generated { text, roles: out }
}

/// The templates role policies link, one per action and kind of subject, each with its id as
/// `@id`.
pub(super) fn templates() -> String {
    let mut out = String::new();
    for action in ROLE_ACTIONS {
        for (kind, op) in [("user", "=="), ("group", "in")] {
            let _ = writeln!(
                out,
                "@id(\"{}\")\npermit(principal {op} ?principal, action == Breakglass::Action::\"{action}\", resource == ?resource);",
                template_id(action, kind)
            );
        }
    }
    out
}

fn template_id(action: &str, kind: &str) -> String {
    format!("template:{action}:{kind}")
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

/// The policies one role file implies, in the order of [`ROLE_ACTIONS`]: requesters request
/// (and, when allowed, raise emergencies), approvers approve, approvers and the owner revoke, the
/// role's reviewers (`[review] reviewers`, the owner by default) review, and all of them read.
fn role_policies(facts: &RoleFacts<'_>) -> RolePolicies {
    let role = facts.role;
    let id = role.id.as_str();
    let requesters = dedup(&role.requesters);
    let approvers = dedup(&role.approvers);
    // The owner answers for the role: they may end any grant of it, as they may review it.
    let revokers = dedup(role.approvers.iter().chain([&role.owner]));
    // `[review] reviewers` (the owner by default); separation of duties is the core's rule.
    let reviewers = dedup(role.reviewers());
    let readers = dedup(
        role.requesters
            .iter()
            .chain(&role.approvers)
            .chain([&role.owner]),
    );
    let none = Vec::new();
    let mut links = Vec::new();
    for action in ROLE_ACTIONS {
        let subjects = match action {
            "request" => &requesters,
            "emergency" if facts.emergency_allowed => &requesters,
            "approve" => &approvers,
            "revoke" => &revokers,
            "review" => &reviewers,
            "read" => &readers,
            _ => &none,
        };
        for subject in subjects {
            let (kind, principal) = match subject {
                Subject::User(n) => (
                    "user",
                    format!("principal == Breakglass::Principal::{}", quote(n.as_str())),
                ),
                Subject::Group(g) => (
                    "group",
                    format!("principal in Breakglass::Group::{}", quote(g.as_str())),
                ),
            };
            let policy_id = format!("role:{id}:{action}:{subject}");
            links.push(Link {
                text: format!(
                    "@id({})\npermit({principal}, action == Breakglass::Action::\"{action}\", resource == Breakglass::Role::{});",
                    quote(&policy_id),
                    quote(id),
                ),
                id: policy_id,
                template: template_id(action, kind),
                subject: (*subject).clone(),
            });
        }
    }
    RolePolicies {
        id: id.to_owned(),
        file: role.file.clone(),
        links,
    }
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
