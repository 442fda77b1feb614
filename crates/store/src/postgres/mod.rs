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
//!
//! This file keeps the pool, the write retry loop, the audit append and how a statement is bound;
//! each noun's SQL is in the file of its name. Everything else is shared with SQLite (the modules
//! of the same names one level up).

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use breakglass_audit::leaf_hash;
use breakglass_core::{EventDraft, Timestamp};
use futures_util::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{ConnectOptions as _, Connection as _, PgConnection, PgPool, Postgres};

use crate::alerts::AlertSql;
use crate::attestations::AttestationSql;
use crate::audit::AuditSql;
use crate::auth::AuthSql;
use crate::backend::{Appends, Backend, BoxFut};
use crate::grants::GrantSql;
use crate::lockdown::LockdownSql;
use crate::principals::PrincipalSql;
use crate::reviews::ReviewSql;
use crate::roles::RoleSql;
use crate::settings::MetaSql;
use crate::sql::{Arg, Conn, Stmt, to_i64};
use crate::tokens::TokenSql;
use crate::{Result, StoreError};

mod alerts;
mod attestations;
mod audit;
mod auth;
mod drills;
mod grants;
mod lockdown;
mod principals;
mod reviews;
mod roles;
mod settings;
mod tokens;

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
    /// This process's writes only: another replica's appends are not seen here.
    appends: Arc<Appends>,
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
        Ok(Self::with_pool(pool))
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
        Ok(Self::with_pool(pool(opts)))
    }

    fn with_pool(pool: PgPool) -> Self {
        Self {
            pool,
            appends: Arc::new(Appends::new()),
        }
    }

    /// Closes every connection once the calls using them are done.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs `work` in one transaction and commits it, trying again from the start (a fresh
    /// transaction) when PostgreSQL reports a serialization failure or a deadlock. `work` hands
    /// the transaction back with its result to have it committed; on an error it drops it, which
    /// rolls it back. Every write runs here: through [`Backend::transaction`], or directly for the
    /// alert routing pass, which works with a borrowed router.
    async fn transact<T, F, Fut>(&self, mut work: F) -> Result<T>
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

type Tx = sqlx::Transaction<'static, Postgres>;

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
// INVARIANT(2): every state-changing call appends its events through this function (as
// `Conn::append`) in the same transaction as the change; if an insert fails, the whole write is
// rolled back.
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
    let mut frontier = crate::audit::frontier(&row)?;
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
    let head = crate::audit::frontier_bytes(&frontier);
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

impl Backend for PostgresStore {
    type Conn = PgConnection;
    type Reader = PoolConnection<Postgres>;

    async fn read(&self) -> Result<Self::Reader> {
        Ok(self.pool.acquire().await?)
    }

    async fn transaction<A, T, W>(&self, args: A, work: W) -> Result<T>
    where
        A: Send + Sync + 'static,
        T: Send + 'static,
        W: for<'c> Fn(&'c mut PgConnection, &'c A) -> BoxFut<'c, Result<T>> + Send + Sync + 'static,
    {
        self.transact(|mut tx| async {
            let value = work(&mut tx, &args).await?;
            Ok((tx, value))
        })
        .await
    }

    fn appends(&self) -> &Appends {
        &self.appends
    }

    async fn close_in(&self) {
        self.close().await;
    }
}

impl Conn for PgConnection {
    type Row = PgRow;

    const ALERTS: AlertSql = alerts::SQL;
    const ATTESTATIONS: AttestationSql = attestations::SQL;
    const AUDIT: AuditSql = audit::SQL;
    const AUTH: AuthSql = auth::SQL;
    const DRILLS: crate::drills::DrillSql = drills::SQL;
    const GRANTS: GrantSql = grants::SQL;
    const LOCKDOWNS: LockdownSql = lockdown::SQL;
    const META: MetaSql = settings::SQL;
    const PRINCIPALS: PrincipalSql = principals::SQL;
    const REVIEWS: ReviewSql = reviews::SQL;
    const ROLES: RoleSql = roles::SQL;
    const TOKENS: TokenSql = tokens::SQL;

    async fn execute(&mut self, s: Stmt<'_>) -> Result<u64> {
        Ok(query(s).execute(self).await?.rows_affected())
    }

    async fn one(&mut self, s: Stmt<'_>) -> Result<PgRow> {
        Ok(query(s).fetch_one(self).await?)
    }

    async fn optional(&mut self, s: Stmt<'_>) -> Result<Option<PgRow>> {
        Ok(query(s).fetch_optional(self).await?)
    }

    async fn all(&mut self, s: Stmt<'_>) -> Result<Vec<PgRow>> {
        Ok(query(s).fetch_all(self).await?)
    }

    fn stream<'a>(&'a mut self, s: Stmt<'a>) -> BoxStream<'a, Result<PgRow>> {
        query(s).fetch(self).map_err(StoreError::from).boxed()
    }

    async fn append(&mut self, events: &[EventDraft], now: Timestamp) -> Result<()> {
        append_in(self, events, now).await
    }
}

/// `s` bound for PostgreSQL: a flag as a `BOOLEAN`, a list of names as a `text[]`.
fn query(s: Stmt<'_>) -> Query<'static, Postgres, PgArguments> {
    let mut q = sqlx::query(s.sql);
    for a in s.args {
        q = match a {
            Arg::Int(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
            Arg::Bytes(v) => q.bind(v),
            Arg::Flag(v) => q.bind(v),
            Arg::Texts(v) => q.bind(v),
        };
    }
    q
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
