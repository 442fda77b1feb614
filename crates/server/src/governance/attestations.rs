//! Owner attestation of roles: a member of the owner group re-confirms, on a schedule, that a role
//! is still needed and correctly scoped. The rules are the core's
//! ([`breakglass_core::attestation`]); this gathers what they need (the role in force, when its
//! content came into force, its latest attestation) and writes what they decide.
//!
//! - [`attest`]: `breakglass roles attest ROLE --note "…"` (`role.attested`);
//! - [`statuses`]: where every role in force stands, for `roles list`;
//! - [`check_request`]: the gate a new request (emergency ones included) passes first;
//! - [`remind`]: the worker's pass (`workers/attestations.rs`), which sends each reminder and each
//!   lapse alert once.

use breakglass_core::attestation::{self, Attestation, AttestationStatus};
use breakglass_core::{Role, Timestamp};
use breakglass_store::{AttestationBook, Store};

use crate::app::App;
use crate::error::ServiceError;
use crate::signin::Caller;

/// Where `role` stands at `now`, from the book. A content the store has not recorded as in force
/// yet (another replica is loading it) counts as in force from `now`.
fn status_in(book: &AttestationBook, role: &Role, now: Timestamp) -> AttestationStatus {
    let id = role.id.as_str();
    let since = book.since(id, &role.hash).unwrap_or(now);
    attestation::status(role, book.latest(id, &role.hash), since, now)
}

/// A member of `role`'s owner group, a person with a fresh step-up, confirms the role as its file
/// reads now. Returns what was recorded and where the role stands after it.
pub async fn attest(
    app: &App,
    caller: &Caller,
    role: &str,
    note: &str,
) -> Result<(Attestation, AttestationStatus), ServiceError> {
    let roles = app.catalog.roles();
    let role = roles.require(role)?;
    let now = app.clock.now();
    // The core's refusal (not in the owner group, a service, a bad note) says most precisely what
    // is wrong; then the token's scope and the step-up.
    let (a, event) = attestation::attest(role, &caller.principal, note, now)?;
    app.access.check(caller, caller.action, Some(role), false)?;
    app.store.record_attestation(&a, &[event], now).await?;
    tracing::info!(role = %role.id, by = %a.by, next_due = %a.next_due, "role attested");
    let book = app.store.attestation_book().await?;
    Ok((a, status_in(&book, role, now)))
}

/// Where every role in force stands now, by id.
pub async fn statuses(app: &App) -> Result<Vec<(String, AttestationStatus)>, ServiceError> {
    let book = app.store.attestation_book().await?;
    let now = app.clock.now();
    Ok(app
        .catalog
        .roles()
        .iter()
        .map(|r| (r.id.to_string(), status_in(&book, r, now)))
        .collect())
}

/// Refuses a new request of `role` (emergency ones included) if it lapsed or expired and
/// disables on lapse (`role_lapsed`). Grants already active are not touched.
pub(crate) async fn check_request(
    store: &dyn Store,
    role: &Role,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let book = store.attestation_book().await?;
    Ok(attestation::check_request(
        role,
        &status_in(&book, role, now),
    )?)
}

/// Sends every reminder (`role.attestation_due`) and lapse alert (`role.lapsed`) owed now that
/// has not been sent, each once whichever replica or restart gets to it first. Returns when the
/// next one falls due, if ever (as things stand: an attestation or a reload changes it).
pub async fn remind(app: &App) -> Result<Option<Timestamp>, ServiceError> {
    let book = app.store.attestation_book().await?;
    let sent = app.store.attestation_notices().await?;
    let now = app.clock.now();
    let mut next: Option<Timestamp> = None;
    for role in app.catalog.roles().iter() {
        let status = status_in(&book, role, now);
        if let Some((key, event)) = attestation::notice(role, &status)
            && !sent.contains(&key)
            && app
                .store
                .record_attestation_notice(&key, &[event], now)
                .await?
        {
            tracing::warn!(role = %role.id, notice = key.kind.as_str(), at = %key.at, "attestation notice sent");
        }
        if let Some(at) = attestation::next_notice(&status, now) {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
    }
    Ok(next)
}
