//! The `postgres` provider: one temporary PostgreSQL login role per grant.
//!
//! For a grant, the target gets a role `bg_<grant uuid, 32 hex>` that can log in, holds no
//! attribute of its own (`NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS`), is a
//! member of the role file's `grant` roles (with `INHERIT`, so their privileges apply without a
//! `SET ROLE`), and carries a random password and `VALID UNTIL` the grant's end. The holder gets a
//! `postgres://` URI with that password, once.
//!
//! The security model:
//!
//! - The target ends access on its own (invariant 1): PostgreSQL refuses every login after
//!   `VALID UNTIL`, even if every broker is dead. `VALID UNTIL` only stops *new* logins, though: a
//!   session opened before the end stays up. So `revoke` also sets `NOLOGIN`, terminates the role's
//!   sessions and drops the role, and the reconciler revokes whatever the broker did not. If the
//!   drop fails (say the role owns objects in another database), the role is already `NOLOGIN`
//!   and its sessions are ended: the error is about cleanup, not about access.
//! - The plaintext password never reaches the server. It is 32 random bytes, hex-encoded; only its
//!   SCRAM-SHA-256 verifier, computed here with a random salt, is sent, so `log_statement = all`,
//!   `pg_stat_activity` and the server's error reports never show it (invariant 6).
//! - The admin DSN is read from the environment variable the role file names, at every call (roles
//!   may reload), and never leaves this module: not in an error, not in a log line, not in `Debug`.
//!   Connection pools are keyed by its SHA-256, and sqlx's statement logging is off (the statements
//!   carry password verifiers).
//! - `CREATE ROLE`, `GRANT` and `COMMENT` are utility statements and take no bind parameters, so
//!   every identifier is allow-listed (`bg_` + 32 hex for ours, [`is_allowed_pg_identifier`] for
//!   the role file's) and also quoted, and every literal is escaped.
//! - Each role's comment starts with this installation's marker, so `list` returns only roles
//!   this installation created, and `grant` never takes over a role of the same name that it did
//!   not create.
//!
//! The admin role needs `CREATEROLE`, the privileges of `pg_signal_backend` (to end sessions), and
//! on PostgreSQL 16 and later `ADMIN OPTION` on the granted roles; a superuser has all of these.
//! `REASSIGN OWNED` and `DROP OWNED` only reach the admin DSN's database: if a temporary role
//! created objects in another database of the cluster, `DROP ROLE` fails and says so.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr as _;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use breakglass_core::{
    GrantId, PostgresMode, Target, Timestamp, is_allowed_env_name, is_allowed_pg_identifier,
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use postgres_protocol::escape::{escape_identifier, escape_literal};
use sha2::{Digest, Sha256};
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _, PgPool, Postgres, Transaction};

use crate::token::fingerprint;
use crate::{GrantSpec, Issued, Presence, Provider, ProviderError, RevokeReport, Secret};

/// How long getting a connection to a target may take before the target counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The most one call may take at the target, connection included.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The prefix of every role this provider creates.
const ROLE_PREFIX: &str = "bg_";

/// What may stand unencoded in a URI's user, password, host or path segment: RFC 3986's
/// unreserved characters.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Looks up an environment variable; injectable so tests need no process-wide state.
type EnvLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Grants temporary login roles on PostgreSQL targets. One per installation; it keeps a small
/// connection pool per admin DSN.
pub struct PostgresProvider {
    marker: String,
    env: Box<EnvLookup>,
    pools: Mutex<HashMap<[u8; 32], PgPool>>,
}

impl fmt::Debug for PostgresProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresProvider")
            .field("marker", &self.marker)
            .finish_non_exhaustive()
    }
}

impl PostgresProvider {
    /// A provider reading admin DSNs from the process environment. `marker` names this
    /// installation (the server passes `breakglass:<key id>`): it starts the comment of every role
    /// created, and `list` returns only roles whose comment starts with it.
    pub fn new(marker: &str) -> Self {
        Self::with_env(marker, |name| std::env::var(name).ok())
    }

