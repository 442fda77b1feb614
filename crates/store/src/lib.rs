//! Persistence for breakglass behind one [`Store`] trait shaped by commands, not tables.
//!
//! Every call that changes state takes the audit events that describe the change and writes both
//! in one transaction: if the audit rows cannot be written, nothing changes (invariant 2).
//! SQLite is the embedded default ([`SqliteStore`]); PostgreSQL ([`PostgresStore`]) is the shared
//! store that many broker processes use at once.

mod postgres;
mod sqlite;

pub use breakglass_audit;

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use breakglass_audit::{Hash, NodeId};
use breakglass_core::{AuditEvent, DomainError, EventDraft, Grant, GrantId, Principal, Timestamp};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A rule of the domain refused the change (for example a user that already exists).
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The row changed since it was read; reload and decide again.
    #[error("the record changed concurrently")]
    Conflict,
    #[error("the data directory is not initialised")]
    NotInitialized,
    #[error("the store is already initialised")]
    AlreadyInitialized,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The transaction carrying this write could not be committed; nothing of it was kept.
    #[error("the database could not commit: {0}")]
    Commit(String),
    #[error("the store is closed")]
    Closed,
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether the database could not be reached or written at all (as opposed to refusing this
    /// particular change): the caller should retry later, and nothing was changed. (One
    /// exception, on PostgreSQL: if the connection broke while the commit itself was under way,
    /// the server may have kept the write; a retry must then tolerate finding it done, as
    /// versioned grant updates do by failing with [`StoreError::Conflict`].)
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Commit(_) | Self::Closed => true,
            Self::Database(e)
            | Self::Migrate(
                sqlx::migrate::MigrateError::Execute(e)
                | sqlx::migrate::MigrateError::ExecuteMigration(e, _),
            ) => unreachable_database(e),
            _ => false,
        }
    }
}

/// Whether `e` says the database cannot be reached or written at all, for either backend.
fn unreachable_database(e: &sqlx::Error) -> bool {
    match e {
        // A refused or broken connection, or no connection to be had in time.
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(d) => {
            if let Some(pg) = d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                return postgres::is_unavailable_code(pg.code());
            }
            // SQLite: the file is locked by another process, read-only, or its disk failed.
            let m = d.message().to_lowercase();
            m.contains("locked")
                || m.contains("busy")
                || m.contains("readonly")
                || m.contains("disk")
        }
        _ => false,
    }
}

/// An API token as stored: the secret itself is never kept, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiToken {
    pub id: String,
    pub principal: String,
    pub secret_hash: [u8; 32],
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// A grant with the version its row had when read, for optimistic concurrency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredGrant {
    pub grant: Grant,
    pub version: i64,
}

/// A credential to keep sealed until its holder collects it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCredential {
    pub fingerprint: String,
    pub ciphertext: Vec<u8>,
}

/// A role file as last loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleRecord {
    pub id: String,
    pub hash: String,
    pub file: String,
}

/// A signed checkpoint as kept in the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    /// The C2SP signed note, exactly as signed.
    pub note: String,
    pub signed_at: Timestamp,
}

/// Everything `audit verify` reads besides the events, taken in the same snapshot as them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditSnapshot {
    /// The head row's size and the root of its frontier.
    pub head_size: u64,
    pub head_root: Hash,
    pub checkpoints: Vec<StoredCheckpoint>,
}

/// What reads an audit snapshot: first the stored checkpoints, then every event in `seq` order.
pub trait AuditVisitor: Send {
    fn checkpoints(&mut self, _checkpoints: &[StoredCheckpoint]) {}
    /// The row's seq, its bytes, and the leaf hash recorded when it was appended (if any).
    fn event(&mut self, seq: u64, bytes: &[u8], recorded_leaf: Option<Hash>);
}

