//! The embedded SQLite store: one file in the data directory, WAL, `synchronous=FULL`.
//!
//! All writes go through one connection and start with `BEGIN IMMEDIATE`, so they are serialised
//! in this process and against any other process that opens the file; reads use a small pool of
//! their own and see every committed write (WAL).

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use breakglass_audit::{Frontier, Hash, NodeId, leaf_hash};
use breakglass_core::{
    AuditEvent, CredentialFacts, DomainError, EventDraft, Grant, GrantId, Principal, PrincipalKind,
    StateKind, Timestamp,
};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use crate::{
    ApiToken, AuditSnapshot, AuditVisitor, ChannelBacklog, Delivery, NewCredential, Result,
    RoleRecord, SealedCredential, Store, StoreError, StoredCheckpoint, StoredGrant,
};

mod alerts;
mod auth;

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
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
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
    async fn write<T, F>(&self, work: F) -> Result<T>
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
// INVARIANT(2): every state-changing call below appends its events through this function in the
// same transaction as the change; if an insert fails, the whole write is rolled back.
// INVARIANT(4): each event's bytes are hashed into the Merkle tree as they are written; the bytes
// are never re-serialised afterwards, so any later edit, deletion or reordering changes a root.
async fn append_in(tx: &mut SqliteConnection, events: &[EventDraft], now: Timestamp) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut frontier = load_head(tx).await?;
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

fn to_i64(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| StoreError::Corrupt("audit position overflow".into()))
}

async fn load_head(tx: &mut SqliteConnection) -> Result<Frontier> {
    let row = sqlx::query("SELECT size, frontier FROM audit_head WHERE id = 1")
        .fetch_one(&mut *tx)
        .await?;
    let size: i64 = row.try_get("size")?;
    let blob: Vec<u8> = row.try_get("frontier")?;
    let hashes = blob.chunks(32).filter_map(Hash::from_slice).collect();
    let size =
        u64::try_from(size).map_err(|_| StoreError::Corrupt("negative audit size".into()))?;
    Frontier::from_parts(size, hashes)
        .ok_or_else(|| StoreError::Corrupt("audit head frontier does not match its size".into()))
}

async fn save_head(tx: &mut SqliteConnection, f: &Frontier) -> Result<()> {
    let blob: Vec<u8> = f.hashes().iter().flat_map(|h| h.0).collect();
    sqlx::query("UPDATE audit_head SET size = ?, frontier = ? WHERE id = 1")
        .bind(to_i64(f.size())?)
        .bind(blob)
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
    let mut frontier = load_head(&mut tx).await?;
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

fn checkpoint_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<StoredCheckpoint> {
    let size: i64 = row.try_get("size")?;
    Ok(StoredCheckpoint {
        size: u64::try_from(size)
            .map_err(|_| StoreError::Corrupt("negative checkpoint size".into()))?,
        note: row.try_get("note")?,
        signed_at: Timestamp::from_unix_millis(row.try_get("signed_at")?),
    })
}

fn principal_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Principal> {
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
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
    })
}

fn token_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<ApiToken> {
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

fn grant_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<StoredGrant> {
    let body: String = row.try_get("body")?;
    let grant: Grant =
        serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(format!("grant body: {e}")))?;
    Ok(StoredGrant {
        grant,
        version: row.try_get("version")?,
    })
}

fn role_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<RoleRecord> {
    Ok(RoleRecord {
        id: r.try_get("id")?,
        hash: r.try_get("hash")?,
        file: r.try_get("file")?,
    })
}

fn grant_body(g: &Grant) -> Result<String> {
    serde_json::to_string(g).map_err(|e| StoreError::Corrupt(format!("grant body: {e}")))
}

const GRANT_COLUMNS: &str = "SELECT body, version FROM grants";

