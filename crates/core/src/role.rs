//! Break-glass role definitions, kept as code in `roles/*.toml` and parsed strictly: an unknown
//! key, a bad duration or an impossible quorum is an error naming the file and the key.

use std::collections::BTreeMap;

use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{DomainError, Duration, Name, Principal, Subject};

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
    target: Target,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalFile {
    quorum: u32,
    approvers: Vec<Subject>,
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
        let raw: RoleFile = toml::from_str(text).map_err(|e| invalid(one_line(&e.to_string())))?;
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
        let incident_pattern = match raw.request.incident_pattern {
            Some(p) => Some(Regex::new(&p).map_err(|e| {
                invalid(format!(
                    "key `request.incident_pattern` is not a valid regex: {}",
                    one_line(&e.to_string())
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