/// What the holder collects: the sealed credential and its fingerprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedCredential {
    pub fingerprint: String,
    pub ciphertext: Vec<u8>,
    /// The grant's end as read in the delivery's own transaction (the end this credential
    /// carries, even if an extension landed just before).
    pub expires_at: Option<Timestamp>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Whether `initialize` has run.
    async fn initialized(&self) -> Result<bool>;

    /// First start: the admin, their token, sealed key material and the opening events, all or
    /// nothing. Fails with [`StoreError::AlreadyInitialized`] on a second call.
    async fn initialize(
        &self,
        admin: &Principal,
        token: &ApiToken,
        secrets: &[(&str, Vec<u8>)],
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()>;

    /// Sealed key material stored at `initialize`.
    async fn secret(&self, name: &str) -> Result<Option<Vec<u8>>>;

    async fn create_principal(
        &self,
        p: &Principal,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()>;
    async fn principal(&self, name: &str) -> Result<Option<Principal>>;
    async fn principals(&self) -> Result<Vec<Principal>>;

    async fn create_token(&self, t: &ApiToken, events: &[EventDraft], now: Timestamp)
    -> Result<()>;
    async fn token(&self, id: &str) -> Result<Option<ApiToken>>;
    async fn tokens(&self) -> Result<Vec<ApiToken>>;
    /// Marks a token revoked; `false` if it does not exist or was already revoked (then nothing
    /// is written).
    async fn revoke_token(&self, id: &str, events: &[EventDraft], now: Timestamp) -> Result<bool>;

    async fn roles(&self) -> Result<Vec<RoleRecord>>;
    /// Replaces the record of loaded roles with `current` and records `events` (one per change),
    /// if the record is still `previous` (what the changes were worked out against, in `id`
    /// order); otherwise writes nothing and returns `false`, and the caller works the changes out
    /// again. So two replicas loading the same change at once record it once.
    async fn record_roles(
        &self,
        previous: &[RoleRecord],
        current: &[RoleRecord],
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool>;

    async fn insert_grant(&self, g: &Grant, events: &[EventDraft], now: Timestamp) -> Result<()>;
    /// Writes `g` if its row is still at `expected_version`, else [`StoreError::Conflict`]. A new
    /// credential, if any, is sealed alongside. When `g` has ended, any credential not yet
    /// delivered is erased.
    async fn update_grant(
        &self,
        g: &Grant,
        expected_version: i64,
        credential: Option<&NewCredential>,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()>;
    async fn grant(&self, id: GrantId) -> Result<Option<StoredGrant>>;
    /// Newest first, optionally only those in `state`.
    async fn grants(&self, state: Option<&str>, limit: u32) -> Result<Vec<StoredGrant>>;
    /// Every grant in one of `states` (for workers), oldest first.
    async fn grants_in_states(&self, states: &[&str]) -> Result<Vec<StoredGrant>>;
    /// Active grants whose end is at or before `now`.
    async fn due_for_expiry(&self, now: Timestamp) -> Result<Vec<StoredGrant>>;
    /// Pending requests made at or before `cutoff`, oldest first (candidates for time-out).
    async fn requested_before(&self, cutoff: Timestamp) -> Result<Vec<StoredGrant>>;

    /// Hands over the latest undelivered credential of an active grant exactly once: erases the
    /// ciphertext and records who took it (`credential.delivered`) in one transaction.
    async fn deliver_credential(
        &self,
        id: GrantId,
        to: &str,
        now: Timestamp,
    ) -> Result<SealedCredential>;

    /// Records events that change no other state (for example `auth.denied`).
    async fn append(&self, events: &[EventDraft], now: Timestamp) -> Result<()>;
    /// The latest `n` events, oldest first.
    async fn audit_tail(&self, n: u32) -> Result<Vec<AuditEvent>>;
    /// Number of events in the log.
    async fn audit_size(&self) -> Result<u64>;
    /// Up to `limit` events from `from` on, in order.
    async fn audit_events(&self, from: u64, limit: u32) -> Result<Vec<AuditEvent>>;
    /// The tree's size and root, from the head row.
    async fn audit_head(&self) -> Result<(u64, Hash)>;
    /// The stored subtree hashes asked for (those that exist).
    async fn audit_hashes(&self, ids: &BTreeSet<NodeId>) -> Result<BTreeMap<NodeId, Hash>>;
    /// Keeps a signed checkpoint; a second one for the same size is ignored.
    async fn save_checkpoint(&self, size: u64, note: &str, now: Timestamp) -> Result<()>;
    /// The checkpoint with the largest size.
    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>>;
    /// Stores sealed key material and plain settings that do not exist yet, with `events`, all or
    /// nothing; `false` (and nothing written) if the first name is already there.
    async fn add_secrets(
        &self,
        secrets: &[(&str, Vec<u8>)],
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool>;
    /// Reads the head, the checkpoints (handed to the visitor first) and then every event (in
    /// order), all in one snapshot.
    async fn audit_snapshot(&self, visitor: &mut dyn AuditVisitor) -> Result<AuditSnapshot>;
    /// Finishes the writes already accepted and closes every connection.
    async fn close(&self);
}
