//! The embedded SQLite store: one file in the data directory, WAL, `synchronous=FULL`.
//!
//! All writes go through one connection and start with `BEGIN IMMEDIATE`, so they are serialised
//! in this process and against any other process that opens the file; reads use a small pool of
//! their own and see every committed write (WAL).
//!
//! This file keeps the connections, the group-commit writer, the audit append and how a statement
//! is bound; each noun's SQL is in the file of its name. Everything else is shared with
//! PostgreSQL (the modules of the same names one level up).

use std::any::Any;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration as StdDuration;

use breakglass_audit::{Frontier, Hash, NodeId, leaf_hash};
use breakglass_core::{EventDraft, Timestamp};
use futures_util::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row as _, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

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

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// Where every write goes: the group-commit writer task (see [`writer`]).
    writer: mpsc::Sender<Job>,
    reader: SqlitePool,
    commits: Arc<AtomicU64>,
    submitted: Arc<AtomicU64>,
    /// Taken for a whole alert routing pass, so that the passes of this process take turns (see
    /// [`alerts`]).
    routing: Arc<tokio::sync::Mutex<()>>,
    appends: Arc<Appends>,
}

type Reply = oneshot::Sender<Result<Box<dyn Any + Send>>>;
type Work = Box<
    dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFut<'c, Result<Box<dyn Any + Send>>> + Send,
>;

/// One write: run `work` inside the batch's transaction, answer on `reply` once it is durable.
enum Job {
    Write { work: Work, reply: Reply },
    Close { reply: oneshot::Sender<()> },
}

/// The most writes that share one transaction.
const MAX_BATCH: usize = 256;

/// Group commit: the single writer takes every write that is waiting, runs each in its own
/// savepoint inside one `BEGIN IMMEDIATE` transaction, commits once (one fsync for the batch), and
/// only then answers each caller. A write that fails is rolled back to its savepoint alone; if the
/// commit fails, every write in the batch fails and nothing of it is kept.
async fn writer(
    mut conn: PoolConnection<Sqlite>,
    mut rx: mpsc::Receiver<Job>,
    commits: Arc<AtomicU64>,
) {
    let mut closing = None;
    while let Some(first) = rx.recv().await {
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Write { work, reply } => batch.push((work, reply)),
                Job::Close { reply } => closing = Some(reply),
            }
            if closing.is_none() && batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            run_batch(&mut conn, batch, &commits).await;
        }
        if let Some(reply) = closing.take() {
            let _ = reply.send(());
            return;
        }
    }
}

