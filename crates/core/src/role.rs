//! Break-glass role definitions, kept as code in `roles/*.toml` and parsed strictly: an unknown
//! key, a bad duration or an impossible quorum is an error naming the file and the key.

use std::collections::BTreeMap;

use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{DomainError, Duration, Name, Principal, Subject};

mod governance;

pub use governance::{
    DEFAULT_ATTEST_EVERY, DEFAULT_DRILL_EVERY, DEFAULT_REVIEW_WITHIN, Governance,
    MAX_GOVERNANCE_INTERVAL, MAX_REVIEW_WITHIN, MIN_GOVERNANCE_INTERVAL, OnLapse, ReviewRequired,
    ReviewRule,
};
use governance::{GovernanceFile, ReviewFile};

/// The longest a pending request may wait for approval unless the role says otherwise.
/// How long a request may wait for approval when its role does not say (or no longer exists).
pub const DEFAULT_REQUEST_TTL: Duration = Duration::from_secs(3600);
const MAX_QUORUM: u32 = 16;

/// A role as written in its file. `Role` is the validated form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleFile {
    id: Name,
    title: String,
    owner: Subject,
    #[serde(default)]
    description: Option<String>,
    requesters: Vec<Subject>,
    default_duration: Duration,
    max_duration: Duration,
    #[serde(default)]
    request_ttl: Option<Duration>,
    #[serde(default)]
    max_extensions: u32,
    approval: ApprovalFile,
    #[serde(default)]
    request: RequestFile,
    /// Alert channels (names of `[channels.NAME]` in the config file) told of this role's grants.
    #[serde(default)]
    alerts: Vec<Name>,
    #[serde(default)]
    step_up: StepUpFile,
    /// `[review]`: the post-use review each use owes.
    #[serde(default)]
    review: ReviewFile,
    /// `[governance]`: attestation, the role's end date and drills.
    #[serde(default)]
    governance: GovernanceFile,
    target: Target,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalFile {
    quorum: u32,
    approvers: Vec<Subject>,
    #[serde(default)]
    emergency: Option<EmergencyFile>,
}

/// `[approval.emergency]`: whether a requester may activate without an approver.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmergencyFile {
    #[serde(default)]
    allowed: bool,
    #[serde(default)]
    max_duration: Option<Duration>,
    #[serde(default)]
    review_within: Option<Duration>,
    #[serde(default)]
    repeat_while_review_overdue: bool,
}

/// `[step_up]`: who must prove a second factor again before acting on this role's grants.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepUpFile {
    #[serde(default)]
    exempt_services: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestFile {
    #[serde(default)]
    require_incident: bool,
    #[serde(default)]
    incident_pattern: Option<String>,
}

/// Where a grant's privilege lives and what exactly it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// A signed JWT for a service that trusts breakglass's JWKS.
    Token {
        audience: String,
        scope: Vec<String>,
    },
    /// A temporary PostgreSQL login role, made a member of existing roles for the grant's life.
    Postgres {
        /// The environment variable holding the admin DSN (never the DSN itself: role files are
        /// code and get reviewed, copied and committed).
        dsn_env: String,
        /// How access is given; `login` (a temporary `LOGIN` role) is the only mode so far.
        mode: PostgresMode,
        /// Existing roles the temporary role is made a member of.
        grant: Vec<String>,
    },
}

/// How a `postgres` target gives access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostgresMode {
    /// A temporary `LOGIN` role with a random password and `VALID UNTIL` the grant's end.
    Login,
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Token { .. } => "token",
            Self::Postgres { .. } => "postgres",
        }
    }
}

/// Whether `s` is a PostgreSQL role name breakglass will put in SQL: lower-case letters, digits and
/// `_`, starting with a letter or `_`, at most 63 bytes (the server's limit). Names are also quoted
/// wherever they are used; this list keeps anything surprising out of the role files altogether.
pub fn is_allowed_pg_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.starts_with("pg_")
}

