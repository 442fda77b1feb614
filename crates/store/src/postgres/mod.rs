//! The shared PostgreSQL store: any number of broker processes ("replicas") use one database at
//! once, with no leader and no coordination between them except the database itself.
//!
//! Every write is one `READ COMMITTED` transaction on a pooled connection. How the writes of many
//! replicas stay correct:
//!
//! - Each write takes the row locks it needs on state tables first and the single `audit_head` row
//!   (`SELECT … FOR UPDATE`) last, right before appending its events. Appends are therefore
//!   ordered across every replica, `seq` is gapless, and a transaction that rolls back leaves no
//!   gap. Because the head is always the last lock taken and nothing waits while holding it, the
//!   writes cannot deadlock one another.
//! - `update_grant` names the version it read (`WHERE id = $ AND version = $`); READ COMMITTED
//!   re-checks that condition once a lock wait ends, so of two replicas racing on one grant
//!   exactly one updates it and the other gets [`StoreError::Conflict`].
//! - `deliver_credential` locks the grant row before anything else, so a credential is handed
//!   over once across replicas; `initialize` and `add_secrets` claim their first `meta` key with
//!   `ON CONFLICT DO NOTHING`, which waits for a racing insert of the same key and then sees it.
//! - A serialization failure or deadlock (SQLSTATE 40001, 40P01: possible only if the database is
//!   configured unusually, for example with a stricter default isolation) is retried a few times
//!   at once; if it keeps happening the write fails with [`StoreError::Conflict`], which callers
//!   already treat as "reload and try again".
//!
//! Sessions run with `idle_in_transaction_session_timeout`, so a replica that vanishes in the
//! middle of a transaction (a host lost without closing its sockets) cannot hold the audit head,
//! and with it every other replica's writes, for longer than that.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::str::FromStr;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use breakglass_audit::{Frontier, Hash, NodeId, leaf_hash};
use breakglass_core::{
    AuditEvent, CredentialFacts, DomainError, EventDraft, Grant, GrantId, Principal, PrincipalKind,
    StateKind, Timestamp,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions as _, Connection as _, PgConnection, PgPool, Row as _};

use crate::{
    ApiToken, AuditSnapshot, AuditVisitor, ChannelBacklog, Delivery, NewCredential, Result,
    RoleRecord, SealedCredential, Store, StoreError, StoredCheckpoint, StoredGrant,
};

mod alerts;
mod auth;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per process: writes hold one only for their transaction.
const MAX_CONNECTIONS: u32 = 8;
/// How long a call waits for a pooled connection (or a new one) before failing as unavailable.
const ACQUIRE_TIMEOUT: StdDuration = StdDuration::from_secs(5);
/// How long `open` waits for the first connection: a database that does not answer is a fast,
/// clear error rather than a hang.
const CONNECT_TIMEOUT: StdDuration = StdDuration::from_secs(5);
/// How many times one write is tried when PostgreSQL reports a serialization failure or deadlock.
const MAX_ATTEMPTS: u32 = 5;
/// The longest a session may sit idle inside a transaction before the server ends it (and so
/// releases its locks, the audit head's included). No write here waits on anything but the
/// database while its transaction is open.
const IDLE_IN_TRANSACTION_TIMEOUT: &str = "30s";