async fn run_batch(conn: &mut SqliteConnection, batch: Vec<(Work, Reply)>, commits: &AtomicU64) {
    if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
        let message = e.to_string();
        for (_, reply) in batch {
            let _ = reply.send(Err(StoreError::Commit(message.clone())));
        }
        return;
    }
    let mut batch = batch;
    if batch.len() == 1
        && let Some((work, reply)) = batch.pop()
    {
        // A write alone needs no savepoint: its transaction is its own.
        let outcome = work(&mut *conn).await;
        let end = if outcome.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        let outcome = match sqlx::query(end).execute(&mut *conn).await {
            Ok(_) if outcome.is_ok() => {
                commits.fetch_add(1, Ordering::Relaxed);
                outcome
            }
            // A failed write keeps its own error; the rollback just confirms nothing was kept.
            Ok(_) => outcome,
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(StoreError::Commit(e.to_string()))
            }
        };
        let _ = reply.send(outcome);
        return;
    }
    let mut done: Vec<(Result<Box<dyn Any + Send>>, Reply)> = Vec::with_capacity(batch.len());
    let mut broken: Option<String> = None;
    let mut queue = batch.into_iter();
    for (work, reply) in queue.by_ref() {
        if let Err(e) = sqlx::query("SAVEPOINT job").execute(&mut *conn).await {
            broken = Some(e.to_string());
            done.push((Err(StoreError::Commit(e.to_string())), reply));
            break;
        }
        let outcome = work(&mut *conn).await;
        let undo = if outcome.is_ok() {
            sqlx::query("RELEASE job")
                .execute(&mut *conn)
                .await
                .map(|_| ())
        } else {
            match sqlx::query("ROLLBACK TO job").execute(&mut *conn).await {
                Ok(_) => sqlx::query("RELEASE job")
                    .execute(&mut *conn)
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            }
        };
        done.push((outcome, reply));
        if let Err(e) = undo {
            // The savepoint is gone: SQLite has rolled the whole transaction back (disk full,
            // I/O error) or cannot undo this write alone. Nothing of the batch may be reported
            // as kept, and no later write may run outside a transaction.
            broken = Some(e.to_string());
            break;
        }
    }
    if let Some(message) = broken {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        let replies = done
            .into_iter()
            .map(|(_, r)| r)
            .chain(queue.map(|(_, r)| r));
        for reply in replies {
            let _ = reply.send(Err(StoreError::Commit(message.clone())));
        }
        return;
    }
    match sqlx::query("COMMIT").execute(&mut *conn).await {
        Ok(_) => {
            commits.fetch_add(1, Ordering::Relaxed);
            for (outcome, reply) in done {
                let _ = reply.send(outcome);
            }
        }
        Err(e) => {
            let message = e.to_string();
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            for (_, reply) in done {
                let _ = reply.send(Err(StoreError::Commit(message.clone())));
            }
        }
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` and applies migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let base = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(StdDuration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(base.clone())
            .await?;
        MIGRATOR.run(&pool).await?;
        backfill_tree(&pool).await?;
        let conn = pool.acquire().await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(base.create_if_missing(false))
            .await?;
        Ok(Self::with_writer(conn, reader))
    }

    fn with_writer(conn: PoolConnection<Sqlite>, reader: SqlitePool) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let commits = Arc::new(AtomicU64::new(0));
        tokio::spawn(writer(conn, rx, Arc::clone(&commits)));
        Self {
            writer: tx,
            reader,
            commits,
            submitted: Arc::new(AtomicU64::new(0)),
            routing: Arc::new(tokio::sync::Mutex::new(())),
            appends: Arc::new(Appends::new()),
        }
    }

    /// Opens an existing database without changing anything in it (no migrations, no
    /// back-fill): for `audit verify`, which must not touch what it checks.
    pub async fn open_read_only(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(StoreError::NotInitialized);
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .busy_timeout(StdDuration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(opts)
            .await?;
        let conn = pool.acquire().await?;
        Ok(Self::with_writer(conn, pool))
    }

    /// Opens `url` (`sqlite://PATH`), for tools that are handed a URL.
    pub async fn open_url(url: &str) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)?;
        Self::open(opts.get_filename()).await
    }

    /// Runs `work` in the next group commit and returns its result once it is durable.
    async fn submit<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFut<'c, Result<T>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let work: Work = Box::new(move |conn| {
            Box::pin(async move { work(conn).await.map(|t| Box::new(t) as Box<dyn Any + Send>) })
        });
        self.writer
            .send(Job::Write { work, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        self.submitted.fetch_add(1, Ordering::Relaxed);
        let boxed = answer.await.map_err(|_| StoreError::Closed)??;
        boxed
            .downcast::<T>()
            .map(|b| *b)
            .map_err(|_| StoreError::Corrupt("writer returned the wrong type".into()))
    }

    /// How many transactions the writer has committed (each may carry many writes).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// How many writes have been handed to the writer so far (queued, running or done).
    pub fn submitted_writes(&self) -> u64 {
        self.submitted.load(Ordering::Relaxed)
    }

    /// Stops the writer after the writes already queued and closes every connection.
    pub async fn close_all(&self) {
        let (reply, done) = oneshot::channel();
        if self.writer.send(Job::Close { reply }).await.is_ok() {
            let _ = done.await;
        }
        self.reader.close().await;
    }
}

/// Appends `events` at the end of the log inside the caller's transaction: their canonical
/// bytes, the subtree hashes they complete, and the new head. The head row is what serialises
/// appends.
// INVARIANT(2): every state-changing call appends its events through this function (as
// `Conn::append`) in the same transaction as the change; if an insert fails, the whole write is
// rolled back.
// INVARIANT(4): each event's bytes are hashed into the Merkle tree as they are written; the bytes
// are never re-serialised afterwards, so any later edit, deletion or reordering changes a root.
async fn append_in(tx: &mut SqliteConnection, events: &[EventDraft], now: Timestamp) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut frontier = crate::audit::head(tx).await?;
    let mut completed = Vec::new();
    for e in events {
        let seq = frontier.size();
        let encoded = e.encode(seq, now);
        let leaf = leaf_hash(&encoded.bytes);
        sqlx::query(
            "INSERT INTO audit_log (seq, type, grant_id, time, bytes) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(to_i64(seq)?)
        .bind(encoded.type_name)
        .bind(e.grant.map(|g| g.to_string()))
        .bind(now.unix_millis())
        .bind(encoded.bytes)
        .execute(&mut *tx)
        .await?;
        completed.extend(frontier.append(leaf));
    }
    store_hashes(tx, completed).await?;
    save_head(tx, &frontier).await
}