/// Whether `s` is an environment variable name breakglass will read a DSN from.
pub fn is_allowed_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_uppercase() || b == b'_')
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Emergency self-activation, as a role allows it: the requester activates at once, with no
/// approver, for a shorter time, and owes a review by someone else afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Emergency {
    /// The cap (and the default) of an emergency grant's window; never over the role's
    /// `max_duration`.
    pub max_duration: Duration,
    /// How long after the activation someone other than the requester has to review the use.
    pub review_within: Duration,
    /// Whether the requester may self-activate again while a review of an earlier emergency use
    /// of theirs is overdue.
    pub repeat_while_review_overdue: bool,
}

/// A validated role.
#[derive(Clone, Debug)]
pub struct Role {
    pub id: Name,
    pub title: String,
    pub description: Option<String>,
    pub owner: Subject,
    pub requesters: Vec<Subject>,
    pub default_duration: Duration,
    pub max_duration: Duration,
    pub request_ttl: Duration,
    pub max_extensions: u32,
    pub quorum: u32,
    pub approvers: Vec<Subject>,
    pub require_incident: bool,
    pub incident_pattern: Option<Regex>,
    /// Alert channels told of this role's grants (checked against the config when loaded).
    pub alerts: Vec<Name>,
    /// Emergency self-activation, if the role allows it (`[approval.emergency]` with
    /// `allowed = true`); `None` means every grant needs approval.
    pub emergency: Option<Emergency>,
    /// Whether service principals act on this role's grants without step-up (which they cannot
    /// do); by default they need it like people.
    pub step_up_exempt_services: bool,
    /// The post-use review this role's grants owe (`[review]`).
    pub review: ReviewRule,
    /// Attestation, end date and drills (`[governance]`).
    pub governance: Governance,
    pub target: Target,
    /// SHA-256 of the file's bytes, hex: what `role.changed` events record.
    pub hash: String,
    /// The file it came from, for messages.
    pub file: String,
}