/// The PostgreSQL store. Cloning shares the pool.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…` or `postgresql://…`, `sslmode=require` works), applies
    /// the migrations and checks that the audit tree covers the log.
    ///
    /// Several processes may open the same database at once: the migrator holds a PostgreSQL
    /// advisory lock while it runs, so the others wait and then find nothing left to do.
    pub async fn open(url: &str) -> Result<Self> {
        let opts = connect_options(url)?;
        // One plain connection first: a database that is down fails here at once, where the pool
        // would keep retrying a refused connection until its acquire timeout.
        let _ = connect_once(&opts).await?.close().await;
        let pool = pool(opts);
        let ready = async {
            MIGRATOR.run(&pool).await?;
            check_tree(&pool).await
        };
        if let Err(e) = ready.await {
            // Closing also ends the session that may still hold the migrator's lock.
            pool.close().await;
            return Err(e);
        }
        Ok(Self { pool })
    }

    /// Opens an existing database without changing anything in it (no migrations, every session
    /// read-only): for `audit verify`, which must not touch what it checks. A database without
    /// the breakglass schema is [`StoreError::NotInitialized`].
    pub async fn open_read_only(url: &str) -> Result<Self> {
        let opts = connect_options(url)?.options([("default_transaction_read_only", "on")]);
        let mut conn = connect_once(&opts).await?;
        let present: bool = sqlx::query_scalar("SELECT to_regclass('audit_head') IS NOT NULL")
            .fetch_one(&mut conn)
            .await?;
        let _ = conn.close().await;
        if !present {
            return Err(StoreError::NotInitialized);
        }
        Ok(Self { pool: pool(opts) })
    }

    /// Closes every connection once the calls using them are done.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs `work` in one transaction and commits it, trying again from the start (a fresh
    /// transaction) when PostgreSQL reports a serialization failure or a deadlock. `work` hands
    /// the transaction back with its result to have it committed; on an error it drops it, which
    /// rolls it back.
    async fn write<T, F, Fut>(&self, mut work: F) -> Result<T>
    where
        F: FnMut(Tx) -> Fut,
        Fut: Future<Output = Result<(Tx, T)>>,
    {
        let mut attempt = 1;
        loop {
            let tx = self
                .pool
                .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
                .await?;
            let outcome = match work(tx).await {
                Ok((tx, value)) => tx.commit().await.map(|()| value).map_err(StoreError::from),
                Err(e) => Err(e),
            };
            match outcome {
                Err(e) if is_retryable(&e) => {
                    if attempt >= MAX_ATTEMPTS {
                        tracing::warn!(attempts = attempt, error = %e, "write kept conflicting");
                        return Err(StoreError::Conflict);
                    }
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }
}

type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// Whether PostgreSQL refused this transaction only because of a concurrent one (serialization
/// failure, deadlock): running it again from the start is correct.
fn is_retryable(e: &StoreError) -> bool {
    let StoreError::Database(sqlx::Error::Database(d)) = e else {
        return false;
    };
    d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some_and(|pg| matches!(pg.code(), "40001" | "40P01"))
}

/// Whether a PostgreSQL SQLSTATE means the server cannot be used at all right now (as opposed
/// to refusing one statement): connection exceptions (class 08), an administrator shutdown or a
/// server that is starting (57P01-57P03), exhausted resources such as too many connections or a
/// full disk (class 53), and a server that is read-only (25006: a hot standby after a fail-over,
/// or a store opened read-only).
pub(crate) fn is_unavailable_code(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "57P01" | "57P02" | "57P03" | "25006")
}

fn connect_options(url: &str) -> Result<PgConnectOptions> {
    Ok(PgConnectOptions::from_str(url)?
        .application_name("breakglass")
        .options([(
            "idle_in_transaction_session_timeout",
            IDLE_IN_TRANSACTION_TIMEOUT,
        )]))
}

/// One connection, given up after [`CONNECT_TIMEOUT`]. (The pool would keep retrying a refused
/// connection until its acquire timeout; the first contact should fail at once instead.)
async fn connect_once(opts: &PgConnectOptions) -> Result<PgConnection> {
    match tokio::time::timeout(CONNECT_TIMEOUT, opts.connect()).await {
        Ok(conn) => Ok(conn?),
        Err(_) => Err(StoreError::Database(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no answer from PostgreSQL within {} s",
                CONNECT_TIMEOUT.as_secs()
            ),
        )))),
    }
}

fn pool(opts: PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_lazy_with(opts)
}

/// Refuses a database whose tree head does not describe its log (the tree was damaged or reset),
/// rather than appending to it. One statement, so one snapshot: appends change both together.
async fn check_tree(pool: &PgPool) -> Result<()> {
    let (size, next): (Option<i64>, i64) = sqlx::query_as(
        "SELECT (SELECT size FROM audit_head WHERE id = 1),
                (SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_log)",
    )
    .fetch_one(pool)
    .await?;
    let Some(size) = size else {
        return Err(StoreError::Corrupt(
            "the audit head row is missing; run `breakglass audit verify` and restore from backup"
                .into(),
        ));
    };
    if size != next {
        return Err(StoreError::Corrupt(format!(
            "the audit tree covers {size} events but the log holds {next}: the tree was damaged or reset; run `breakglass audit verify` and restore from backup"
        )));
    }
    Ok(())
}

