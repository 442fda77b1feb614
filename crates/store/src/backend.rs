//! The one implementation of [`Store`], over what a backend provides ([`Backend`]): a connection
//! to read on, a way to run a write transaction, and the few calls each backend does its own way.
//! Every call here is one line of the noun module that does it; what differs between SQLite and
//! PostgreSQL is the SQL and the `Backend` implementations, nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::ops::DerefMut;
use std::pin::Pin;

use async_trait::async_trait;
use breakglass_audit::{Hash, NodeId};
use breakglass_core::attestation::{Attestation, NoticeKey};
use breakglass_core::{
    AuditEvent, EventDraft, Grant, GrantId, Lockdown, Principal, StateKind, Timestamp,
};
use tokio::sync::watch;

use crate::alerts::{self, Outbox};
use crate::attestations::{self, AttestationBook};
use crate::audit::{self, AuditReads};
use crate::auth::{self, Throttles};
use crate::sql::Conn;
use crate::{
    ApiToken, AuditSnapshot, AuditVisitor, ChannelBacklog, Delivery, DeliveryRecord, GrantUpdate,
    NewCredential, Result, RoleRecord, SealedCredential, Store, StoredCheckpoint, StoredGrant,
    StoredLogin, ThrottlePolicy, ThrottleState, drills, grants, lockdown, principals, reviews,
    roles, settings, tokens,
};
use breakglass_core::review::{Reminder, Review};

pub(crate) type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A count of this process's committed writes that may have appended audit events, for the
/// workers that wait for new events instead of polling for them ([`Store::watch_appends`]).
#[derive(Debug)]
pub(crate) struct Appends(watch::Sender<u64>);

impl Appends {
    pub(crate) fn new() -> Self {
        Self(watch::Sender::new(0))
    }

    fn committed(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// What a backend provides to [`Store`].
pub(crate) trait Backend: Outbox + AuditReads + Throttles + Send + Sync + 'static {
    type Conn: Conn;
    /// A connection for reads, returned to its pool when dropped.
    type Reader: DerefMut<Target = Self::Conn> + Send;

    /// A connection to read on.
    fn read(&self) -> impl Future<Output = Result<Self::Reader>> + Send;

    /// Runs `work` on `args` in one write transaction, and returns its result once the
    /// transaction is committed; nothing of it is kept if `work` fails. `work` owns what it uses
    /// through `args`: it may run on another task (SQLite's writer), and more than once (a
    /// PostgreSQL transaction that failed only because of a concurrent one is run again from the
    /// start).
    fn transaction<A, T, W>(&self, args: A, work: W) -> impl Future<Output = Result<T>> + Send
    where
        A: Send + Sync + 'static,
        T: Send + 'static,
        W: for<'c> Fn(&'c mut Self::Conn, &'c A) -> BoxFut<'c, Result<T>> + Send + Sync + 'static;

    /// Who is told when this process's writes may have grown the audit log.
    fn appends(&self) -> &Appends;

    /// A [`Backend::transaction`] that may append audit events: once it has committed, whoever
    /// watches the log ([`Store::watch_appends`]) hears of it.
    fn write<A, T, W>(&self, args: A, work: W) -> impl Future<Output = Result<T>> + Send
    where
        A: Send + Sync + 'static,
        T: Send + 'static,
        W: for<'c> Fn(&'c mut Self::Conn, &'c A) -> BoxFut<'c, Result<T>> + Send + Sync + 'static,
    {
        async move {
            let done = self.transaction(args, work).await;
            if done.is_ok() {
                self.appends().committed();
            }
            done
        }
    }

    /// See [`Store::close`].
    fn close_in(&self) -> impl Future<Output = ()> + Send;
}

#[async_trait]
impl<B: Backend> Store for B {
    async fn initialized(&self) -> Result<bool> {
        settings::initialized(&mut *self.read().await?).await
    }