impl Role {
    /// Parses and validates one role file. `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, DomainError> {
        let invalid = |message: String| DomainError::InvalidRoleFile {
            file: file.to_owned(),
            message,
        };
        let raw: RoleFile = toml::from_str(text).map_err(|e| invalid(toml_error(text, &e)))?;
        if raw.title.trim().is_empty() {
            return Err(invalid("key `title` must not be empty".into()));
        }
        if raw.requesters.is_empty() {
            return Err(invalid(
                "key `requesters` must name at least one `user:` or `group:`".into(),
            ));
        }
        if raw.approval.quorum == 0 || raw.approval.quorum > MAX_QUORUM {
            return Err(invalid(format!(
                "key `approval.quorum` must be between 1 and {MAX_QUORUM}, not {}",
                raw.approval.quorum
            )));
        }
        if raw.approval.approvers.is_empty() {
            return Err(invalid(
                "key `approval.approvers` must name at least one `user:` or `group:`".into(),
            ));
        }
        if raw.default_duration > raw.max_duration {
            return Err(invalid(format!(
                "key `default_duration` ({}) is longer than `max_duration` ({})",
                raw.default_duration, raw.max_duration
            )));
        }
        let emergency = match raw.approval.emergency {
            Some(e) => emergency(e, raw.max_duration).map_err(invalid)?,
            None => None,
        };
        let incident_pattern = match raw.request.incident_pattern {
            Some(p) => Some(Regex::new(&p).map_err(|e| {
                // A syntax error quotes the whole pattern before its `error: `; the reason is
                // enough, and the pattern may be long.
                let e = e.to_string();
                let reason = e.rsplit("error: ").next().unwrap_or_default();
                invalid(format!(
                    "key `request.incident_pattern` is not a valid regex: {}",
                    one_line(reason)
                ))
            })?),
            None if raw.request.require_incident => {
                return Err(invalid(
                    "key `request.require_incident` is true but `request.incident_pattern` is missing"
                        .into(),
                ));
            }
            None => None,
        };
        match &raw.target {
            Target::Token { audience, scope } => {
                if audience.is_empty()
                    || audience.len() > 200
                    || audience.contains(char::is_whitespace)
                {
                    return Err(invalid(
                        "key `target.audience` must be 1-200 characters without spaces".into(),
                    ));
                }
                if scope.is_empty()
                    || scope
                        .iter()
                        .any(|s| s.is_empty() || s.len() > 200 || s.contains(char::is_whitespace))
                {
                    return Err(invalid(
                        "key `target.scope` must list at least one scope, each without spaces"
                            .into(),
                    ));
                }
            }
            Target::Postgres {
                dsn_env,
                mode: _,
                grant,
            } => {
                if !is_allowed_env_name(dsn_env) {
                    return Err(invalid(format!(
                        "key `target.dsn_env` must name an environment variable (A-Z, 0-9, _), not `{}`",
                        dsn_env.chars().take(80).collect::<String>()
                    )));
                }
                if grant.is_empty() {
                    return Err(invalid(
                        "key `target.grant` must list at least one existing PostgreSQL role".into(),
                    ));
                }
                if let Some(bad) = grant.iter().find(|g| !is_allowed_pg_identifier(g)) {
                    return Err(invalid(format!(
                        "key `target.grant` holds `{}`: role names must be lower-case letters, digits and `_`, start with a letter or `_`, not start with `pg_`, and be at most 63 bytes",
                        bad.chars().take(80).collect::<String>()
                    )));
                }
            }
        }
        let review = governance::review(raw.review).map_err(invalid)?;
        let governance = governance::governance(raw.governance).map_err(invalid)?;
        Ok(Self {
            id: raw.id,
            title: raw.title,
            description: raw.description,
            owner: raw.owner,
            requesters: raw.requesters,
            default_duration: raw.default_duration,
            max_duration: raw.max_duration,
            request_ttl: raw.request_ttl.unwrap_or(DEFAULT_REQUEST_TTL),
            max_extensions: raw.max_extensions,
            quorum: raw.approval.quorum,
            approvers: raw.approval.approvers,
            require_incident: raw.request.require_incident,
            incident_pattern,
            alerts: raw.alerts,
            emergency,
            step_up_exempt_services: raw.step_up.exempt_services,
            review,
            governance,
            target: raw.target,
            hash: hex::encode(Sha256::digest(text.as_bytes())),
            file: file.to_owned(),
        })
    }

    pub fn may_request(&self, p: &Principal) -> bool {
        p.matches_any(&self.requesters)
    }

    pub fn may_approve(&self, p: &Principal) -> bool {
        p.matches_any(&self.approvers)
    }

    pub fn is_owner(&self, p: &Principal) -> bool {
        p.matches_any(std::slice::from_ref(&self.owner))
    }

    /// Who may review this role's uses: `[review] reviewers`, or the owner when it names nobody.
    /// (Separation of duties is the review rule's: see `governance::review`.)
    pub fn reviewers(&self) -> &[Subject] {
        if self.review.reviewers.is_empty() {
            std::slice::from_ref(&self.owner)
        } else {
            &self.review.reviewers
        }
    }

    pub fn may_review(&self, p: &Principal) -> bool {
        p.matches_any(self.reviewers())
    }
}

/// Every loaded role by id. Duplicate ids across files are an error.
#[derive(Clone, Debug, Default)]
pub struct RoleSet {
    roles: BTreeMap<Name, Role>,
}

impl RoleSet {
    /// Parses every `(file name, text)` pair; the first error stops the load.
    pub fn parse<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, DomainError> {
        let mut roles: BTreeMap<Name, Role> = BTreeMap::new();
        for (file, text) in files {
            let role = Role::parse(file, text)?;
            if let Some(prev) = roles.get(&role.id) {
                return Err(DomainError::InvalidRoleFile {
                    file: file.to_owned(),
                    message: format!(
                        "role id `{}` is already defined in `{}`",
                        role.id, prev.file
                    ),
                });
            }
            roles.insert(role.id.clone(), role);
        }
        Ok(Self { roles })
    }