    /// A provider reading admin DSNs through `env` instead of the process environment.
    pub fn with_env(
        marker: &str,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            marker: marker.to_owned(),
            env: Box::new(env),
            pools: Mutex::new(HashMap::new()),
        }
    }

    pub fn marker(&self) -> &str {
        &self.marker
    }
}

#[async_trait]
impl Provider for PostgresProvider {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn grant_of(&self, handle: &str) -> Option<GrantId> {
        let (_, role) = parse_handle(handle).ok()?;
        let h = role.strip_prefix(ROLE_PREFIX)?;
        // `role_name` in reverse: the UUID's 32 hex digits, dashes put back.
        let uuid = format!(
            "{}-{}-{}-{}-{}",
            h.get(..8)?,
            h.get(8..12)?,
            h.get(12..16)?,
            h.get(16..20)?,
            h.get(20..)?
        );
        uuid.parse().ok()
    }

    fn list_key(&self, target: &Target) -> String {
        match target {
            Target::Postgres { dsn_env, .. } => format!("postgres/{dsn_env}"),
            other => other.kind().to_owned(),
        }
    }

    /// `<dsn_env>/bg_<grant uuid, 32 lowercase hex>`: where the role lives and its name. For a
    /// target of another kind the first part is empty, which no call accepts.
    fn handle(&self, spec: &GrantSpec<'_>) -> String {
        let dsn_env = match spec.target {
            Target::Postgres { dsn_env, .. } => dsn_env.as_str(),
            Target::Token { .. } => "",
        };
        format!("{dsn_env}/{}", role_name(spec.grant))
    }

    async fn grant(&self, spec: &GrantSpec<'_>) -> Result<Issued, ProviderError> {
        let Target::Postgres {
            dsn_env,
            mode: PostgresMode::Login,
            grant: members_of,
        } = spec.target
        else {
            return Err(ProviderError::WrongTarget {
                kind: "postgres",
                target: spec.target.kind(),
            });
        };
        if !is_allowed_env_name(dsn_env) {
            return Err(ProviderError::Target(format!(
                "environment variable name `{dsn_env}` is not allowed"
            )));
        }
        if let Some(bad) = members_of.iter().find(|g| !is_allowed_pg_identifier(g)) {
            return Err(ProviderError::Target(format!(
                "role name `{bad}` is not allowed in `grant`"
            )));
        }
        let role = role_name(spec.grant);
        let until = spec.expires_at.to_rfc3339();
        if until.starts_with('@') {
            return Err(ProviderError::Target(format!(
                "grant end `{}` ms is out of range",
                spec.expires_at.unix_millis()
            )));
        }
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| {
            ProviderError::Unreachable(format!("no randomness for a password: {e}"))
        })?;
        let password = hex::encode(raw);
        // INVARIANT(6): only this verifier goes to the server; the plaintext goes to the holder.
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        let conn = self.connect(dsn_env).await?;