#[async_trait]
impl Store for SqliteStore {
    async fn initialized(&self) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM meta WHERE key = 'initialized'")
            .fetch_one(&self.reader)
            .await?;
        Ok(n > 0)
    }

    async fn initialize(
        &self,
        admin: &Principal,
        token: &ApiToken,
        secrets: &[(&str, Vec<u8>)],
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()> {
        let admin = admin.clone();
        let token = token.clone();
        let secrets: Vec<(String, Vec<u8>)> = secrets
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.clone()))
            .collect();
        let events = events.to_vec();
        self.write(move |tx| {
            Box::pin(async move {
                let admin = &admin;
                let token = &token;
                let secrets = &secrets[..];
                let events = &events[..];
                let done: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM meta WHERE key = 'initialized'")
                        .fetch_one(&mut *tx)
                        .await?;
                if done > 0 {
                    return Err(StoreError::AlreadyInitialized);
                }
                for (name, value) in secrets {
                    sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?)")
                        .bind(format!("secret:{name}"))
                        .bind(value.as_slice())
                        .execute(&mut *tx)
                        .await?;
                }
                insert_principal(tx, admin).await?;
                insert_token(tx, token).await?;
                sqlx::query("INSERT INTO meta (key, value) VALUES ('initialized', ?)")
                    .bind(now.unix_millis().to_string().into_bytes())
                    .execute(&mut *tx)
                    .await?;
                append_in(tx, events, now).await?;
                Ok(())
            })
        })
        .await
    }

    async fn secret(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(format!("secret:{name}"))
            .fetch_optional(&self.reader)
            .await?)
    }

    async fn create_principal(
        &self,
        p: &Principal,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()> {
        let p = p.clone();
        let events = events.to_vec();
        self.write(move |tx| {
            Box::pin(async move {
                let p = &p;
                let events = &events[..];
                insert_principal(tx, p).await?;
                append_in(tx, events, now).await?;
                Ok(())
            })
        })
        .await
    }

    async fn principal(&self, name: &str) -> Result<Option<Principal>> {
        let row = sqlx::query("SELECT * FROM principals WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(principal_from_row).transpose()
    }

    async fn principals(&self) -> Result<Vec<Principal>> {
        let rows = sqlx::query("SELECT * FROM principals ORDER BY name")
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(principal_from_row).collect()
    }

    async fn create_token(
        &self,
        t: &ApiToken,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()> {
        let t = t.clone();
        let events = events.to_vec();
        self.write(move |tx| {
            Box::pin(async move {
                let t = &t;
                let events = &events[..];
                insert_token(tx, t).await?;
                append_in(tx, events, now).await?;
                Ok(())
            })
        })
        .await
    }

    async fn token(&self, id: &str) -> Result<Option<ApiToken>> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn tokens(&self) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY created_at, id")
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, id: &str, events: &[EventDraft], now: Timestamp) -> Result<bool> {
        let id = id.to_owned();
        let events = events.to_vec();
        self.write(move |tx| {
            Box::pin(async move {
                let id = id.as_str();
                let events = &events[..];
                let done = sqlx::query(
                    "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                )
                .bind(now.unix_millis())
                .bind(id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                append_in(tx, events, now).await?;
                Ok(true)
            })
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
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(role_from_row).collect()
    }

    async fn record_roles(
        &self,
        previous: &[RoleRecord],
        current: &[RoleRecord],
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool> {
        let previous = previous.to_vec();
        let current = current.to_vec();
        let events = events.to_vec();
        self.write(move |tx| {
            Box::pin(async move {
                let current = &current[..];
                let events = &events[..];
                let rows = sqlx::query("SELECT id, hash, file FROM roles ORDER BY id")
                    .fetch_all(&mut *tx)
                    .await?;
                let mut stored = rows.iter().map(role_from_row).collect::<Result<Vec<_>>>()?;
                stored.sort_by(|a, b| a.id.cmp(&b.id));
                let mut previous = previous;
                previous.sort_by(|a, b| a.id.cmp(&b.id));
                if stored != previous {
                    return Ok(false);
                }
                sqlx::query("DELETE FROM roles").execute(&mut *tx).await?;
                for r in current {
                    sqlx::query(
                        "INSERT INTO roles (id, hash, file, loaded_at) VALUES (?, ?, ?, ?)",
                    )
                    .bind(&r.id)
                    .bind(&r.hash)
                    .bind(&r.file)
                    .bind(now.unix_millis())
                    .execute(&mut *tx)
                    .await?;
                }
                append_in(tx, events, now).await?;
                Ok(true)
            })
        })
        .await
    }

    async fn insert_grant(&self, g: &Grant, events: &[EventDraft], now: Timestamp) -> Result<()> {
        let g = g.clone();
        let events = events.to_vec();
        self.write(move |tx| {
            Box::pin(async move {
                let g = &g; let events = &events[..];
        sqlx::query(
            "INSERT INTO grants (id, role, requester, state, requested_at, expires_at, version, body)
             VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
        )
        .bind(g.id.to_string())
        .bind(g.role.as_str())
        .bind(g.requester.as_str())
        .bind(g.state.name())
        .bind(g.requested_at.unix_millis())
        .bind(g.expires_at().map(Timestamp::unix_millis))
        .bind(grant_body(g)?)
        .execute(&mut *tx)
        .await?;
        append_in(tx, events, now).await?;
        Ok(())
            })
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
        let g = g.clone();
        let credential = credential.cloned();
        let events = events.to_vec();
        self.write(move |tx| {
            Box::pin(async move {
                let g = &g; let credential = credential.as_ref(); let events = &events[..];
        let done = sqlx::query(
            "UPDATE grants SET state = ?, expires_at = ?, version = version + 1, body = ?
             WHERE id = ? AND version = ?",
        )
        .bind(g.state.name())
        .bind(g.expires_at().map(Timestamp::unix_millis))
        .bind(grant_body(g)?)
        .bind(g.id.to_string())
        .bind(expected_version)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict);
        }
        if let Some(c) = credential {
            sqlx::query(
                "INSERT INTO credentials (grant_id, serial, fingerprint, ciphertext, issued_at)
                 VALUES (?, (SELECT COALESCE(MAX(serial) + 1, 1) FROM credentials WHERE grant_id = ?), ?, ?, ?)",
            )
            .bind(g.id.to_string())
            .bind(g.id.to_string())
            .bind(&c.fingerprint)
            .bind(c.ciphertext.as_slice())
            .bind(now.unix_millis())
            .execute(&mut *tx)
            .await?;
        }
        if g.state.is_ended() || g.state.name() == "revoking" {
            // INVARIANT(6): a credential nobody collected is not kept past its grant.
            sqlx::query("UPDATE credentials SET ciphertext = NULL WHERE grant_id = ?")
                .bind(g.id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        append_in(tx, events, now).await?;
        // The row matched `version = expected_version` and the update moved it on by one.
        Ok(StoredGrant { grant: g.clone(), version: expected_version + 1 })
            })
        })
        .await
    }

    async fn grant(&self, id: GrantId) -> Result<Option<StoredGrant>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{GRANT_COLUMNS} WHERE id = ?")))
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    async fn grants(&self, state: Option<StateKind>, limit: u32) -> Result<Vec<StoredGrant>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{GRANT_COLUMNS} WHERE (?1 IS NULL OR state = ?1) ORDER BY requested_at DESC, id LIMIT ?2"
        )))
        .bind(state.map(StateKind::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn grant_counts(&self) -> Result<BTreeMap<StateKind, u64>> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM grants GROUP BY state")
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                let n: i64 = r.try_get("n")?;
                Ok((
                    crate::parse_state(&r.try_get::<String, _>("state")?)?,
                    u64::try_from(n).map_err(|_| StoreError::Corrupt("negative count".into()))?,
                ))
            })
            .collect()
    }

    async fn grants_in_states(&self, states: &[StateKind]) -> Result<Vec<StoredGrant>> {
        let list = serde_json::to_string(&crate::state_names(states))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{GRANT_COLUMNS} WHERE state IN (SELECT value FROM json_each(?)) ORDER BY requested_at, id"
        )))
        .bind(list)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn due_for_expiry(&self, now: Timestamp) -> Result<Vec<StoredGrant>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{GRANT_COLUMNS} WHERE state = 'active' AND expires_at <= ? ORDER BY expires_at, id"
        )))
        .bind(now.unix_millis())
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn requested_before(&self, cutoff: Timestamp) -> Result<Vec<StoredGrant>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{GRANT_COLUMNS} WHERE state = 'requested' AND requested_at <= ? ORDER BY requested_at, id"
        )))
        .bind(cutoff.unix_millis())
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn deliver_credential(
        &self,
        id: GrantId,
        to: &Principal,
        now: Timestamp,
    ) -> Result<SealedCredential> {
        let to = to.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let row = sqlx::query("SELECT body, version FROM grants WHERE id = ?")
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(row) = row else {
                    return Err(DomainError::UnknownGrant {
                        grant: id.to_string(),
                    }
                    .into());
                };
                let grant = grant_from_row(&row)?.grant;
                let row = sqlx::query(
                    "SELECT serial, fingerprint, ciphertext FROM credentials WHERE grant_id = ? ORDER BY serial DESC LIMIT 1",
                )
                .bind(id.to_string())
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
                let facts = latest.as_ref().map(|(_, fingerprint, ciphertext)| CredentialFacts {
                    fingerprint: fingerprint.clone(),
                    delivered: ciphertext.is_none(),
                });
                // The core decides; this transaction applies its decision.
                let event = grant.deliver_credential(&to, facts.as_ref(), now)?;
                let Some((serial, fingerprint, Some(ciphertext))) = latest else {
                    return Err(StoreError::Corrupt("credential vanished while delivered".into()));
                };
                sqlx::query(
                    "UPDATE credentials SET ciphertext = NULL, delivered_at = ?, delivered_to = ? WHERE grant_id = ? AND serial = ?",
                )
                .bind(now.unix_millis())
                .bind(to.name.as_str())
                .bind(id.to_string())
                .bind(serial)
                .execute(&mut *tx)
                .await?;
                append_in(tx, &[event], now).await?;
                Ok(SealedCredential {
                    fingerprint,
                    ciphertext,
                    expires_at: grant.expires_at(),
                })
            })
        })
        .await
    }

    async fn append(&self, events: &[EventDraft], now: Timestamp) -> Result<()> {
        let events = events.to_vec();
        self.write(move |tx| {
            Box::pin(async move {
                let events = &events[..];
                append_in(tx, events, now).await?;
                Ok(())
            })
        })
        .await
    }

    async fn audit_tail(&self, n: u32) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query("SELECT seq, bytes FROM (SELECT seq, bytes FROM audit_log ORDER BY seq DESC LIMIT ?) ORDER BY seq")
            .bind(i64::from(n))
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                let seq: i64 = r.try_get("seq")?;
                Ok(AuditEvent {
                    seq: u64::try_from(seq)
                        .map_err(|_| StoreError::Corrupt("negative audit seq".into()))?,
                    bytes: r.try_get("bytes")?,
                })
            })
            .collect()
    }

    async fn audit_size(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
            .fetch_one(&self.reader)
            .await?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt("negative count".into()))
    }

    async fn audit_events(&self, from: u64, limit: u32) -> Result<Vec<AuditEvent>> {
        let rows =
            sqlx::query("SELECT seq, bytes FROM audit_log WHERE seq >= ? ORDER BY seq LIMIT ?")
                .bind(to_i64(from)?)
                .bind(i64::from(limit))
                .fetch_all(&self.reader)
                .await?;
        rows.iter()
            .map(|r| {
                let seq: i64 = r.try_get("seq")?;
                Ok(AuditEvent {
                    seq: u64::try_from(seq)
                        .map_err(|_| StoreError::Corrupt("negative audit seq".into()))?,
                    bytes: r.try_get("bytes")?,
                })
            })
            .collect()
    }

    async fn audit_head(&self) -> Result<(u64, Hash)> {
        let mut conn = self.reader.acquire().await?;
        let f = load_head(&mut conn).await?;
        Ok((f.size(), f.root()))
    }

    async fn audit_hashes(&self, ids: &BTreeSet<NodeId>) -> Result<BTreeMap<NodeId, Hash>> {
        let mut conn = self.reader.acquire().await?;
        let mut out = BTreeMap::new();
        for id in ids {
            let h: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT hash FROM audit_hashes WHERE level = ? AND idx = ?")
                    .bind(i64::from(id.level))
                    .bind(to_i64(id.index)?)
                    .fetch_optional(&mut *conn)
                    .await?;
            if let Some(h) = h.as_deref().and_then(Hash::from_slice) {
                out.insert(*id, h);
            }
        }
        Ok(out)
    }

    async fn save_checkpoint(&self, size: u64, note: &str, now: Timestamp) -> Result<()> {
        let note = note.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                let note = note.as_str();
                sqlx::query(
            "INSERT OR IGNORE INTO audit_checkpoints (size, note, signed_at) VALUES (?, ?, ?)",
        )
        .bind(to_i64(size)?)
        .bind(note)
        .bind(now.unix_millis())
        .execute(&mut *tx)
        .await?;
                Ok(())
            })
        })
        .await
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        let row = sqlx::query(
            "SELECT size, note, signed_at FROM audit_checkpoints ORDER BY size DESC LIMIT 1",
        )
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(checkpoint_from_row).transpose()
    }

    async fn add_secrets(
        &self,
        secrets: &[(&str, Vec<u8>)],
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool> {
        let Some((first, _)) = secrets.first() else {
            return Ok(false);
        };
        let first = (*first).to_owned();
        let events = events.to_vec();
        let secrets: Vec<(String, Vec<u8>)> = secrets
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.clone()))
            .collect();
        self.write(move |tx| {
            Box::pin(async move {
                let secrets = &secrets[..];
                let events = &events[..];
                let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM meta WHERE key = ?")
                    .bind(format!("secret:{first}"))
                    .fetch_one(&mut *tx)
                    .await?;
                if exists > 0 {
                    return Ok(false);
                }
                for (name, value) in secrets {
                    sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?)")
                        .bind(format!("secret:{name}"))
                        .bind(value.as_slice())
                        .execute(&mut *tx)
                        .await?;
                }
                append_in(tx, events, now).await?;
                Ok(true)
            })
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
        let value = value.to_vec();
        let events = events.to_vec();
        self.write(move |tx| {
            Box::pin(async move {
                let current: Option<Vec<u8>> =
                    sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
                        .bind(&key)
                        .fetch_optional(&mut *tx)
                        .await?;
                if current.as_deref() == Some(value.as_slice()) {
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO meta (key, value) VALUES (?, ?)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(&key)
                .bind(value.as_slice())
                .execute(&mut *tx)
                .await?;
                append_in(tx, &events, now).await?;
                Ok(true)
            })
        })
        .await
    }

    async fn setting(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(format!("setting:{name}"))
            .fetch_optional(&self.reader)
            .await?)
    }

    async fn audit_snapshot(&self, visitor: &mut dyn AuditVisitor) -> Result<AuditSnapshot> {
        use futures_util::TryStreamExt as _;
        // One read transaction: the head, the checkpoints and the events are one consistent view.
        let mut tx = self.reader.begin().await?;
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
                let seq: i64 = r.try_get("seq")?;
                let bytes: Vec<u8> = r.try_get("bytes")?;
                let hash: Option<Vec<u8>> = r.try_get("hash")?;
                let seq = u64::try_from(seq)
                    .map_err(|_| StoreError::Corrupt("negative audit seq".into()))?;
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
            .fetch_one(&self.reader)
            .await?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt("negative alert cursor".into()))
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
        self.close_all().await;
    }
}

async fn insert_principal(tx: &mut SqliteConnection, p: &Principal) -> Result<()> {
    let groups =
        serde_json::to_string(&p.groups).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let kind = match p.kind {
        PrincipalKind::Human => "human",
        PrincipalKind::Service => "service",
    };
    let res = sqlx::query(
        "INSERT INTO principals (name, kind, groups, disabled, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(p.name.as_str())
    .bind(kind)
    .bind(groups)
    .bind(i64::from(p.disabled))
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

async fn insert_token(tx: &mut SqliteConnection, t: &ApiToken) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_tokens (id, principal, secret_hash, created_at, expires_at, revoked_at, kind, scopes, stepped_up_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
