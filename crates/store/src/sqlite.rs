//! The embedded SQLite store: one file in the data directory, WAL, `synchronous=FULL`.
//!
//! All writes go through one connection and start with `BEGIN IMMEDIATE`, so they are serialised
//! in this process and against any other process that opens the file; reads use a small pool of
//! their own and see every committed write (WAL).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use breakglass_core::{
    Actor, AuditEvent, DomainError, EventDraft, EventKind, Grant, GrantId, Principal,
    PrincipalKind, Timestamp,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};

use crate::{
    ApiToken, NewCredential, Result, RoleRecord, SealedCredential, Store, StoreError, StoredGrant,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
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
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(base.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(base.create_if_missing(false))
            .await?;
        Ok(Self { writer, reader })
    }

    /// Opens `url` (`sqlite://PATH`), for tools that are handed a URL.
    pub async fn open_url(url: &str) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)?;
        Self::open(opts.get_filename()).await
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// Appends `events` at the end of the log inside the caller's transaction.
// INVARIANT(2): every state-changing call below appends its events through this function in the
// same transaction as the change; if an insert fails, the `?` drops the transaction and rolls back.
async fn append_in(tx: &mut SqliteConnection, events: &[EventDraft], now: Timestamp) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_log")
        .fetch_one(&mut *tx)
        .await?;
    let first =
        u64::try_from(next).map_err(|_| StoreError::Corrupt("negative audit seq".into()))?;
    for (seq, e) in (first..).zip(events) {
        let bytes = e.canonical_bytes(seq, now);
        sqlx::query(
            "INSERT INTO audit_log (seq, type, grant_id, time, bytes) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(i64::try_from(seq).map_err(|_| StoreError::Corrupt("audit seq overflow".into()))?)
        .bind(e.kind.type_name())
        .bind(e.grant.map(|g| g.to_string()))
        .bind(now.unix_millis())
        .bind(bytes)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
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
        let mut tx = self.begin().await?;
        let done: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM meta WHERE key = 'initialized'")
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
        insert_principal(&mut tx, admin).await?;
        insert_token(&mut tx, token).await?;
        sqlx::query("INSERT INTO meta (key, value) VALUES ('initialized', ?)")
            .bind(now.unix_millis().to_string().into_bytes())
            .execute(&mut *tx)
            .await?;
        append_in(&mut tx, events, now).await?;
        tx.commit().await?;
        Ok(())
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
        let mut tx = self.begin().await?;
        insert_principal(&mut tx, p).await?;
        append_in(&mut tx, events, now).await?;
        tx.commit().await?;
        Ok(())
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
        let mut tx = self.begin().await?;
        insert_token(&mut tx, t).await?;
        append_in(&mut tx, events, now).await?;
        tx.commit().await?;
        Ok(())
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
        let mut tx = self.begin().await?;
        let done =
            sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(now.unix_millis())
                .bind(id)
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        append_in(&mut tx, events, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn roles(&self) -> Result<Vec<RoleRecord>> {
        let rows = sqlx::query("SELECT id, hash, file FROM roles ORDER BY id")
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RoleRecord {
                    id: r.try_get("id")?,
                    hash: r.try_get("hash")?,
                    file: r.try_get("file")?,
                })
            })
            .collect()
    }

    async fn record_roles(
        &self,
        current: &[RoleRecord],
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM roles").execute(&mut *tx).await?;
        for r in current {
            sqlx::query("INSERT INTO roles (id, hash, file, loaded_at) VALUES (?, ?, ?, ?)")
                .bind(&r.id)
                .bind(&r.hash)
                .bind(&r.file)
                .bind(now.unix_millis())
                .execute(&mut *tx)
                .await?;
        }
        append_in(&mut tx, events, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_grant(&self, g: &Grant, events: &[EventDraft], now: Timestamp) -> Result<()> {
        let mut tx = self.begin().await?;
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
        append_in(&mut tx, events, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_grant(
        &self,
        g: &Grant,
        expected_version: i64,
        credential: Option<&NewCredential>,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
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
        append_in(&mut tx, events, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn grant(&self, id: GrantId) -> Result<Option<StoredGrant>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{GRANT_COLUMNS} WHERE id = ?")))
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    async fn grants(&self, state: Option<&str>, limit: u32) -> Result<Vec<StoredGrant>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{GRANT_COLUMNS} WHERE (?1 IS NULL OR state = ?1) ORDER BY requested_at DESC, id LIMIT ?2"
        )))
        .bind(state)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn grants_in_states(&self, states: &[&str]) -> Result<Vec<StoredGrant>> {
        let list = serde_json::to_string(states).map_err(|e| StoreError::Corrupt(e.to_string()))?;
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

    async fn deliver_credential(
        &self,
        id: GrantId,
        to: &str,
        now: Timestamp,
    ) -> Result<SealedCredential> {
        let mut tx = self.begin().await?;
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM grants WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(state) = state else {
            return Err(DomainError::UnknownGrant {
                grant: id.to_string(),
            }
            .into());
        };
        if state != "active" {
            let state = breakglass_core::GrantState::NAMES
                .into_iter()
                .find(|s| *s == state)
                .unwrap_or("unknown");
            return Err(DomainError::CredentialNotAvailable {
                grant: id.to_string(),
                state,
            }
            .into());
        }
        let row = sqlx::query(
            "SELECT serial, fingerprint, ciphertext FROM credentials WHERE grant_id = ? ORDER BY serial DESC LIMIT 1",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(DomainError::CredentialNotAvailable {
                grant: id.to_string(),
                state: "active",
            }
            .into());
        };
        let serial: i64 = row.try_get("serial")?;
        let fingerprint: String = row.try_get("fingerprint")?;
        let Some(ciphertext) = row.try_get::<Option<Vec<u8>>, _>("ciphertext")? else {
            // INVARIANT(6): shown once; the ciphertext was erased when it was delivered.
            return Err(DomainError::CredentialAlreadyDelivered {
                grant: id.to_string(),
            }
            .into());
        };
        sqlx::query(
            "UPDATE credentials SET ciphertext = NULL, delivered_at = ?, delivered_to = ? WHERE grant_id = ? AND serial = ?",
        )
        .bind(now.unix_millis())
        .bind(to)
        .bind(id.to_string())
        .bind(serial)
        .execute(&mut *tx)
        .await?;
        let actor = Actor::User(
            to.parse()
                .map_err(|_| StoreError::Corrupt("bad principal name".into()))?,
        );
        let event = EventDraft::new(
            actor,
            Some(id),
            EventKind::CredentialDelivered {
                to: to.to_owned(),
                fingerprint: fingerprint.clone(),
            },
        );
        append_in(&mut tx, &[event], now).await?;
        tx.commit().await?;
        Ok(SealedCredential {
            fingerprint,
            ciphertext,
        })
    }

    async fn append(&self, events: &[EventDraft], now: Timestamp) -> Result<()> {
        let mut tx = self.begin().await?;
        append_in(&mut tx, events, now).await?;
        tx.commit().await?;
        Ok(())
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
        "INSERT INTO api_tokens (id, principal, secret_hash, created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&t.id)
    .bind(&t.principal)
    .bind(t.secret_hash.as_slice())
    .bind(t.created_at.unix_millis())
    .bind(t.expires_at.unix_millis())
    .bind(t.revoked_at.map(Timestamp::unix_millis))
    .execute(&mut *tx)
    .await?;
    Ok(())
}
