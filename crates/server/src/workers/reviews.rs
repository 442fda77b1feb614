//! The overdue-review worker: alerts once when a review owed falls due (`review.overdue` to the
//! role's channels) and once more after twice its window (escalated, to the `always` channels).
//! It sleeps until the next reminder is due, and looks again each reconcile interval for grants
//! that have ended since (a review falls due hours after an end at the earliest, so the interval
//! is what notices new ones) and for other replicas' work.

use std::sync::Arc;
use std::time::Duration;

use breakglass_core::Timestamp;
use tokio::sync::watch;

use crate::app::App;
use crate::error::ServiceError;
use crate::governance::reviews;

/// How soon a failed pass is tried again.
const RETRY: Duration = Duration::from_secs(30);

pub async fn run(app: Arc<App>, recheck: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        let wait = match pass(&app).await {
            Ok(next) => until(&app, next, recheck),
            Err(e) => {
                tracing::warn!(error = %e, "overdue-review pass failed; retrying");
                RETRY.min(recheck)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One pass: every reminder due now is sent; returns when the next one is due, if any.
pub async fn pass(app: &App) -> Result<Option<Timestamp>, ServiceError> {
    reviews::remind(app).await
}

/// How long to sleep until `next` (at least a moment, at most `recheck`).
fn until(app: &App, next: Option<Timestamp>, recheck: Duration) -> Duration {
    let Some(next) = next else {
        return recheck;
    };
    let ms = next
        .unix_millis()
        .saturating_sub(app.clock.now().unix_millis());
    Duration::from_millis(u64::try_from(ms.max(10)).unwrap_or(0)).min(recheck)
}
