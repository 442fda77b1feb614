//! Persistence for breakglass behind one [`Store`] trait shaped by commands, not tables.
//!
//! Every call that changes state takes the audit events that describe the change and writes both
//! in one transaction: if the audit rows cannot be written, nothing changes (invariant 2).
//! SQLite is the embedded default ([`SqliteStore`]); PostgreSQL ([`PostgresStore`]) is the shared
//! store that many broker processes use at once.
//!
//! Layout: both backends run the same code, and differ only in their SQL and in how they
//! connect and write.
//!
//! - One module per domain noun at this level (`grants`, `principals`, `tokens`, `auth`, `roles`,
//!   `settings`, `audit`, `alerts`) does everything for its noun: the calls, the rules each write
//!   applies inside its transaction, and how rows map to domain values. Each declares the SQL it
//!   needs as a table of statements (`GrantSql`, …).
//! - `sqlite/` and `postgres/` have a file of the same name holding that table in their dialect,
//!   plus the few calls the backend does its own way (how alert routing and claims take turns,
//!   reading a list of keys). Their `mod.rs` keeps the connections, the way writes run (SQLite's
//!   group-commit writer, PostgreSQL's retry loop), the audit append and how a parameter is bound.
//! - `sql` runs a statement on either backend's connection; `backend` implements [`Store`] once,
//!   over what a backend provides.

mod alerts;
mod attestations;
mod audit;
mod auth;
mod backend;
mod drills;
mod grants;
mod lockdown;
mod postgres;
mod principals;
mod reviews;
mod roles;
mod settings;
mod sql;
mod sqlite;
mod tokens;

pub use breakglass_audit;
/// The lock rule is the core's; the store applies it in the transaction that counts a failure.
pub use breakglass_core::ThrottlePolicy;

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use breakglass_audit::{Hash, NodeId};
use breakglass_core::review::{Reminder, Review};
use breakglass_core::{
    AuditEvent, DomainError, EventDraft, Grant, GrantId, Lockdown, Principal, Scope, StateKind,
    Timestamp,
};

pub use attestations::{AttestationBook, RoleContent};
pub use drills::{DrillSchedule, StoredDrill};
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
    pub kind: TokenKind,
    /// What the token may be used for; `None` means everything its principal may do. Stored as a
    /// JSON array of the scope names.
    pub scopes: Option<Vec<Scope>>,
    /// When a second factor was last verified for this token (step-up).
    pub stepped_up_at: Option<Timestamp>,
}

/// How a token came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// Made with `tokens create`: for scripts and service principals.
    Api,
    /// Made by signing in (`breakglass login`).
    Session,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Session => "session",
        }
    }
}

/// A principal's sign-in factors as the server keeps them (its own JSON), with the row version
/// every change must name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLogin {
    pub body: String,
    pub version: i64,
}

/// Consecutive failed sign-ins for one subject (`account NAME`, `source ADDR`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThrottleState {
    pub subject: String,
    pub failures: u32,
    pub locked_until: Option<Timestamp>,
}

/// A grant with the version its row has, for optimistic concurrency: as read, or as just written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredGrant {
    pub grant: Grant,
    pub version: i64,
}

/// One decision of a batch written with [`Store::update_grants`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantUpdate {
    pub grant: Grant,
    pub expected_version: i64,
    pub events: Vec<EventDraft>,
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

/// A delivery of one audit event to one alert channel: a row of the alert outbox.
///
/// Deliveries are operational state, not part of the audit tree: their rows change as attempts
/// are made. The event itself is the audit log's, read back byte for byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    /// The audit event this delivers.
    pub seq: u64,
    pub channel: String,
    /// Attempts made before this claim.
    pub attempts: u32,
    /// When the event was routed to this channel.
    pub created_at: Timestamp,
    /// The event's canonical bytes, exactly as in the audit log.
    pub bytes: Vec<u8>,
}

/// Per channel: what waits and what failed (for metrics and `/readyz`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelBacklog {
    pub channel: String,
    /// Neither delivered nor dead.
    pub pending: u64,
    /// When the oldest pending delivery was routed.
    pub oldest_pending: Option<Timestamp>,
    pub dead: u64,
    pub delivered: u64,
    /// Pending after at least one failed attempt.
    pub failing: u64,
}