/// Appends `events` at the end of the log inside the caller's transaction: their canonical
/// bytes, the subtree hashes they complete, and the new head.
// INVARIANT(2): every state-changing call below appends its events through this function in the
// same transaction as the change; if an insert fails, the whole write is rolled back.
// INVARIANT(4): each event's bytes are hashed into the Merkle tree as they are written; the bytes
// are never re-serialised afterwards, so any later edit, deletion or reordering changes a root.
async fn append_in(tx: &mut PgConnection, events: &[EventDraft], now: Timestamp) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    // The lock that orders appends across replicas, held until the caller commits.
    let row = sqlx::query("SELECT size, frontier FROM audit_head WHERE id = 1 FOR UPDATE")
        .fetch_one(&mut *tx)
        .await?;
    let mut frontier = frontier_from_row(&row)?;
    let mut seqs = Vec::with_capacity(events.len());
    let mut types = Vec::with_capacity(events.len());
    let mut grants = Vec::with_capacity(events.len());
    let mut bytes = Vec::with_capacity(events.len());
    let mut levels = Vec::new();
    let mut indexes = Vec::new();
    let mut hashes = Vec::new();
    for e in events {
        let seq = frontier.size();
        let encoded = e.encode(seq, now);
        for (id, h) in frontier.append(leaf_hash(&encoded.bytes)) {
            levels.push(i32::from(id.level));
            indexes.push(to_i64(id.index)?);
            hashes.push(h.0.to_vec());
        }
        seqs.push(to_i64(seq)?);
        types.push(encoded.type_name);
        grants.push(e.grant.map(|g| g.to_string()));
        bytes.push(encoded.bytes);
    }
    let head: Vec<u8> = frontier.hashes().iter().flat_map(|h| h.0).collect();
    // One statement for the rows, the hashes and the head: the head is held for as few round
    // trips as possible, since every replica's appends wait for it.
    sqlx::query(
        "WITH log AS (
             INSERT INTO audit_log (seq, type, grant_id, time, bytes)
             SELECT seq, type, grant_id, $5, bytes
             FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bytea[])
                  AS e(seq, type, grant_id, bytes)
         ), tree AS (
             INSERT INTO audit_hashes (level, idx, hash)
             SELECT * FROM UNNEST($6::integer[], $7::bigint[], $8::bytea[])
         )
         UPDATE audit_head SET size = $9, frontier = $10 WHERE id = 1",
    )
    .bind(seqs)
    .bind(types)
    .bind(grants)
    .bind(bytes)
    .bind(now.unix_millis())
    .bind(levels)
    .bind(indexes)
    .bind(hashes)
    .bind(to_i64(frontier.size())?)
    .bind(head)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn to_i64(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| StoreError::Corrupt("audit position overflow".into()))
}

fn to_u64(n: i64, what: &str) -> Result<u64> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative {what}")))
}

fn frontier_from_row(row: &PgRow) -> Result<Frontier> {
    let size: i64 = row.try_get("size")?;
    let blob: Vec<u8> = row.try_get("frontier")?;
    let hashes = blob.chunks(32).filter_map(Hash::from_slice).collect();
    Frontier::from_parts(to_u64(size, "audit size")?, hashes)
        .ok_or_else(|| StoreError::Corrupt("audit head frontier does not match its size".into()))
}

async fn load_head(conn: &mut PgConnection) -> Result<Frontier> {
    let row = sqlx::query("SELECT size, frontier FROM audit_head WHERE id = 1")
        .fetch_one(&mut *conn)
        .await?;
    frontier_from_row(&row)
}

fn event_from_row(row: &PgRow) -> Result<AuditEvent> {
    Ok(AuditEvent {
        seq: to_u64(row.try_get("seq")?, "audit seq")?,
        bytes: row.try_get("bytes")?,
    })
}

fn checkpoint_from_row(row: &PgRow) -> Result<StoredCheckpoint> {
    Ok(StoredCheckpoint {
        size: to_u64(row.try_get("size")?, "checkpoint size")?,
        note: row.try_get("note")?,
        signed_at: Timestamp::from_unix_millis(row.try_get("signed_at")?),
    })
}

fn principal_from_row(row: &PgRow) -> Result<Principal> {
    let name: String = row.try_get("name")?;
    let kind: String = row.try_get("kind")?;
    let groups: String = row.try_get("groups")?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("principal `{name}`: {what}"));
    Ok(Principal {
        name: name.parse().map_err(|_| corrupt("bad name"))?,
        kind: match kind.as_str() {
            "human" => PrincipalKind::Human,
            "service" => PrincipalKind::Service,
            _ => return Err(corrupt("bad kind")),
        },
        groups: serde_json::from_str(&groups).map_err(|_| corrupt("bad groups"))?,
        disabled: row.try_get("disabled")?,
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
    })
}