    pub fn get(&self, id: &str) -> Option<&Role> {
        self.roles
            .iter()
            .find(|(k, _)| k.as_str() == id)
            .map(|(_, r)| r)
    }

    /// Looks a role up or says clearly that it does not exist.
    pub fn require(&self, id: &str) -> Result<&Role, DomainError> {
        self.get(id).ok_or_else(|| DomainError::UnknownRole {
            role: id.chars().take(80).collect(),
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Role> {
        self.roles.values()
    }

    pub fn len(&self) -> usize {
        self.roles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
    }

    /// The `request_ttl` of `role`, or the default for a role that is gone.
    pub fn request_ttl(&self, role: &str) -> Duration {
        self.get(role)
            .map_or(DEFAULT_REQUEST_TTL, |r| r.request_ttl)
    }

    /// The shortest time any request may wait: no request younger than this can be timed out.
    pub fn shortest_request_ttl(&self) -> Duration {
        self.iter()
            .map(|r| r.request_ttl)
            .fold(DEFAULT_REQUEST_TTL, Duration::min)
    }
}

/// Validates `[approval.emergency]` against the role's `max_duration`. Values given while
/// `allowed = false` are still checked, so switching it on never reveals an old mistake.
fn emergency(e: EmergencyFile, role_max: Duration) -> Result<Option<Emergency>, String> {
    if let Some(max) = e.max_duration
        && max > role_max
    {
        return Err(format!(
            "key `approval.emergency.max_duration` (`{max}`) is longer than the role's `max_duration` (`{role_max}`); write `max_duration = \"{role_max}\"` or less"
        ));
    }
    if let Some(within) = e.review_within
        && within > MAX_REVIEW_WITHIN
    {
        return Err(format!(
            "key `approval.emergency.review_within` (`{within}`) is longer than 30 days; write `review_within = \"{MAX_REVIEW_WITHIN}\"` or less"
        ));
    }
    if !e.allowed {
        return Ok(None);
    }
    let Some(max_duration) = e.max_duration else {
        return Err(format!(
            "key `approval.emergency.max_duration` is required when `allowed = true`; write the cap of an emergency grant, such as `max_duration = \"15m\"` (at most the role's `{role_max}`)"
        ));
    };
    let Some(review_within) = e.review_within else {
        return Err(
            "key `approval.emergency.review_within` is required when `allowed = true`; write how soon someone else must review the use, such as `review_within = \"24h\"` (at most `30d`)"
                .into(),
        );
    };
    Ok(Some(Emergency {
        max_duration,
        review_within,
        repeat_while_review_overdue: e.repeat_while_review_overdue,
    }))
}

/// A TOML error in a role file: where and why, then the line itself, which names the key, cut to
/// 80 characters (a line may be as long as the file; role files hold no secrets).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let reason = crate::text::toml_reason(text, e);
    let Some(start) = e.span().map(|s| s.start) else {
        return reason;
    };
    let line_start = text
        .get(..start)
        .and_then(|before| before.rfind('\n'))
        .map_or(0, |i| i + 1);
    let line = text
        .get(line_start..)
        .and_then(|rest| rest.lines().next())
        .unwrap_or_default()
        .trim();
    let more = if line.chars().count() > 80 { "…" } else { "" };
    format!("{reason}, in `{}{more}`", crate::text::shown(line, 80))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = r#"
id = "prod-db-admin"
title = "Emergency admin on the production database"
owner = "group:dba-leads"
requesters = ["group:sre"]          # also "user:alice"
default_duration = "30m"
max_duration = "1h"
[approval]
quorum = 1
approvers = ["group:sre-leads"]
[request]
require_incident = true
incident_pattern = "^INC-[0-9]+$"
[target]
kind = "token"
audience = "prod-db"
scope = ["db:admin"]
"#;

    #[test]
    fn the_documented_shape_parses() {
        let r = Role::parse("roles/prod-db-admin.toml", EXAMPLE).unwrap();
        assert_eq!(r.id.as_str(), "prod-db-admin");
        assert_eq!(r.quorum, 1);
        assert_eq!(r.max_duration.as_secs(), 3600);
        assert_eq!(r.request_ttl.as_secs(), 3600);
        assert_eq!(r.max_extensions, 0);
        assert!(r.require_incident);
        assert_eq!(
            r.target,
            Target::Token {
                audience: "prod-db".into(),
                scope: vec!["db:admin".into()]
            }
        );
        assert_eq!(r.hash.len(), 64);
    }

    /// The TOML parser refuses more than 80 levels; this runs unoptimised on a test thread's
    /// 2 MiB stack, as small as a reload on an async worker gets. The error once quoted the
    /// whole offending line, here 100-300 KB.
    #[test]
    fn deeply_nested_toml_is_a_short_error_not_a_crash() {
        let n = 50_000;
        for (text, at) in [
            (
                format!("title = {}{}", "[".repeat(n), "]".repeat(n)),
                "line 1, column 89: ",
            ),
            (
                format!("title = {}1{}", "{a = ".repeat(n), "}".repeat(n)),
                "line 1, column 409: ",
            ),
            // The parser gives no position for keys.
            (format!("{}a = 1", "a.".repeat(n)), ""),
        ] {
            let e = Role::parse("roles/deep.toml", &text).unwrap_err();
            let DomainError::InvalidRoleFile { file, message } = e else {
                panic!("{e}");
            };
            assert_eq!(file, "roles/deep.toml");
            assert!(message.starts_with(at), "{message}");
            assert!(message.contains("recursion"), "{message}");
            assert!(message.len() < 200, "{message}");
        }
    }

    #[test]
    fn a_parse_error_names_line_and_column_without_quoting_the_line() {
        let text = EXAMPLE.replace("quorum = 1", "quorum = 1\nquorom = 2");
        let e = Role::parse("roles/x.toml", &text).unwrap_err().to_string();
        assert!(
            e.ends_with(
                "line 10, column 1: unknown field `quorom`, expected one of `quorum`, `approvers`, `emergency`, in `quorom = 2`"
            ),
            "{e}"
        );
        let pattern = format!("{}{}", "(".repeat(20_000), ")".repeat(20_000));
        let text = EXAMPLE.replace("^INC-[0-9]+$", &pattern);
        let e = Role::parse("roles/x.toml", &text).unwrap_err().to_string();
        assert!(
            e.contains("key `request.incident_pattern` is not a valid regex: "),
            "{e}"
        );
        assert!(e.len() < 300, "the pattern is not quoted: {e}");
    }

    #[test]
    fn unknown_keys_name_the_file_and_key() {
        for (text, key) in [
            (format!("{EXAMPLE}\nbogus = 1\n"), "bogus"),
            (
                EXAMPLE.replace("quorum = 1", "quorum = 1\nquorom = 2"),
                "quorom",
            ),
            (
                EXAMPLE.replace("scope = [", "scopes = [\"x\"]\nscope = ["),
                "scopes",
            ),
            (
                EXAMPLE.replace(
                    "require_incident",
                    "needs_incident = true\nrequire_incident",
                ),
                "needs_incident",
            ),
        ] {
            let err = Role::parse("roles/x.toml", &text).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("`roles/x.toml`"), "{msg}");
            assert!(msg.contains(&format!("`{key}`")), "{msg}");
            assert!(err.help().contains("fix the role file"), "{}", err.help());
        }
    }

    #[test]
    fn impossible_roles_are_refused() {
        for (text, needle) in [
            (
                EXAMPLE.replace("quorum = 1", "quorum = 0"),
                "approval.quorum",
            ),
            (
                EXAMPLE.replace("max_duration = \"1h\"", "max_duration = \"10m\""),
                "default_duration",
            ),
            (
                EXAMPLE.replace("\"^INC-[0-9]+$\"", "\"^INC-[\""),
                "incident_pattern",
            ),
            (
                EXAMPLE.replace("incident_pattern = \"^INC-[0-9]+$\"", ""),
                "incident_pattern",
            ),
            (
                EXAMPLE.replace("kind = \"token\"", "kind = \"telnet\""),
                "telnet",
            ),
            (EXAMPLE.replace("\"30m\"", "\"30 minutes\""), "30 minutes"),
            (EXAMPLE.replace("group:sre\"]", "team:sre\"]"), "team:sre"),
        ] {
            let msg = Role::parse("r.toml", &text).unwrap_err().to_string();
            assert!(msg.contains(needle), "{needle}: {msg}");
        }
    }

    #[test]
    fn postgres_targets_parse_and_refuse_unsafe_names() {
        let pg = EXAMPLE.replace(
            "kind = \"token\"\naudience = \"prod-db\"\nscope = [\"db:admin\"]",
            "kind = \"postgres\"\ndsn_env = \"LEDGER_ADMIN_DSN\"\nmode = \"login\"\ngrant = [\"ledger_reader\"]",
        );
        let r = Role::parse("r.toml", &pg).unwrap();
        assert_eq!(
            r.target,
            Target::Postgres {
                dsn_env: "LEDGER_ADMIN_DSN".into(),
                mode: PostgresMode::Login,
                grant: vec!["ledger_reader".into()],
            }
        );
        assert_eq!(r.target.kind(), "postgres");
        for (from, to, needle) in [
            (
                "\"ledger_reader\"",
                "\"x\\\"; DROP TABLE t; --\"",
                "target.grant",
            ),
            ("\"ledger_reader\"", "\"Ledger\"", "target.grant"),
            ("\"ledger_reader\"", "\"pg_read_all_data\"", "target.grant"),
            ("[\"ledger_reader\"]", "[]", "target.grant"),
            ("\"LEDGER_ADMIN_DSN\"", "\"postgres://x\"", "target.dsn_env"),
            ("mode = \"login\"", "mode = \"superuser\"", "superuser"),
            ("mode = \"login\"\n", "", "mode"),
            (
                "grant = [",
                "dsn = \"postgres://u:p@h/db\"\ngrant = [",
                "dsn",
            ),
        ] {
            let text = pg.replace(from, to);
            assert_ne!(text, pg, "{from}");
            let msg = Role::parse("r.toml", &text).unwrap_err().to_string();
            assert!(msg.contains(needle), "{needle}: {msg}");
        }
    }

    const EMERGENCY: &str =
        "[approval.emergency]\nallowed = true\nmax_duration = \"15m\"\nreview_within = \"24h\"\n";

    /// `EXAMPLE` with `extra` added at the end of its `[approval]` table.
    fn with_approval(extra: &str) -> String {
        EXAMPLE.replace("[request]", &format!("{extra}[request]"))
    }

    #[test]
    fn emergency_and_step_up_default_to_off() {
        let r = Role::parse("r.toml", EXAMPLE).unwrap();
        assert_eq!(r.emergency, None);
        assert!(!r.step_up_exempt_services);
    }

    #[test]
    fn emergency_self_activation_parses() {
        let text = with_approval(EMERGENCY);
        let r = Role::parse("r.toml", &text).unwrap();
        assert_eq!(
            r.emergency,
            Some(Emergency {
                max_duration: Duration::from_secs(900),
                review_within: Duration::from_secs(86_400),
                repeat_while_review_overdue: false,
            })
        );
        let text = with_approval(&format!("{EMERGENCY}repeat_while_review_overdue = true\n"));
        let r = Role::parse("r.toml", &text).unwrap();
        assert!(r.emergency.is_some_and(|e| e.repeat_while_review_overdue));
        // the content hash is still the hash of the file's bytes
        assert_eq!(r.hash, hex::encode(Sha256::digest(text.as_bytes())));
        // the emergency cap may equal the role's
        let text = with_approval(&EMERGENCY.replace("\"15m\"", "\"1h\""));
        assert!(Role::parse("r.toml", &text).unwrap().emergency.is_some());
    }

    #[test]
    fn emergency_switched_off_is_none_but_still_checked() {
        let off = EMERGENCY.replace("allowed = true", "allowed = false");
        let r = Role::parse("r.toml", &with_approval(&off)).unwrap();
        assert_eq!(r.emergency, None);
        let r = Role::parse("r.toml", &with_approval("[approval.emergency]\n")).unwrap();
        assert_eq!(r.emergency, None);
        let bad = off.replace("\"15m\"", "\"2h\"");
        let msg = Role::parse("r.toml", &with_approval(&bad))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("approval.emergency.max_duration"), "{msg}");
    }