/// What became of one alert about an event (for a review's evidence): delivered, dead, or still
/// being tried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub seq: u64,
    pub channel: String,
    pub attempts: u32,
    pub delivered_at: Option<Timestamp>,
    pub dead_at: Option<Timestamp>,
    /// The last failure, which holds no secret.
    pub last_error: Option<String>,
}

/// The longest `last_error` kept for a failed delivery, in bytes; a longer one is cut at a
/// character boundary.
pub const MAX_DELIVERY_ERROR: usize = 1024;

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

    /// Adds principal `p` with `events`; [`DomainError::PrincipalExists`] (and nothing written)
    /// if the name is taken.
    async fn create_principal(
        &self,
        p: &Principal,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()>;
    /// The principal named `name`, if there is one.
    async fn principal(&self, name: &str) -> Result<Option<Principal>>;
    /// Every principal, by name.
    async fn principals(&self) -> Result<Vec<Principal>>;

    /// Adds token `t` (its secret's hash, never the secret) with `events`.
    async fn create_token(&self, t: &ApiToken, events: &[EventDraft], now: Timestamp)
    -> Result<()>;
    /// The token with id `id`, revoked or not. A stored scope name this version does not know is
    /// [`StoreError::Corrupt`].
    async fn token(&self, id: &str) -> Result<Option<ApiToken>>;
    /// Every token, revoked ones included, oldest first.
    async fn tokens(&self) -> Result<Vec<ApiToken>>;
    /// Marks a token revoked; `false` if it does not exist or was already revoked (then nothing
    /// is written).
    async fn revoke_token(&self, id: &str, events: &[EventDraft], now: Timestamp) -> Result<bool>;

    /// Records that a second factor was verified for token `id` at `now`; `false` if the token is
    /// unknown or revoked.
    async fn step_up(&self, id: &str, events: &[EventDraft], now: Timestamp) -> Result<bool>;

    /// Disables (or enables again) principal `name`; `false` if there is no such principal or it
    /// already was. Disabling also revokes every token and session it holds.
    async fn set_disabled(
        &self,
        name: &str,
        disabled: bool,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool>;

    /// A principal's sign-in factors, if it has any.
    async fn login(&self, principal: &str) -> Result<Option<StoredLogin>>;

    /// Writes a principal's sign-in factors: `expected` `None` inserts (a conflict if a row
    /// exists), `Some(v)` replaces version `v` (a conflict if the row moved on). With `revoke_sessions`
    /// every session the principal holds is revoked in the same transaction (a password or
    /// authenticator reset): every token it holds, sessions and API tokens alike.
    async fn put_login(
        &self,
        principal: &str,
        body: &str,
        expected: Option<i64>,
        revoke_sessions: bool,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()>;

    /// The throttle state of each subject that has one.
    async fn throttles(&self, subjects: &[String]) -> Result<Vec<ThrottleState>>;

    /// Counts one failed sign-in against each subject under its policy and writes `events` plus
    /// one `auth.locked` for each subject this failure locks, all in one transaction.
    async fn record_auth_failure(
        &self,
        subjects: &[(String, ThrottlePolicy)],
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<Vec<ThrottleState>>;

    /// Forgets a subject's failures (after a successful sign-in). Refusals it counted while
    /// locked are recorded first (`auth.refused_while_locked`), in the same transaction.
    async fn clear_auth_failures(&self, subject: &str, now: Timestamp) -> Result<()>;

    /// Counts one refusal against each of `subjects` that is locked at `now` (a sign-in refused
    /// without checking anything, because of the lock). No audit event is written per refusal:
    /// [`Store::sweep_throttles`] records one per lock window, with the count. Returns whether
    /// this was the first refusal of some subject's window (so a sweep now has work at its end).
    async fn record_auth_refusal(&self, subjects: &[String], now: Timestamp) -> Result<bool>;

    /// Records one `auth.refused_while_locked` event for every lock window that has ended with
    /// refusals counted in it, and deletes the counters of subjects whose last failure is older
    /// than [`ThrottlePolicy::FORGET_AFTER_MS`] and that are neither locked nor owed such an
    /// event; all in one transaction. Returns when the next sweep will have something to do (the
    /// earliest end of a window with refusals, or the earliest counter to forget), if ever.
    async fn sweep_throttles(&self, now: Timestamp) -> Result<Option<Timestamp>>;

    /// Every grant of `role` requested by `requester`, newest first.
    async fn grants_for(&self, role: &str, requester: &str) -> Result<Vec<StoredGrant>>;

    /// The record of loaded role files, by `id`.
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

    /// Adds the new grant `g` (at version 1) with `events`.
    async fn insert_grant(&self, g: &Grant, events: &[EventDraft], now: Timestamp) -> Result<()>;
    /// Writes `g` if its row is still at `expected_version`, else [`StoreError::Conflict`] (and
    /// nothing written). A new credential, if any, is sealed alongside. When `g` has ended or is
    /// revoking, any credential not yet delivered is erased. Returns the grant as stored, at its
    /// new version.
    async fn update_grant(
        &self,
        g: &Grant,
        expected_version: i64,
        credential: Option<&NewCredential>,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<StoredGrant>;
    /// The grant `id`, if there is one.
    async fn grant(&self, id: GrantId) -> Result<Option<StoredGrant>>;
    /// Up to `limit` grants, newest first, optionally only those in `state`.
    async fn grants(&self, state: Option<StateKind>, limit: u32) -> Result<Vec<StoredGrant>>;
    /// How many grants are in each state (states with none are left out). A stored state name
    /// that is not a [`StateKind`] is [`StoreError::Corrupt`].
    async fn grant_counts(&self) -> Result<BTreeMap<StateKind, u64>>;
    /// Every grant in one of `states` (for workers), oldest first.
    async fn grants_in_states(&self, states: &[StateKind]) -> Result<Vec<StoredGrant>>;
    /// Active grants whose end is at or before `now`.
    async fn due_for_expiry(&self, now: Timestamp) -> Result<Vec<StoredGrant>>;
    /// Pending requests made at or before `cutoff`, oldest first (candidates for time-out).
    async fn requested_before(&self, cutoff: Timestamp) -> Result<Vec<StoredGrant>>;
    /// The earliest end of an active grant (past or not), or `None` if no grant is active: when
    /// the reaper next has a grant to expire.
    async fn next_expiry(&self) -> Result<Option<Timestamp>>;
    /// For each role with pending requests, when its oldest was made, by role: the reaper adds
    /// the role's `request_ttl` to know when it next has a request to time out.
    async fn oldest_requests(&self) -> Result<Vec<(String, Timestamp)>>;

    /// Hands over the latest undelivered credential of grant `id` to `to` exactly once: reads the
    /// grant and its credential under the grant's lock, lets the core decide
    /// ([`Grant::deliver_credential`]), then erases the ciphertext and records the core's
    /// `credential.delivered` event in the same transaction.
    async fn deliver_credential(
        &self,
        id: GrantId,
        to: &Principal,
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
    /// Sets the plain setting `name` to `value` with `events`, in one transaction, if it is not
    /// already `value`; returns whether it changed (with several replicas, only one records a
    /// change).
    async fn record_setting(
        &self,
        name: &str,
        value: &[u8],
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool>;
    /// A plain setting recorded with [`Store::record_setting`].
    async fn setting(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Reads the head, the checkpoints (handed to the visitor first) and then every event (in
    /// order), all in one snapshot.
    async fn audit_snapshot(&self, visitor: &mut dyn AuditVisitor) -> Result<AuditSnapshot>;

    /// The next `seq` the alert router will read.
    async fn alert_cursor(&self) -> Result<u64>;
    /// Routes the events from the alert cursor on (at most `limit` of them): for each, `route`
    /// names its channels (possibly none), one delivery per channel is added, due at `now`, and
    /// the cursor moves past the last event routed, all in one transaction. `route` returning
    /// `None` stops the pass before that event (the caller cannot route it yet; for example it
    /// looked up the events' grants beforehand and another replica moved the cursor meanwhile).
    /// Returns how many events were routed (0: at the end of the log, or stopped at once).
    ///
    /// Every committed event is routed exactly once, however many replicas route at once: the
    /// cursor is what they take turns on, and a crash anywhere resumes from it.
    // The `for<'e>` is what `Fn(&AuditEvent)` means anyway; spelled out, `async_trait` leaves it
    // alone instead of tying the event's lifetime to the call's.
    async fn route_alerts(
        &self,
        limit: u32,
        route: &(dyn for<'e> Fn(&'e AuditEvent) -> Option<Vec<String>> + Send + Sync),
        now: Timestamp,
    ) -> Result<usize>;
    /// Claims up to `limit` due deliveries (neither delivered nor dead, due at or before `now`,
    /// not leased or the lease ended at or before `now`), the longest due first, and leases them
    /// until `now + lease_ms`. A claimed delivery is not claimed again before its lease ends, and
    /// replicas claiming at the same moment never get the same one (on PostgreSQL through
    /// `FOR UPDATE SKIP LOCKED`, so that they do not wait for one another either). Deliveries to
    /// the channels in `skip` are left alone (the caller has enough of theirs in flight).
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_ms: i64,
        limit: u32,
        skip: &[String],
    ) -> Result<Vec<Delivery>>;
    /// Marks a delivery delivered. Idempotent; a delivery already dead, or unknown, is left as it
    /// is.
    async fn delivery_succeeded(&self, id: i64, now: Timestamp) -> Result<()>;
    /// Records a failed attempt: one more attempt, `error` kept as the last error (it must hold
    /// no secret; cut to [`MAX_DELIVERY_ERROR`] bytes) and the lease released. The delivery is
    /// due again at `retry_at`, or, when that is `None`, dead (the dead letter). `events` (for
    /// example `alert.failed` with the dead letter) are appended in the same transaction.
    /// Returns `false` and writes nothing if the delivery is already delivered or dead (another
    /// replica finished it) or does not exist.
    async fn delivery_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<Timestamp>,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool>;
    /// The backlog of every channel that has had a delivery, by channel name.
    async fn alert_backlog(&self) -> Result<Vec<ChannelBacklog>>;
    /// When the earliest pending delivery can next be claimed (due, and its lease, if any,
    /// ended), past or not; `None` if nothing is pending: when the dispatcher next has a delivery
    /// to make.
    async fn next_delivery_due(&self) -> Result<Option<Timestamp>>;

    // Post-use reviews.
    /// Records `review` of grant `g` with `events`, in one transaction: `g` (as the core decided
    /// it: an emergency grant's `reviewed_at` set by a final review) is written over its row if
    /// it is still at `expected_version`, else [`StoreError::Conflict`] and nothing written.
    async fn record_review(
        &self,
        g: &Grant,
        expected_version: i64,
        review: &Review,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<StoredGrant>;
    /// Every review of grant `id`, oldest first.
    async fn reviews_of(&self, id: GrantId) -> Result<Vec<Review>>;
    /// The latest `limit` reviews, newest first.
    async fn reviews(&self, limit: u32) -> Result<Vec<Review>>;
    /// Every grant that ended after it became active and has no final review, with when it
    /// became active (its `grant.activated` event's time), oldest first.
    async fn unreviewed(&self) -> Result<Vec<(StoredGrant, Timestamp)>>;
    /// Every reminder sent about an overdue review.
    async fn review_reminders(&self) -> Result<Vec<(GrantId, Reminder)>>;
    /// Records reminder `stage` about grant `id` with `events`, if it was not sent yet; `false`
    /// (and nothing written) if it was, so replicas sending it at once send it once.
    async fn send_review_reminder(
        &self,
        id: GrantId,
        stage: Reminder,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool>;
    /// Every audit event about grant `id`, in order.
    async fn grant_events(&self, id: GrantId) -> Result<Vec<AuditEvent>>;
    /// Up to `limit` events written from `from` to `to` (inclusive), in order.
    async fn events_between(
        &self,
        from: Timestamp,
        to: Timestamp,
        limit: u32,
    ) -> Result<Vec<AuditEvent>>;
    /// The alert deliveries of grant `id`'s events, by seq and channel.
    async fn deliveries_of_grant(&self, id: GrantId) -> Result<Vec<DeliveryRecord>>;

    /// Changes after each write of this process that may have appended audit events has
    /// committed (the count is of such writes, not of events): the workers that route new events
    /// wait on it instead of polling the log. Alert routing, claims, finished deliveries and saved
    /// checkpoints, which append nothing, do not change it. Writes by other processes (other
    /// replicas on one PostgreSQL database) are not seen here: whoever waits on this must also
    /// look at the log now and then.
    // Drills (issue 13, item 3).
    /// Adds a drill and its grant (flagged `drill`) with the events of both, in one transaction.
    async fn start_drill(
        &self,
        d: &breakglass_core::Drill,
        g: &Grant,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()>;
    /// Writes a drill over the version it was decided from, with its events; `Conflict` if it
    /// moved on meanwhile.
    async fn update_drill(
        &self,
        d: &breakglass_core::Drill,
        expected_version: i64,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<StoredDrill>;
    async fn drill(&self, id: breakglass_core::DrillId) -> Result<Option<StoredDrill>>;
    /// Drills, of `role` or of every role, newest first.
    async fn drills(&self, role: Option<&str>, limit: u32) -> Result<Vec<StoredDrill>>;
    /// Drills not completed yet, oldest first.
    async fn open_drills(&self) -> Result<Vec<StoredDrill>>;
    /// The deliveries of the `drill.started` alert of drill grant `grant`, one per channel it was
    /// routed to; `None` until the dispatcher has routed it.
    async fn drill_deliveries(
        &self,
        grant: GrantId,
    ) -> Result<Option<Vec<breakglass_core::drill::ChannelDelivery>>>;
    /// The sealed credential of drill grant `grant`, for the broker to exercise; never marked
    /// delivered (nobody receives it), and gone once the grant is revoking.
    async fn drill_credential(&self, grant: GrantId) -> Result<Option<Vec<u8>>>;
    /// Each role's drill schedule, first adding a row (first seen `now`) for each of `roles`
    /// that has none.
    async fn drill_schedule(&self, roles: &[String], now: Timestamp) -> Result<Vec<DrillSchedule>>;
    /// Records `drill.overdue` for `role`'s due date `due` once: `false` (and nothing written)
    /// if it was already recorded.
    async fn record_drill_overdue(
        &self,
        role: &str,
        due: Timestamp,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool>;

    fn watch_appends(&self) -> tokio::sync::watch::Receiver<u64>;

    // Lockdown.
    /// Records lockdown `l` as in force, with `events`, unless one of the same scope is in force
    /// already: then nothing is written and `false` comes back (the caller reads the lockdowns
    /// again and lets the core decide again).
    async fn engage_lockdown(
        &self,
        l: &Lockdown,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool>;
    /// Lifts the lockdowns `ids` (by `by`), with `events`, all or nothing: if one of them is no
    /// longer in force, [`StoreError::Conflict`] and nothing written.
    async fn lift_lockdowns(
        &self,
        ids: &[String],
        by: &str,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()>;
    /// Every lockdown in force, oldest first.
    async fn lockdowns(&self) -> Result<Vec<Lockdown>>;
    // Owner attestation (issue 13, item 2).
    /// Records `roles` (id, file hash) as the roles in force: each content as in force since
    /// `now` unless that very content already was (a changed file starts again), and roles no
    /// longer in force forgotten. Operational state, derived from `role.changed`: no event.
    async fn roles_in_force(&self, roles: &[(String, String)], now: Timestamp) -> Result<()>;
    /// When each role's content came into force, and the latest attestation of each content.
    async fn attestation_book(&self) -> Result<AttestationBook>;
    /// Records an attestation the core decided, with its `role.attested` event.
    async fn record_attestation(
        &self,
        a: &breakglass_core::attestation::Attestation,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()>;
    /// Records that the notice `key` was sent, with its events, unless it already was: then
    /// nothing is written and `false` is returned. So each is sent once, whichever replica or
    /// restart gets to it.
    async fn record_attestation_notice(
        &self,
        key: &breakglass_core::attestation::NoticeKey,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool>;
    /// Every attestation notice sent.
    async fn attestation_notices(
        &self,
    ) -> Result<BTreeSet<breakglass_core::attestation::NoticeKey>>;
    /// Writes many grant decisions in one transaction, for a sweep over many grants (a
    /// lockdown), so that the audit head's lock and the commit are paid once per batch, not once
    /// per grant. Each grant whose row is still at its expected version is written with its
    /// events exactly as [`Store::update_grant`] writes one (no credential); one that moved on
    /// meanwhile is skipped, with nothing of it written, and `None` stands in its place.
    async fn update_grants(
        &self,
        batch: &[GrantUpdate],
        now: Timestamp,
    ) -> Result<Vec<Option<StoredGrant>>>;

    /// Finishes the writes already accepted and closes every connection.
    async fn close(&self);
}