fn token_from_row(row: &PgRow) -> Result<ApiToken> {
    let hash: Vec<u8> = row.try_get("secret_hash")?;
    Ok(ApiToken {
        id: row.try_get("id")?,
        principal: row.try_get("principal")?,
        secret_hash: hash
            .try_into()
            .map_err(|_| StoreError::Corrupt("token hash is not 32 bytes".into()))?,
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
        expires_at: Timestamp::from_unix_millis(row.try_get("expires_at")?),
        revoked_at: row
            .try_get::<Option<i64>, _>("revoked_at")?
            .map(Timestamp::from_unix_millis),
        kind: crate::TokenKind::parse(&row.try_get::<String, _>("kind")?)?,
        scopes: crate::scopes_from_sql(row.try_get("scopes")?)?,
        stepped_up_at: row
            .try_get::<Option<i64>, _>("stepped_up_at")?
            .map(Timestamp::from_unix_millis),
    })
}

fn grant_from_row(row: &PgRow) -> Result<StoredGrant> {
    let body: String = row.try_get("body")?;
    let grant: Grant =
        serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(format!("grant body: {e}")))?;
    Ok(StoredGrant {
        grant,
        version: row.try_get("version")?,
    })
}

fn role_from_row(r: &PgRow) -> Result<RoleRecord> {
    Ok(RoleRecord {
        id: r.try_get("id")?,
        hash: r.try_get("hash")?,
        file: r.try_get("file")?,
    })
}

fn grant_body(g: &Grant) -> Result<String> {
    serde_json::to_string(g).map_err(|e| StoreError::Corrupt(format!("grant body: {e}")))
}

const PRINCIPAL_COLUMNS: &str = "SELECT name, kind, groups, disabled, created_at FROM principals";
const TOKEN_COLUMNS: &str = "SELECT id, principal, secret_hash, created_at, expires_at, revoked_at, kind, scopes, stepped_up_at FROM api_tokens";
const GRANT_COLUMNS: &str = "SELECT body, version FROM grants";
const EVENT_COLUMNS: &str = "SELECT seq, bytes FROM audit_log";