async fn save_head(tx: &mut SqliteConnection, f: &Frontier) -> Result<()> {
    sqlx::query("UPDATE audit_head SET size = ?, frontier = ? WHERE id = 1")
        .bind(to_i64(f.size())?)
        .bind(crate::audit::frontier_bytes(f))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Inserts completed subtree hashes, many per statement (each statement has a fixed cost).
async fn store_hashes(tx: &mut SqliteConnection, completed: Vec<(NodeId, Hash)>) -> Result<()> {
    const PER_STATEMENT: usize = 100;
    for chunk in completed.chunks(PER_STATEMENT) {
        let placeholders = vec!["(?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!("INSERT INTO audit_hashes (level, idx, hash) VALUES {placeholders}");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, h) in chunk {
            q = q
                .bind(i64::from(id.level))
                .bind(to_i64(id.index)?)
                .bind(h.0.to_vec());
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

/// Brings the tree up to the log: events written before the tree existed (schema version 1)
/// get their hashes now, once, in order.
async fn backfill_tree(pool: &SqlitePool) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut frontier = crate::audit::head(&mut *tx).await?;
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
        .fetch_one(&mut *tx)
        .await?;
    if u64::try_from(count).ok() == Some(frontier.size()) {
        return Ok(());
    }
    // Only a log that never had a tree is built here. A head that has fallen behind a log that
    // already had one (or has signed checkpoints) means the tree was damaged or reset: refuse,
    // rather than quietly hash whatever the events now say.
    let checkpoints: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_checkpoints")
        .fetch_one(&mut *tx)
        .await?;
    if frontier.size() > 0 || checkpoints > 0 {
        return Err(StoreError::Corrupt(format!(
            "the audit tree covers {} events but the log holds {count}: the tree was damaged or reset; run `breakglass audit verify` and restore from backup",
            frontier.size()
        )));
    }
    let rows = sqlx::query("SELECT seq, bytes FROM audit_log WHERE seq >= ? ORDER BY seq")
        .bind(to_i64(frontier.size())?)
        .fetch_all(&mut *tx)
        .await?;
    if rows.is_empty() {
        return Ok(());
    }
    for r in &rows {
        let seq: i64 = r.try_get("seq")?;
        if u64::try_from(seq).ok() != Some(frontier.size()) {
            return Err(StoreError::Corrupt(format!(
                "audit log has a gap before seq {seq}"
            )));
        }
        let bytes: Vec<u8> = r.try_get("bytes")?;
        let completed = frontier.append(leaf_hash(&bytes));
        store_hashes(&mut tx, completed).await?;
    }
    save_head(&mut tx, &frontier).await?;
    tx.commit().await?;
    tracing::info!(
        events = rows.len(),
        "audit tree built for events written before it existed"
    );
    Ok(())
}

impl Backend for SqliteStore {
    type Conn = SqliteConnection;
    type Reader = PoolConnection<Sqlite>;

    async fn read(&self) -> Result<Self::Reader> {
        Ok(self.reader.acquire().await?)
    }

    async fn transaction<A, T, W>(&self, args: A, work: W) -> Result<T>
    where
        A: Send + Sync + 'static,
        T: Send + 'static,
        W: for<'c> Fn(&'c mut SqliteConnection, &'c A) -> BoxFut<'c, Result<T>>
            + Send
            + Sync
            + 'static,
    {
        self.submit(move |tx| Box::pin(async move { work(tx, &args).await }))
            .await
    }

    fn appends(&self) -> &Appends {
        &self.appends
    }

    async fn close_in(&self) {
        self.close_all().await;
    }
}

impl Conn for SqliteConnection {
    type Row = SqliteRow;

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

    async fn one(&mut self, s: Stmt<'_>) -> Result<SqliteRow> {
        Ok(query(s).fetch_one(self).await?)
    }

    async fn optional(&mut self, s: Stmt<'_>) -> Result<Option<SqliteRow>> {
        Ok(query(s).fetch_optional(self).await?)
    }

    async fn all(&mut self, s: Stmt<'_>) -> Result<Vec<SqliteRow>> {
        Ok(query(s).fetch_all(self).await?)
    }

    fn stream<'a>(&'a mut self, s: Stmt<'a>) -> BoxStream<'a, Result<SqliteRow>> {
        query(s).fetch(self).map_err(StoreError::from).boxed()
    }

    async fn append(&mut self, events: &[EventDraft], now: Timestamp) -> Result<()> {
        append_in(self, events, now).await
    }
}

/// `s` bound for SQLite: a flag as `INTEGER` 0 or 1, a list of names as a JSON array.
fn query(s: Stmt<'_>) -> Query<'static, Sqlite, SqliteArguments> {
    let mut q = sqlx::query(s.sql);
    for a in s.args {
        q = match a {
            Arg::Int(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
            Arg::Bytes(v) => q.bind(v),
            Arg::Flag(v) => q.bind(i64::from(v)),
            // A list of strings always serialises.
            Arg::Texts(v) => q.bind(serde_json::to_string(&v).unwrap_or_default()),
        };
    }
    q
}