        bounded(async {
            let mut tx = conn.pool.begin().await.map_err(|e| conn.unreachable(e))?;
            let missing: Vec<String> = sqlx::query_scalar(
                "SELECT r.name FROM unnest($1::text[]) AS r(name) \
                 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r.name) ORDER BY 1",
            )
            .bind(members_of)
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?;
            if !missing.is_empty() {
                return Err(ProviderError::Target(format!(
                    "{} not exist at the target: {}",
                    if missing.len() == 1 {
                        "role does"
                    } else {
                        "roles do"
                    },
                    missing
                        .iter()
                        .map(|m| format!("`{m}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let existing: Option<Option<String>> = sqlx::query_scalar(
                "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
            )
            .bind(&role)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
            let ours = format!("{} grant {} ", self.marker, spec.grant);
            let quoted = escape_identifier(&role);
            let attributes = format!(
                "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT \
                 PASSWORD {} VALID UNTIL {}",
                escape_literal(&verifier),
                escape_literal(&until)
            );
            // INVARIANT(1): the role carries the grant's end, which the server enforces on every
            // login without the broker. INVARIANT(8): a repeated grant finds the role and resets
            // its password and end instead of failing.
            let statement = match existing {
                None => format!("CREATE ROLE {quoted} WITH {attributes}"),
                Some(Some(comment)) if comment.starts_with(&ours) => {
                    format!("ALTER ROLE {quoted} WITH {attributes}")
                }
                Some(_) => {
                    return Err(ProviderError::Target(format!(
                        "role `{role}` exists at the target but was not created by this \
                         breakglass for grant `{}`; drop it or find out who made it",
                        spec.grant
                    )));
                }
            };
            execute(&mut tx, statement).await?;
            for member_of in members_of {
                execute(
                    &mut tx,
                    format!("GRANT {} TO {quoted}", escape_identifier(member_of)),
                )
                .await?;
            }
            execute(
                &mut tx,
                format!(
                    "COMMENT ON ROLE {quoted} IS {}",
                    escape_literal(&format!("{ours}for {}", spec.principal))
                ),
            )
            .await?;
            tx.commit().await.map_err(classify)
        })
        .await?;

        let credential = conn.credential_uri(&role, &password);
        Ok(Issued {
            fingerprint: fingerprint(&credential),
            handle: format!("{dsn_env}/{role}"),
            credential: Secret::new(credential),
        })
    }

    async fn revoke(&self, handle: &str) -> Result<(), ProviderError> {
        self.revoke_reporting(handle).await.map(|_| ())
    }

    async fn revoke_reporting(&self, handle: &str) -> Result<RevokeReport, ProviderError> {
        let (dsn_env, role) = parse_handle(handle)?;
        let conn = self.connect(dsn_env).await?;
        let ended = bounded(async {
            let Some(oid) = role_oid(&conn, role).await? else {
                return Ok(0);
            };
            match drop_role(&conn, role, oid).await {
                // Another revoke may have dropped the role between our steps: success too.
                Err(ProviderError::Target(e)) => match role_oid(&conn, role).await? {
                    None => Ok(0),
                    Some(_) => Err(ProviderError::Target(e)),
                },
                other => other,
            }
        })
        .await?;
        Ok(RevokeReport {
            sessions_ended: Some(ended),
        })
    }

    async fn check(&self, handle: &str, now: Timestamp) -> Result<Presence, ProviderError> {
        let (dsn_env, role) = parse_handle(handle)?;
        let conn = self.connect(dsn_env).await?;
        let usable: Option<bool> = bounded(async {
            sqlx::query_scalar(
                "SELECT rolcanlogin AND (rolvaliduntil IS NULL \
                 OR rolvaliduntil > to_timestamp($2::bigint::float8 / 1000)) \
                 FROM pg_roles WHERE rolname = $1",
            )
            .bind(role)
            .bind(now.unix_millis())
            .fetch_optional(&conn.pool)
            .await
            .map_err(|e| conn.classify(e))
        })
        .await?;
        Ok(if usable == Some(true) {
            Presence::Present
        } else {
            Presence::Absent
        })
    }

    async fn list(&self, target: &Target) -> Result<Vec<String>, ProviderError> {
        let Target::Postgres { dsn_env, .. } = target else {
            return Ok(Vec::new());
        };
        if !is_allowed_env_name(dsn_env) {
            return Err(ProviderError::Target(format!(
                "environment variable name `{dsn_env}` is not allowed"
            )));
        }
        let conn = self.connect(dsn_env).await?;
        let names: Vec<String> = bounded(async {
            sqlx::query_scalar(
                "SELECT rolname::text FROM pg_roles WHERE rolname LIKE 'bg\\_%' \
                 AND starts_with(shobj_description(oid, 'pg_authid'), $1) ORDER BY 1",
            )
            .bind(format!("{} grant ", self.marker))
            .fetch_all(&conn.pool)
            .await
            .map_err(|e| conn.classify(e))
        })
        .await?;
        Ok(names
            .into_iter()
            .filter(|n| is_role_name(n))
            .map(|n| format!("{dsn_env}/{n}"))
            .collect())
    }
}

/// An admin connection pool to one target, and what it needs to say about the target.
struct Conn {
    pool: PgPool,
    options: PgConnectOptions,
}

impl PostgresProvider {
    /// The pool for the admin DSN in `dsn_env`, made on first use. The DSN is read now, so a
    /// changed environment (or a reloaded role) takes effect without a restart.
    async fn connect(&self, dsn_env: &str) -> Result<Conn, ProviderError> {
        let dsn = (self.env)(dsn_env)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                ProviderError::Unreachable(format!(
                    "environment variable `{dsn_env}` is not set; set it to the admin DSN of the \
                     target"
                ))
            })?;
        // The parse error is not shown: it may quote part of the DSN.
        let options = PgConnectOptions::from_str(&dsn)
            .map_err(|_| {
                ProviderError::Unreachable(format!(
                    "environment variable `{dsn_env}` does not hold a valid \
                     `postgres://user:password@host:port/database` DSN"
                ))
            })?
            .options([("lock_timeout", "5s"), ("statement_timeout", "20s")])
            // The statements carry password verifiers; keep them out of the logs.
            .disable_statement_logging();
        let options = match options.get_application_name() {
            Some(_) => options,
            None => options.application_name("breakglass"),
        };
        let key: [u8; 32] = Sha256::digest(dsn.as_bytes()).into();
        let pool = {
            let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
            pools
                .entry(key)
                .or_insert_with(|| {
                    PgPoolOptions::new()
                        .max_connections(2)
                        .min_connections(0)
                        .acquire_timeout(CONNECT_TIMEOUT)
                        .idle_timeout(Duration::from_secs(60))
                        .connect_lazy_with(options.clone())
                })
                .clone()
        };
        Ok(Conn { pool, options })
    }
}

impl Conn {
    /// `host:port` (or the socket directory) of the target, for messages; holds no secret.
    fn place(&self) -> String {
        match self.options.get_socket() {
            Some(dir) => dir.display().to_string(),
            None => format!("{}:{}", self.options.get_host(), self.options.get_port()),
        }
    }

    /// An error while getting a connection: the target is down, refuses us or is misconfigured,
    /// and nothing was done.
    fn unreachable(&self, e: sqlx::Error) -> ProviderError {
        let why = match e {
            sqlx::Error::PoolTimedOut => format!("no connection within {CONNECT_TIMEOUT:?}"),
            sqlx::Error::Database(db) => db_message(&*db),
            other => other.to_string(),
        };
        ProviderError::Unreachable(format!("cannot connect to `{}`: {why}", self.place()))
    }

    /// An error from a one-statement call, where getting the connection is part of the call.
    fn classify(&self, e: sqlx::Error) -> ProviderError {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                self.unreachable(e)
            }
            // Refused at login (bad admin password, no such database): nothing was done.
            sqlx::Error::Database(ref db)
                if db
                    .code()
                    .is_some_and(|c| c.starts_with("28") || c == "3D000") =>
            {
                self.unreachable(e)
            }
            other => classify(other),
        }
    }