#[async_trait]
impl Store for PostgresStore {
    async fn initialized(&self) -> Result<bool> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM meta WHERE key = 'initialized')")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn initialize(
        &self,
        admin: &Principal,
        token: &ApiToken,
        secrets: &[(&str, Vec<u8>)],
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()> {
        self.write(|mut tx| async move {
            // The marker first: a second process initialising at the same moment waits here for
            // this transaction, then finds the key taken.
            let claimed = sqlx::query(
                "INSERT INTO meta (key, value) VALUES ('initialized', $1) ON CONFLICT (key) DO NOTHING",
            )
            .bind(now.unix_millis().to_string().into_bytes())
            .execute(&mut *tx)
            .await?;
            if claimed.rows_affected() == 0 {
                return Err(StoreError::AlreadyInitialized);
            }
            insert_secrets(&mut tx, secrets).await?;
            insert_principal(&mut tx, admin).await?;
            insert_token(&mut tx, token).await?;
            append_in(&mut tx, events, now).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn secret(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(format!("secret:{name}"))
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn create_principal(
        &self,
        p: &Principal,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()> {
        self.write(|mut tx| async move {
            insert_principal(&mut tx, p).await?;
            append_in(&mut tx, events, now).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn principal(&self, name: &str) -> Result<Option<Principal>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{PRINCIPAL_COLUMNS} WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(principal_from_row).transpose()
    }

    async fn principals(&self) -> Result<Vec<Principal>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{PRINCIPAL_COLUMNS} ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(principal_from_row).collect()
    }

    async fn create_token(
        &self,
        t: &ApiToken,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()> {
        self.write(|mut tx| async move {
            insert_token(&mut tx, t).await?;
            append_in(&mut tx, events, now).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn token(&self, id: &str) -> Result<Option<ApiToken>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{TOKEN_COLUMNS} WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn tokens(&self) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{TOKEN_COLUMNS} ORDER BY created_at, id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, id: &str, events: &[EventDraft], now: Timestamp) -> Result<bool> {
        self.write(|mut tx| async move {
            let done = sqlx::query(
                "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            )
            .bind(now.unix_millis())
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok((tx, false));
            }
            append_in(&mut tx, events, now).await?;
            Ok((tx, true))
        })
        .await
    }

    async fn step_up(&self, id: &str, events: &[EventDraft], now: Timestamp) -> Result<bool> {
        self.step_up_in(id, events, now).await
    }

    async fn set_disabled(
        &self,
        name: &str,
        disabled: bool,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool> {
        self.set_disabled_in(name, disabled, events, now).await
    }

    async fn login(&self, principal: &str) -> Result<Option<crate::StoredLogin>> {
        self.login_in(principal).await
    }

    async fn put_login(
        &self,
        principal: &str,
        body: &str,
        expected: Option<i64>,
        revoke_sessions: bool,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()> {
        self.put_login_in(principal, body, expected, revoke_sessions, events, now)
            .await
    }

    async fn throttles(&self, subjects: &[String]) -> Result<Vec<crate::ThrottleState>> {
        self.throttles_in(subjects).await
    }

    async fn record_auth_failure(
        &self,
        subjects: &[(String, crate::ThrottlePolicy)],
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<Vec<crate::ThrottleState>> {
        self.record_auth_failure_in(subjects, events, now).await
    }

    async fn clear_auth_failures(&self, subject: &str) -> Result<()> {
        self.clear_auth_failures_in(subject).await
    }

    async fn grants_for(&self, role: &str, requester: &str) -> Result<Vec<StoredGrant>> {
        self.grants_for_in(role, requester).await
    }

    async fn roles(&self) -> Result<Vec<RoleRecord>> {
        let rows = sqlx::query("SELECT id, hash, file FROM roles ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        let mut roles = rows.iter().map(role_from_row).collect::<Result<Vec<_>>>()?;
        roles.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(roles)
    }

    async fn record_roles(
        &self,
        previous: &[RoleRecord],
        current: &[RoleRecord],
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool> {
        let mut previous = previous.to_vec();
        previous.sort_by(|a, b| a.id.cmp(&b.id));
        let previous = &previous;
        self.write(|mut tx| async move {
            // Two replicas replacing the records at once would each delete only the rows their
            // statement saw and then collide on insert: take turns instead (reads still go on).
            sqlx::query("LOCK TABLE roles IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
            // Whoever went first already recorded these changes: write nothing, and let the
            // caller work out what (if anything) is still to record.
            let rows = sqlx::query("SELECT id, hash, file FROM roles")
                .fetch_all(&mut *tx)
                .await?;
            let mut stored = rows.iter().map(role_from_row).collect::<Result<Vec<_>>>()?;
            stored.sort_by(|a, b| a.id.cmp(&b.id));
            if &stored != previous {
                return Ok((tx, false));
            }
            sqlx::query("DELETE FROM roles").execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO roles (id, hash, file, loaded_at)
                 SELECT id, hash, file, $4 FROM UNNEST($1::text[], $2::text[], $3::text[])
                 AS r(id, hash, file)",
            )
            .bind(current.iter().map(|r| r.id.as_str()).collect::<Vec<_>>())
            .bind(current.iter().map(|r| r.hash.as_str()).collect::<Vec<_>>())
            .bind(current.iter().map(|r| r.file.as_str()).collect::<Vec<_>>())
            .bind(now.unix_millis())
            .execute(&mut *tx)
            .await?;
            append_in(&mut tx, events, now).await?;
            Ok((tx, true))
        })
        .await
    }

    async fn insert_grant(&self, g: &Grant, events: &[EventDraft], now: Timestamp) -> Result<()> {
        let body = &grant_body(g)?;
        self.write(|mut tx| async move {
            sqlx::query(
                "INSERT INTO grants (id, role, requester, state, requested_at, expires_at, version, body)
                 VALUES ($1, $2, $3, $4, $5, $6, 1, $7)",
            )
            .bind(g.id.to_string())
            .bind(g.role.as_str())
            .bind(g.requester.as_str())
            .bind(g.state.name())
            .bind(g.requested_at.unix_millis())
            .bind(g.expires_at().map(Timestamp::unix_millis))
            .bind(body)
            .execute(&mut *tx)
            .await?;
            append_in(&mut tx, events, now).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn update_grant(
        &self,
        g: &Grant,
        expected_version: i64,
        credential: Option<&NewCredential>,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<StoredGrant> {
        let body = &grant_body(g)?;
        let id = &g.id.to_string();
        self.write(|mut tx| async move {
            // The row lock this takes is held to the end: a racing update waits, then finds the
            // version moved on and matches nothing.
            let done = sqlx::query(
                "UPDATE grants SET state = $1, expires_at = $2, version = version + 1, body = $3
                 WHERE id = $4 AND version = $5",
            )
            .bind(g.state.name())
            .bind(g.expires_at().map(Timestamp::unix_millis))
            .bind(body)
            .bind(id)
            .bind(expected_version)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict);
            }
            if let Some(c) = credential {
                // The grant row is locked, so no other write picks the same serial.
                sqlx::query(
                    "INSERT INTO credentials (grant_id, serial, fingerprint, ciphertext, issued_at)
                     VALUES ($1, (SELECT COALESCE(MAX(serial) + 1, 1) FROM credentials WHERE grant_id = $1), $2, $3, $4)",
                )
                .bind(id)
                .bind(&c.fingerprint)
                .bind(c.ciphertext.as_slice())
                .bind(now.unix_millis())
                .execute(&mut *tx)
                .await?;
            }
            if g.state.is_ended() || g.state.name() == "revoking" {
                // INVARIANT(6): a credential nobody collected is not kept past its grant.
                sqlx::query(
                    "UPDATE credentials SET ciphertext = NULL
                     WHERE grant_id = $1 AND ciphertext IS NOT NULL",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            append_in(&mut tx, events, now).await?;
            // The row matched `version = expected_version` and the update moved it on by one.
            let stored = StoredGrant {
                grant: g.clone(),
                version: expected_version + 1,
            };
            Ok((tx, stored))
        })
        .await
    }

    async fn grant(&self, id: GrantId) -> Result<Option<StoredGrant>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{GRANT_COLUMNS} WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    async fn grants(&self, state: Option<StateKind>, limit: u32) -> Result<Vec<StoredGrant>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{GRANT_COLUMNS} WHERE ($1::text IS NULL OR state = $1)
             ORDER BY requested_at DESC, id LIMIT $2"
        )))
        .bind(state.map(StateKind::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn grant_counts(&self) -> Result<BTreeMap<StateKind, u64>> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM grants GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let n: i64 = r.try_get("n")?;
                let state = crate::parse_state(&r.try_get::<String, _>("state")?)?;
                Ok((state, to_u64(n, "count")?))
            })
            .collect()
    }

    async fn grants_in_states(&self, states: &[StateKind]) -> Result<Vec<StoredGrant>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{GRANT_COLUMNS} WHERE state = ANY($1) ORDER BY requested_at, id"
        )))
        .bind(crate::state_names(states))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn due_for_expiry(&self, now: Timestamp) -> Result<Vec<StoredGrant>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{GRANT_COLUMNS} WHERE state = 'active' AND expires_at <= $1 ORDER BY expires_at, id"
        )))
        .bind(now.unix_millis())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn requested_before(&self, cutoff: Timestamp) -> Result<Vec<StoredGrant>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{GRANT_COLUMNS} WHERE state = 'requested' AND requested_at <= $1
             ORDER BY requested_at, id"
        )))
        .bind(cutoff.unix_millis())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn deliver_credential(
        &self,
        id: GrantId,
        to: &Principal,
        now: Timestamp,
    ) -> Result<SealedCredential> {
        let grant_id = &id.to_string();
        self.write(|mut tx| async move {
            // Locking the grant row first makes delivery exactly-once across replicas: a second
            // delivery waits here, then finds the ciphertext gone.
            let row = sqlx::query("SELECT body, version FROM grants WHERE id = $1 FOR UPDATE")
                .bind(grant_id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else {
                return Err(DomainError::UnknownGrant {
                    grant: grant_id.clone(),
                }
                .into());
            };
            let grant = grant_from_row(&row)?.grant;
            let row = sqlx::query(
                "SELECT serial, fingerprint, ciphertext FROM credentials
                 WHERE grant_id = $1 ORDER BY serial DESC LIMIT 1",
            )
            .bind(grant_id)
            .fetch_optional(&mut *tx)
            .await?;
            let latest = match &row {
                Some(r) => Some((
                    r.try_get::<i64, _>("serial")?,
                    r.try_get::<String, _>("fingerprint")?,
                    r.try_get::<Option<Vec<u8>>, _>("ciphertext")?,
                )),
                None => None,
            };
            let facts = latest
                .as_ref()
                .map(|(_, fingerprint, ciphertext)| CredentialFacts {
                    fingerprint: fingerprint.clone(),
                    delivered: ciphertext.is_none(),
                });
            // The core decides; this transaction applies its decision.
            let event = grant.deliver_credential(to, facts.as_ref(), now)?;
            let Some((serial, fingerprint, Some(ciphertext))) = latest else {
                return Err(StoreError::Corrupt(
                    "credential vanished while delivered".into(),
                ));
            };
            sqlx::query(
                "UPDATE credentials SET ciphertext = NULL, delivered_at = $1, delivered_to = $2
                 WHERE grant_id = $3 AND serial = $4",
            )
            .bind(now.unix_millis())
            .bind(to.name.as_str())
            .bind(grant_id)
            .bind(serial)
            .execute(&mut *tx)
            .await?;
            append_in(&mut tx, &[event], now).await?;
            let sealed = SealedCredential {
                fingerprint,
                ciphertext,
                // Read under the row lock: the end this credential carries.
                expires_at: grant.expires_at(),
            };
            Ok((tx, sealed))
        })
        .await
    }

    async fn append(&self, events: &[EventDraft], now: Timestamp) -> Result<()> {
        self.write(|mut tx| async move {
            append_in(&mut tx, events, now).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn audit_tail(&self, n: u32) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT seq, bytes FROM ({EVENT_COLUMNS} ORDER BY seq DESC LIMIT $1) AS tail ORDER BY seq"
        )))
        .bind(i64::from(n))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn audit_size(&self) -> Result<u64> {
        // `seq` is gapless from 0, so this equals COUNT(*) but reads one index entry instead of
        // the whole log (health checks call this often).
        let n: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_log")
            .fetch_one(&self.pool)
            .await?;
        to_u64(n, "count")
    }

    async fn audit_events(&self, from: u64, limit: u32) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{EVENT_COLUMNS} WHERE seq >= $1 ORDER BY seq LIMIT $2"
        )))
        .bind(to_i64(from)?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn audit_head(&self) -> Result<(u64, Hash)> {
        let mut conn = self.pool.acquire().await?;
        let f = load_head(&mut conn).await?;
        Ok((f.size(), f.root()))
    }

    async fn audit_hashes(&self, ids: &BTreeSet<NodeId>) -> Result<BTreeMap<NodeId, Hash>> {
        if ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let levels: Vec<i32> = ids.iter().map(|id| i32::from(id.level)).collect();
        let indexes = ids
            .iter()
            .map(|id| to_i64(id.index))
            .collect::<Result<Vec<_>>>()?;
        let rows = sqlx::query(
            "SELECT h.level, h.idx, h.hash FROM audit_hashes h
             JOIN UNNEST($1::integer[], $2::bigint[]) AS want(level, idx)
             ON h.level = want.level AND h.idx = want.idx",
        )
        .bind(levels)
        .bind(indexes)
        .fetch_all(&self.pool)
        .await?;
        let mut out = BTreeMap::new();
        for r in &rows {
            let level: i32 = r.try_get("level")?;
            let index: i64 = r.try_get("idx")?;
            let hash: Vec<u8> = r.try_get("hash")?;
            let id = NodeId {
                level: u8::try_from(level)
                    .map_err(|_| StoreError::Corrupt("bad subtree level".into()))?,
                index: to_u64(index, "subtree index")?,
            };
            if let Some(h) = Hash::from_slice(&hash) {
                out.insert(id, h);
            }
        }
        Ok(out)
    }

    async fn save_checkpoint(&self, size: u64, note: &str, now: Timestamp) -> Result<()> {
        let size = to_i64(size)?;
        self.write(|mut tx| async move {
            sqlx::query(
                "INSERT INTO audit_checkpoints (size, note, signed_at) VALUES ($1, $2, $3)
                 ON CONFLICT (size) DO NOTHING",
            )
            .bind(size)
            .bind(note)
            .bind(now.unix_millis())
            .execute(&mut *tx)
            .await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        let row = sqlx::query(
            "SELECT size, note, signed_at FROM audit_checkpoints ORDER BY size DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(checkpoint_from_row).transpose()
    }

    async fn add_secrets(
        &self,
        secrets: &[(&str, Vec<u8>)],
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool> {
        let Some(((first, value), rest)) = secrets.split_first() else {
            return Ok(false);
        };
        self.write(|mut tx| async move {
            // The first name is the claim: a replica adding the same secrets at the same moment
            // waits for this insert, then finds the name taken and writes nothing.
            let claimed = sqlx::query(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            )
            .bind(format!("secret:{first}"))
            .bind(value.as_slice())
            .execute(&mut *tx)
            .await?;
            if claimed.rows_affected() == 0 {
                return Ok((tx, false));
            }
            insert_secrets(&mut tx, rest).await?;
            append_in(&mut tx, events, now).await?;
            Ok((tx, true))
        })
        .await
    }

    async fn record_setting(
        &self,
        name: &str,
        value: &[u8],
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool> {
        let key = format!("setting:{name}");
        let key = &key;
        self.write(|mut tx| async move {
            // Upsert only when different: the row lock makes replicas recording the same change
            // take turns, and the second finds nothing to change.
            let changed = sqlx::query(
                "INSERT INTO meta (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
                 WHERE meta.value IS DISTINCT FROM EXCLUDED.value",
            )
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await?;
            if changed.rows_affected() == 0 {
                return Ok((tx, false));
            }
            append_in(&mut tx, events, now).await?;
            Ok((tx, true))
        })
        .await
    }

    async fn setting(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(format!("setting:{name}"))
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn audit_snapshot(&self, visitor: &mut dyn AuditVisitor) -> Result<AuditSnapshot> {
        use futures_util::TryStreamExt as _;
        // One REPEATABLE READ transaction: the head, the checkpoints and the events are one
        // consistent view, however many replicas append meanwhile.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let head = load_head(&mut tx).await?;
        let rows = sqlx::query("SELECT size, note, signed_at FROM audit_checkpoints ORDER BY size")
            .fetch_all(&mut *tx)
            .await?;
        let checkpoints = rows
            .iter()
            .map(checkpoint_from_row)
            .collect::<Result<Vec<_>>>()?;
        visitor.checkpoints(&checkpoints);
        {
            let mut rows = sqlx::query(
                "SELECT l.seq, l.bytes, h.hash FROM audit_log l
                 LEFT JOIN audit_hashes h ON h.level = 0 AND h.idx = l.seq ORDER BY l.seq",
            )
            .fetch(&mut *tx);
            while let Some(r) = rows.try_next().await? {
                let seq = to_u64(r.try_get("seq")?, "audit seq")?;
                let bytes: Vec<u8> = r.try_get("bytes")?;
                let hash: Option<Vec<u8>> = r.try_get("hash")?;
                visitor.event(seq, &bytes, hash.as_deref().and_then(Hash::from_slice));
            }
        }
        tx.rollback().await?;
        Ok(AuditSnapshot {
            head_size: head.size(),
            head_root: head.root(),
            checkpoints,
        })
    }

    async fn alert_cursor(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT next_seq FROM alert_cursor WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        to_u64(n, "alert cursor")
    }

    async fn route_alerts(
        &self,
        limit: u32,
        route: &(dyn for<'e> Fn(&'e AuditEvent) -> Option<Vec<String>> + Send + Sync),
        now: Timestamp,
    ) -> Result<usize> {
        self.route_alerts_in(limit, route, now).await
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_ms: i64,
        limit: u32,
        skip: &[String],
    ) -> Result<Vec<Delivery>> {
        self.claim_deliveries_in(now, lease_ms, limit, skip).await
    }

    async fn delivery_succeeded(&self, id: i64, now: Timestamp) -> Result<()> {
        self.delivery_succeeded_in(id, now).await
    }

    async fn delivery_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<Timestamp>,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool> {
        self.delivery_failed_in(id, error, retry_at, events, now)
            .await
    }

    async fn alert_backlog(&self) -> Result<Vec<ChannelBacklog>> {
        self.alert_backlog_in().await
    }

    async fn close(&self) {
        PostgresStore::close(self).await;
    }
}

async fn insert_secrets(tx: &mut PgConnection, secrets: &[(&str, Vec<u8>)]) -> Result<()> {
    for (name, value) in secrets {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2)")
            .bind(format!("secret:{name}"))
            .bind(value.as_slice())
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

async fn insert_principal(tx: &mut PgConnection, p: &Principal) -> Result<()> {
    let groups =
        serde_json::to_string(&p.groups).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let kind = match p.kind {
        PrincipalKind::Human => "human",
        PrincipalKind::Service => "service",
    };
    let res = sqlx::query(
        "INSERT INTO principals (name, kind, groups, disabled, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(p.name.as_str())
    .bind(kind)
    .bind(groups)
    .bind(p.disabled)
    .bind(p.created_at.unix_millis())
    .execute(&mut *tx)
    .await;
    match res {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(DomainError::PrincipalExists {
                name: p.name.to_string(),
            }
            .into())
        }
        Err(e) => Err(e.into()),
    }
}

async fn insert_token(tx: &mut PgConnection, t: &ApiToken) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_tokens (id, principal, secret_hash, created_at, expires_at, revoked_at, kind, scopes, stepped_up_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&t.id)
    .bind(&t.principal)
    .bind(t.secret_hash.as_slice())
    .bind(t.created_at.unix_millis())
    .bind(t.expires_at.unix_millis())
    .bind(t.revoked_at.map(Timestamp::unix_millis))
    .bind(t.kind.as_str())
    .bind(crate::scopes_to_sql(t.scopes.as_ref()))
    .bind(t.stepped_up_at.map(Timestamp::unix_millis))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_server_that_cannot_be_used_is_unavailable() {
        for code in [
            "08006", "08001", "57P01", "57P03", "53300", "53100", "25006",
        ] {
            assert!(is_unavailable_code(code), "{code}");
        }
        for code in ["23505", "40001", "40P01", "42P01", "P0001", "57014"] {
            assert!(!is_unavailable_code(code), "{code}");
        }
    }
}