    async fn initialize(
        &self,
        admin: &Principal,
        token: &ApiToken,
        secrets: &[(&str, Vec<u8>)],
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()> {
        let args = (
            admin.clone(),
            token.clone(),
            owned(secrets),
            events.to_vec(),
        );
        self.write(args, move |tx, (admin, token, secrets, events)| {
            Box::pin(settings::initialize(tx, admin, token, secrets, events, now))
        })
        .await
    }

    async fn secret(&self, name: &str) -> Result<Option<Vec<u8>>> {
        settings::secret(&mut *self.read().await?, name).await
    }

    async fn create_principal(
        &self,
        p: &Principal,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()> {
        let args = (p.clone(), events.to_vec());
        self.write(args, move |tx, (p, events)| {
            Box::pin(principals::create(tx, p, events, now))
        })
        .await
    }

    async fn principal(&self, name: &str) -> Result<Option<Principal>> {
        principals::get(&mut *self.read().await?, name).await
    }

    async fn principals(&self) -> Result<Vec<Principal>> {
        principals::all(&mut *self.read().await?).await
    }

    async fn create_token(
        &self,
        t: &ApiToken,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()> {
        let args = (t.clone(), events.to_vec());
        self.write(args, move |tx, (t, events)| {
            Box::pin(tokens::create(tx, t, events, now))
        })
        .await
    }

    async fn token(&self, id: &str) -> Result<Option<ApiToken>> {
        tokens::get(&mut *self.read().await?, id).await
    }

    async fn tokens(&self) -> Result<Vec<ApiToken>> {
        tokens::all(&mut *self.read().await?).await
    }

    async fn revoke_token(&self, id: &str, events: &[EventDraft], now: Timestamp) -> Result<bool> {
        let args = (id.to_owned(), events.to_vec());
        self.write(args, move |tx, (id, events)| {
            Box::pin(tokens::revoke(tx, id, events, now))
        })
        .await
    }

    async fn step_up(&self, id: &str, events: &[EventDraft], now: Timestamp) -> Result<bool> {
        let args = (id.to_owned(), events.to_vec());
        self.write(args, move |tx, (id, events)| {
            Box::pin(tokens::step_up(tx, id, events, now))
        })
        .await
    }

    async fn set_disabled(
        &self,
        name: &str,
        disabled: bool,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool> {
        let args = (name.to_owned(), events.to_vec());
        self.write(args, move |tx, (name, events)| {
            Box::pin(principals::set_disabled(tx, name, disabled, events, now))
        })
        .await
    }

    async fn login(&self, principal: &str) -> Result<Option<StoredLogin>> {
        auth::login(&mut *self.read().await?, principal).await
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
        let args = (principal.to_owned(), body.to_owned(), events.to_vec());
        self.write(args, move |tx, (principal, body, events)| {
            Box::pin(auth::put_login(
                tx,
                principal,
                body,
                expected,
                revoke_sessions,
                events,
                now,
            ))
        })
        .await
    }

    async fn throttles(&self, subjects: &[String]) -> Result<Vec<ThrottleState>> {
        self.throttles_in(subjects).await
    }

    async fn record_auth_failure(
        &self,
        subjects: &[(String, ThrottlePolicy)],
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<Vec<ThrottleState>> {
        let args = (subjects.to_vec(), events.to_vec());
        self.write(args, move |tx, (subjects, events)| {
            Box::pin(auth::record_failure(tx, subjects, events, now))
        })
        .await
    }

    async fn clear_auth_failures(&self, subject: &str, now: Timestamp) -> Result<()> {
        self.write(subject.to_owned(), move |tx, subject| {
            Box::pin(auth::clear(tx, subject, now))
        })
        .await
    }

    async fn record_auth_refusal(&self, subjects: &[String], now: Timestamp) -> Result<bool> {
        self.write(subjects.to_vec(), move |tx, subjects| {
            Box::pin(auth::refuse(tx, subjects, now))
        })
        .await
    }

    async fn sweep_throttles(&self, now: Timestamp) -> Result<Option<Timestamp>> {
        self.write((), move |tx, ()| Box::pin(auth::sweep(tx, now)))
            .await
    }

    async fn grants_for(&self, role: &str, requester: &str) -> Result<Vec<StoredGrant>> {
        grants::of_requester(&mut *self.read().await?, role, requester).await
    }

    async fn roles(&self) -> Result<Vec<RoleRecord>> {
        roles::all(&mut *self.read().await?).await
    }

    async fn record_roles(
        &self,
        previous: &[RoleRecord],
        current: &[RoleRecord],
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool> {
        let args = (previous.to_vec(), current.to_vec(), events.to_vec());
        self.write(args, move |tx, (previous, current, events)| {
            Box::pin(roles::record(tx, previous, current, events, now))
        })
        .await
    }

    async fn insert_grant(&self, g: &Grant, events: &[EventDraft], now: Timestamp) -> Result<()> {
        let args = (g.clone(), events.to_vec());
        self.write(args, move |tx, (g, events)| {
            Box::pin(grants::insert(tx, g, events, now))
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
        let args = (g.clone(), credential.cloned(), events.to_vec());
        self.write(args, move |tx, (g, credential, events)| {
            let credential = credential.as_ref();
            Box::pin(grants::update(
                tx,
                g,
                expected_version,
                credential,
                events,
                now,
            ))
        })
        .await
    }

    async fn grant(&self, id: GrantId) -> Result<Option<StoredGrant>> {
        grants::get(&mut *self.read().await?, id).await
    }

    async fn grants(&self, state: Option<StateKind>, limit: u32) -> Result<Vec<StoredGrant>> {
        grants::list(&mut *self.read().await?, state, limit).await
    }

    async fn grant_counts(&self) -> Result<BTreeMap<StateKind, u64>> {
        grants::counts(&mut *self.read().await?).await
    }

    async fn grants_in_states(&self, states: &[StateKind]) -> Result<Vec<StoredGrant>> {
        grants::in_states(&mut *self.read().await?, states).await
    }

    async fn due_for_expiry(&self, now: Timestamp) -> Result<Vec<StoredGrant>> {
        grants::due_for_expiry(&mut *self.read().await?, now).await
    }

    async fn requested_before(&self, cutoff: Timestamp) -> Result<Vec<StoredGrant>> {
        grants::requested_before(&mut *self.read().await?, cutoff).await
    }

    async fn next_expiry(&self) -> Result<Option<Timestamp>> {
        grants::next_expiry(&mut *self.read().await?).await
    }

    async fn oldest_requests(&self) -> Result<Vec<(String, Timestamp)>> {
        grants::oldest_requests(&mut *self.read().await?).await
    }

    async fn deliver_credential(
        &self,
        id: GrantId,
        to: &Principal,
        now: Timestamp,
    ) -> Result<SealedCredential> {
        self.write(to.clone(), move |tx, to| {
            Box::pin(grants::deliver(tx, id, to, now))
        })
        .await
    }

    async fn append(&self, events: &[EventDraft], now: Timestamp) -> Result<()> {
        self.write(events.to_vec(), move |tx, events| {
            Box::pin(tx.append(events, now))
        })
        .await
    }

    async fn audit_tail(&self, n: u32) -> Result<Vec<AuditEvent>> {
        audit::tail(&mut *self.read().await?, n).await
    }

    async fn audit_size(&self) -> Result<u64> {
        audit::size(&mut *self.read().await?).await
    }

    async fn audit_events(&self, from: u64, limit: u32) -> Result<Vec<AuditEvent>> {
        audit::from(&mut *self.read().await?, from, limit).await
    }

    async fn audit_head(&self) -> Result<(u64, Hash)> {
        let head = audit::head(&mut *self.read().await?).await?;
        Ok((head.size(), head.root()))
    }

    async fn audit_hashes(&self, ids: &BTreeSet<NodeId>) -> Result<BTreeMap<NodeId, Hash>> {
        self.audit_hashes_in(ids).await
    }

    async fn save_checkpoint(&self, size: u64, note: &str, now: Timestamp) -> Result<()> {
        // Appends nothing: the checkpointer's own write does not wake the log's watchers.
        self.transaction(note.to_owned(), move |tx, note| {
            Box::pin(audit::save_checkpoint(tx, size, note, now))
        })
        .await
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        audit::latest_checkpoint(&mut *self.read().await?).await
    }

    async fn add_secrets(
        &self,
        secrets: &[(&str, Vec<u8>)],
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool> {
        let args = (owned(secrets), events.to_vec());
        self.write(args, move |tx, (secrets, events)| {
            Box::pin(settings::add_secrets(tx, secrets, events, now))
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
        let args = (name.to_owned(), value.to_vec(), events.to_vec());
        self.write(args, move |tx, (name, value, events)| {
            Box::pin(settings::record_setting(tx, name, value, events, now))
        })
        .await
    }

    async fn setting(&self, name: &str) -> Result<Option<Vec<u8>>> {
        settings::setting(&mut *self.read().await?, name).await
    }

    async fn audit_snapshot(&self, visitor: &mut dyn AuditVisitor) -> Result<AuditSnapshot> {
        self.audit_snapshot_in(visitor).await
    }

    async fn alert_cursor(&self) -> Result<u64> {
        alerts::cursor(&mut *self.read().await?).await
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
        // Appends nothing: a delivery done does not wake the dispatcher's router.
        self.transaction((), move |tx, ()| Box::pin(alerts::succeeded(tx, id, now)))
            .await
    }

    async fn delivery_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<Timestamp>,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool> {
        let args = (error.to_owned(), events.to_vec());
        self.write(args, move |tx, (error, events)| {
            Box::pin(alerts::failed(tx, id, error, retry_at, events, now))
        })
        .await
    }

    async fn alert_backlog(&self) -> Result<Vec<ChannelBacklog>> {
        alerts::backlog(&mut *self.read().await?).await
    }

    async fn next_delivery_due(&self) -> Result<Option<Timestamp>> {
        alerts::next_due(&mut *self.read().await?).await
    }

    // Drills (issue 13, item 3).
    async fn start_drill(
        &self,
        d: &breakglass_core::Drill,
        g: &Grant,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()> {
        let args = (d.clone(), g.clone(), events.to_vec());
        self.write(args, move |tx, (d, g, events)| {
            Box::pin(drills::start(tx, d, g, events, now))
        })
        .await
    }

    async fn update_drill(
        &self,
        d: &breakglass_core::Drill,
        expected_version: i64,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<crate::StoredDrill> {
        let args = (d.clone(), events.to_vec());
        self.write(args, move |tx, (d, events)| {
            Box::pin(drills::update(tx, d, expected_version, events, now))
        })
        .await
    }

    async fn drill(&self, id: breakglass_core::DrillId) -> Result<Option<crate::StoredDrill>> {
        drills::get(&mut *self.read().await?, id).await
    }

    async fn drills(&self, role: Option<&str>, limit: u32) -> Result<Vec<crate::StoredDrill>> {
        drills::list(&mut *self.read().await?, role, limit).await
    }

    async fn open_drills(&self) -> Result<Vec<crate::StoredDrill>> {
        drills::open(&mut *self.read().await?).await
    }

    async fn drill_deliveries(
        &self,
        grant: GrantId,
    ) -> Result<Option<Vec<breakglass_core::drill::ChannelDelivery>>> {
        drills::deliveries(&mut *self.read().await?, grant).await
    }

    async fn drill_credential(&self, grant: GrantId) -> Result<Option<Vec<u8>>> {
        drills::credential(&mut *self.read().await?, grant).await
    }

    async fn drill_schedule(
        &self,
        roles: &[String],
        now: Timestamp,
    ) -> Result<Vec<crate::DrillSchedule>> {
        // Read first: a write (and its fsync) only when a role has no row yet, so an idle broker's
        // drill worker writes nothing.
        let have = drills::schedule(&mut *self.read().await?, &[], now).await?;
        if roles.iter().all(|r| have.iter().any(|s| &s.role == r)) {
            return Ok(have);
        }
        self.transaction(roles.to_vec(), move |tx, roles| {
            Box::pin(drills::schedule(tx, roles, now))
        })
        .await
    }

    async fn record_drill_overdue(
        &self,
        role: &str,
        due: Timestamp,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool> {
        let args = (role.to_owned(), events.to_vec());
        self.write(args, move |tx, (role, events)| {
            Box::pin(drills::mark_overdue(tx, role, due, events, now))
        })
        .await
    }

    // Post-use reviews.
    async fn record_review(
        &self,
        g: &Grant,
        expected_version: i64,
        review: &Review,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<StoredGrant> {
        let args = (g.clone(), review.clone(), events.to_vec());
        self.write(args, move |tx, (g, review, events)| {
            Box::pin(reviews::record(
                tx,
                g,
                expected_version,
                review,
                events,
                now,
            ))
        })
        .await
    }

    async fn reviews_of(&self, id: GrantId) -> Result<Vec<Review>> {
        reviews::of_grant(&mut *self.read().await?, id).await
    }

    async fn reviews(&self, limit: u32) -> Result<Vec<Review>> {
        reviews::latest(&mut *self.read().await?, limit).await
    }

    async fn unreviewed(&self) -> Result<Vec<(StoredGrant, Timestamp)>> {
        reviews::unreviewed(&mut *self.read().await?).await
    }

    async fn review_reminders(&self) -> Result<Vec<(GrantId, Reminder)>> {
        reviews::reminders(&mut *self.read().await?).await
    }

    async fn send_review_reminder(
        &self,
        id: GrantId,
        stage: Reminder,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool> {
        let args = events.to_vec();
        self.write(args, move |tx, events| {
            Box::pin(reviews::remind(tx, id, stage, events, now))
        })
        .await
    }

    async fn grant_events(&self, id: GrantId) -> Result<Vec<AuditEvent>> {
        reviews::grant_events(&mut *self.read().await?, id).await
    }

    async fn events_between(
        &self,
        from: Timestamp,
        to: Timestamp,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        reviews::between(&mut *self.read().await?, from, to, limit).await
    }

    async fn deliveries_of_grant(&self, id: GrantId) -> Result<Vec<DeliveryRecord>> {
        reviews::deliveries(&mut *self.read().await?, id).await
    }

    fn watch_appends(&self) -> watch::Receiver<u64> {
        self.appends().0.subscribe()
    }

    async fn engage_lockdown(
        &self,
        l: &Lockdown,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool> {
        let args = (l.clone(), events.to_vec());
        self.write(args, move |tx, (l, events)| {
            Box::pin(lockdown::engage(tx, l, events, now))
        })
        .await
    }

    async fn lift_lockdowns(
        &self,
        ids: &[String],
        by: &str,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()> {
        let args = (ids.to_vec(), by.to_owned(), events.to_vec());
        self.write(args, move |tx, (ids, by, events)| {
            Box::pin(lockdown::lift(tx, ids, by, events, now))
        })
        .await
    }

    async fn lockdowns(&self) -> Result<Vec<Lockdown>> {
        lockdown::in_force(&mut *self.read().await?).await
    }

    // Owner attestation (issue 13, item 2).
    async fn roles_in_force(&self, roles: &[(String, String)], now: Timestamp) -> Result<()> {
        // Appends nothing: what is in force is already in the log as `role.changed`.
        self.transaction(roles.to_vec(), move |tx, roles| {
            Box::pin(attestations::in_force(tx, roles, now))
        })
        .await
    }

    async fn attestation_book(&self) -> Result<AttestationBook> {
        attestations::book(&mut *self.read().await?).await
    }

    async fn record_attestation(
        &self,
        a: &Attestation,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()> {
        let args = (a.clone(), events.to_vec());
        self.write(args, move |tx, (a, events)| {
            Box::pin(attestations::record(tx, a, events, now))
        })
        .await
    }

    async fn update_grants(
        &self,
        batch: &[GrantUpdate],
        now: Timestamp,
    ) -> Result<Vec<Option<StoredGrant>>> {
        self.write(batch.to_vec(), move |tx, batch| {
            Box::pin(lockdown::update_grants(tx, batch, now))
        })
        .await
    }

    async fn record_attestation_notice(
        &self,
        key: &NoticeKey,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool> {
        let args = (key.clone(), events.to_vec());
        self.write(args, move |tx, (key, events)| {
            Box::pin(attestations::record_notice(tx, key, events, now))
        })
        .await
    }

    async fn attestation_notices(&self) -> Result<BTreeSet<NoticeKey>> {
        attestations::notices(&mut *self.read().await?).await
    }

    async fn close(&self) {
        self.close_in().await;
    }
}

/// `secrets` owned, for a write's arguments.
fn owned(secrets: &[(&str, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    secrets
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.clone()))
        .collect()
}