    /// The URI the holder logs in with: the admin DSN's host, port, database and TLS mode, with
    /// the temporary role and its password.
    fn credential_uri(&self, role: &str, password: &str) -> String {
        let o = &self.options;
        let host = match o.get_socket() {
            Some(dir) => utf8_percent_encode(&dir.to_string_lossy(), URI_COMPONENT).to_string(),
            None if o.get_host().contains(':') && !o.get_host().starts_with('[') => {
                format!("[{}]", o.get_host())
            }
            None => o.get_host().to_owned(),
        };
        // Without a database the server takes the user name, which for the holder is wrong.
        let database = o.get_database().unwrap_or(o.get_username());
        let mut uri = format!(
            "postgres://{}:{}@{host}:{}/{}",
            utf8_percent_encode(role, URI_COMPONENT),
            utf8_percent_encode(password, URI_COMPONENT),
            o.get_port(),
            utf8_percent_encode(database, URI_COMPONENT),
        );
        let ssl_mode = match o.get_ssl_mode() {
            PgSslMode::Prefer => None,
            PgSslMode::Disable => Some("disable"),
            PgSslMode::Allow => Some("allow"),
            PgSslMode::Require => Some("require"),
            PgSslMode::VerifyCa => Some("verify-ca"),
            PgSslMode::VerifyFull => Some("verify-full"),
        };
        if let Some(mode) = ssl_mode {
            uri.push_str("?sslmode=");
            uri.push_str(mode);
        }
        uri
    }
}

