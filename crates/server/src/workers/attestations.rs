//! The attestation reminder: sends `role.attestation_due` from two weeks before a role's
//! attestation is due (once per due date) and `role.lapsed` once when it lapses or passes its
//! `expires` date, on the role's channels (and `always` for a lapse). The pass is
//! [`crate::governance::attestations::remind`]; each notice is recorded with its event in one
//! transaction keyed by (role, content, kind, date), so restarts and replicas send it once.
//!
//! It sleeps until the next notice falls due, and looks again every `recheck` (the reconcile
//! interval) however far off that seems: an attestation, a reload or another replica's work are
//! not told to it.

use std::sync::Arc;
use std::time::Duration;

use breakglass_core::Timestamp;
use tokio::sync::watch;

use crate::app::App;
use crate::governance::attestations;

/// How soon a failed pass is tried again.
const RETRY: Duration = Duration::from_secs(30);
/// The least time between passes, however soon a notice falls due.
const MIN_GAP: Duration = Duration::from_secs(1);

pub async fn run(app: Arc<App>, recheck: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        let wait = match attestations::remind(&app).await {
            Ok(next) => until(&app, next, recheck),
            Err(e) => {
                tracing::warn!(error = %e, "attestation reminder pass failed; retrying");
                RETRY.min(recheck)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// How long to sleep until `next`: at least [`MIN_GAP`], at most `recheck`.
fn until(app: &App, next: Option<Timestamp>, recheck: Duration) -> Duration {
    let Some(next) = next else {
        return recheck;
    };
    let ms = next
        .unix_millis()
        .saturating_sub(app.clock.now().unix_millis());
    Duration::from_millis(u64::try_from(ms).unwrap_or(0)).clamp(MIN_GAP, recheck.max(MIN_GAP))
}