    #[test]
    fn impossible_emergency_rules_are_refused_with_what_to_write() {
        for (text, key, hint) in [
            (
                EMERGENCY.replace("max_duration = \"15m\"\n", ""),
                "`approval.emergency.max_duration` is required",
                "max_duration = \"15m\"",
            ),
            (
                EMERGENCY.replace("review_within = \"24h\"\n", ""),
                "`approval.emergency.review_within` is required",
                "review_within = \"24h\"",
            ),
            (
                EMERGENCY.replace("\"15m\"", "\"2h\""),
                "`approval.emergency.max_duration` (`2h`) is longer than the role's `max_duration` (`1h`)",
                "write `max_duration = \"1h\"` or less",
            ),
            (
                EMERGENCY.replace("\"24h\"", "\"31d\""),
                "`approval.emergency.review_within` (`31d`) is longer than 30 days",
                "write `review_within = \"30d\"` or less",
            ),
            (
                EMERGENCY.replace("\"15m\"", "\"0s\""),
                "invalid duration `0s`",
                "max_duration",
            ),
            (EMERGENCY.replace("true", "\"yes\""), "allowed", ""),
        ] {
            let err = Role::parse("roles/x.toml", &with_approval(&text)).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.starts_with("role file `roles/x.toml` is invalid"),
                "{msg}"
            );
            assert!(msg.contains(key), "{key}: {msg}");
            assert!(
                msg.contains(hint) || err.help().contains(hint),
                "{hint}: {msg}"
            );
        }
        // 30 days is the longest review window
        let text = with_approval(&EMERGENCY.replace("\"24h\"", "\"30d\""));
        assert!(Role::parse("r.toml", &text).is_ok());
    }

    #[test]
    fn unknown_emergency_and_step_up_keys_name_the_file_and_key() {
        for (text, key) in [
            (
                with_approval(&format!("{EMERGENCY}review_in = \"1h\"\n")),
                "review_in",
            ),
            (
                with_approval(&format!("{EMERGENCY}approvers = []\n")),
                "approvers",
            ),
            (
                format!("{EXAMPLE}[step_up]\nexempt_service = true\n"),
                "exempt_service",
            ),
            (format!("{EXAMPLE}[step_up]\nrequired = true\n"), "required"),
        ] {
            let msg = Role::parse("roles/x.toml", &text).unwrap_err().to_string();
            assert!(msg.contains("`roles/x.toml`"), "{msg}");
            assert!(msg.contains(&format!("`{key}`")), "{key}: {msg}");
        }
    }

    #[test]
    fn step_up_exemption_for_services_parses() {
        let r = Role::parse(
            "r.toml",
            &format!("{EXAMPLE}[step_up]\nexempt_services = true\n"),
        )
        .unwrap();
        assert!(r.step_up_exempt_services);
        let r = Role::parse("r.toml", &format!("{EXAMPLE}[step_up]\n")).unwrap();
        assert!(!r.step_up_exempt_services);
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let err = RoleSet::parse([("a.toml", EXAMPLE), ("b.toml", EXAMPLE)]).unwrap_err();
        assert!(
            err.to_string().contains("already defined in `a.toml`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_role_is_named() {
        let set = RoleSet::parse([("a.toml", EXAMPLE)]).unwrap();
        let err = set.require("nope").unwrap_err();
        assert_eq!(err.to_string(), "unknown role `nope`");
    }
}