/// Ends every trace of `role`: no new logins, no live session, nothing owned, no role. Returns
/// how many of its sessions were ended.
async fn drop_role(conn: &Conn, role: &str, oid: Oid) -> Result<u32, ProviderError> {
    let quoted = escape_identifier(role);
    let mut c = conn.pool.acquire().await.map_err(|e| conn.unreachable(e))?;
    // Committed on its own first, so no session can start while the others are being ended.
    sqlx::raw_sql(AssertSqlSafe(format!("ALTER ROLE {quoted} NOLOGIN")))
        .execute(&mut *c)
        .await
        .map_err(classify)?;
    // INVARIANT(1): VALID UNTIL and NOLOGIN only stop new logins; the sessions still open are
    // ended here.
    let first = terminate_sessions(&mut c, oid).await?;
    let mut tx = c.begin().await.map_err(classify)?;
    execute(
        &mut tx,
        format!("REASSIGN OWNED BY {quoted} TO CURRENT_USER"),
    )
    .await?;
    execute(&mut tx, format!("DROP OWNED BY {quoted}")).await?;
    execute(&mut tx, format!("DROP ROLE IF EXISTS {quoted}")).await?;
    tx.commit().await.map_err(classify)?;
    // A session whose login was already past the password check when NOLOGIN committed may have
    // started after the first pass; it runs as a role that no longer exists, but end it too.
    let second = terminate_sessions(&mut c, oid).await?;
    Ok(first.saturating_add(second))
}

/// Ends the role's sessions; how many were ended.
async fn terminate_sessions(
    c: &mut sqlx::pool::PoolConnection<Postgres>,
    oid: Oid,
) -> Result<u32, ProviderError> {
    // Waits up to 5 s for each session to end (PostgreSQL 14 and later).
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
         WHERE usesysid = $1 AND pid <> pg_backend_pid()",
    )
    .bind(oid)
    .fetch_all(&mut **c)
    .await
    .map_err(classify)?;
    Ok(u32::try_from(ended.iter().filter(|e| **e).count()).unwrap_or(u32::MAX))
}

async fn role_oid(conn: &Conn, role: &str) -> Result<Option<Oid>, ProviderError> {
    sqlx::query_scalar("SELECT oid FROM pg_roles WHERE rolname = $1")
        .bind(role)
        .fetch_optional(&conn.pool)
        .await
        .map_err(|e| conn.classify(e))
}

/// Runs one utility statement, built from allow-listed, quoted identifiers and escaped literals
/// only (utility statements take no bind parameters). The simple protocol keeps it out of the
/// connection's prepared-statement cache.
async fn execute(tx: &mut Transaction<'_, Postgres>, sql: String) -> Result<(), ProviderError> {
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
    Ok(())
}

/// Bounds a whole call, so a target that stops answering mid-call cannot hang the broker.
async fn bounded<T>(
    call: impl Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(ProviderError::Unreachable(format!(
                "the target did not answer within {CALL_TIMEOUT:?}"
            )))
        })
}

/// An error from a statement. The server's message names objects but holds no secret: no
/// statement text is ever quoted back, and the password is not in any statement.
fn classify(e: sqlx::Error) -> ProviderError {
    match e {
        sqlx::Error::Database(db) => {
            let message = db_message(&*db);
            if db.code().is_some_and(|c| is_transient(&c)) {
                ProviderError::Unreachable(message)
            } else {
                ProviderError::Target(message)
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => ProviderError::Unreachable(e.to_string()),
        other => ProviderError::Target(other.to_string()),
    }
}

fn db_message(db: &dyn sqlx::error::DatabaseError) -> String {
    match db.code() {
        Some(code) => format!("{} (SQLSTATE {code})", db.message()),
        None => db.message().to_owned(),
    }
}

/// SQLSTATEs after which the same call may succeed later: the connection or the server went
/// away, a resource ran out, a lock or statement timed out, or a concurrent call on the same role
/// won a race (a repeated call then finds its result).
fn is_transient(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57")
        || code.starts_with("58")
        || matches!(code, "40001" | "40P01" | "55P03" | "42710" | "23505")
}

/// The role for a grant: `bg_` and the grant's UUID as 32 lowercase hex digits (35 bytes, within
/// PostgreSQL's 63).
fn role_name(grant: GrantId) -> String {
    format!("{ROLE_PREFIX}{}", grant.to_string().replace('-', ""))
}

fn is_role_name(s: &str) -> bool {
    s.strip_prefix(ROLE_PREFIX).is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Parses `<dsn_env>/bg_<32 hex>`, both parts allow-listed, before anything reaches SQL.
fn parse_handle(handle: &str) -> Result<(&str, &str), ProviderError> {
    let bad = || ProviderError::BadHandle(handle.chars().take(80).collect());
    let (dsn_env, role) = handle.split_once('/').ok_or_else(bad)?;
    if !is_allowed_env_name(dsn_env) || !is_role_name(role) || !is_allowed_pg_identifier(role) {
        return Err(bad());
    }
    Ok((dsn_env, role))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_names_its_grant() {
        let p = PostgresProvider::new("breakglass:test");
        let id: GrantId = "0ac8f1bc-956b-4857-8589-7cadc1964ef2".parse().unwrap();
        let handle = format!("LEDGER_DSN/{}", role_name(id));
        assert_eq!(p.grant_of(&handle), Some(id));
        assert_eq!(p.grant_of("LEDGER_DSN/bg_abab"), None);
        assert_eq!(p.grant_of("nonsense"), None);
    }

    fn conn(dsn: &str) -> Conn {
        let options = PgConnectOptions::from_str(dsn).unwrap();
        Conn {
            pool: PgPoolOptions::new().connect_lazy_with(options.clone()),
            options,
        }
    }

    #[test]
    fn handles_round_trip_and_refuse_anything_else() {
        let grant = GrantId::from_bytes([0xab; 16]);
        let role = role_name(grant);
        assert_eq!(role.len(), 35);
        assert!(is_role_name(&role));
        let handle = format!("LEDGER_ADMIN_DSN/{role}");
        assert_eq!(
            parse_handle(&handle).unwrap(),
            ("LEDGER_ADMIN_DSN", role.as_str())
        );
        for bad in [
            "",
            "LEDGER_ADMIN_DSN",
            "/bg_abababababababababababababababab",
            "ledger/bg_abababababababababababababababab",
            "A/bg_ABABABABABABABABABABABABABABABAB",
            "A/bg_abab",
            "A/pg_abababababababababababababababab",
            "A/B/bg_abababababababababababababababab",
            "X/bg_x\"; drop role postgres; --",
        ] {
            assert!(
                matches!(parse_handle(bad), Err(ProviderError::BadHandle(_))),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn credential_uri_keeps_the_place_and_replaces_the_user() {
        let c = conn("postgres://admin:s3cret@db.example:6543/ledger?sslmode=require");
        assert_eq!(
            c.credential_uri("bg_1", "p"),
            "postgres://bg_1:p@db.example:6543/ledger?sslmode=require"
        );
        let c = conn("postgres://admin:s3cret@[::1]/ledger");
        assert_eq!(
            c.credential_uri("bg_1", "p"),
            "postgres://bg_1:p@[::1]:5432/ledger"
        );
        let c = conn("postgres://admin@%2Frun%2Fpostgresql/ledger");
        assert_eq!(
            c.credential_uri("bg_1", "p"),
            "postgres://bg_1:p@%2Frun%2Fpostgresql:5432/ledger"
        );
        let c = conn("postgres://admin@db.example");
        assert_eq!(
            c.credential_uri("bg_1", "p"),
            "postgres://bg_1:p@db.example:5432/admin"
        );
        assert_eq!(c.place(), "db.example:5432");
    }
}
