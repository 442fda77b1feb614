//! The throttle sweep: records one `auth.refused_while_locked` event for each lock window that
//! ended with refusals counted in it, and forgets counters an hour after their last failure. It
//! sleeps until the store says the next sweep has work, or until a lock window gets its first
//! refusal; it does not poll.

use std::sync::Arc;
use std::time::Duration;

use breakglass_core::Timestamp;
use tokio::sync::watch;

use crate::app::App;
use crate::error::ServiceError;

/// The longest the sweep sleeps with nothing due (another replica's refusals do not wake this
/// process).
const LONGEST_SLEEP: Duration = Duration::from_secs(3600);
/// How soon a failed sweep is tried again.
const RETRY: Duration = Duration::from_secs(60);

pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let wait = match pass(&app).await {
            Ok(next) => until(&app, next),
            Err(e) => {
                tracing::warn!(error = %e, "throttle sweep failed; retrying");
                RETRY
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = app.signin.throttled.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One sweep; returns when the next one has work, if ever.
pub async fn pass(app: &App) -> Result<Option<Timestamp>, ServiceError> {
    Ok(app.store.sweep_throttles(app.clock.now()).await?)
}

/// How long to sleep until `next` (at least a moment, at most [`LONGEST_SLEEP`]).
fn until(app: &App, next: Option<Timestamp>) -> Duration {
    let Some(next) = next else {
        return LONGEST_SLEEP;
    };
    let ms = next
        .unix_millis()
        .saturating_sub(app.clock.now().unix_millis());
    Duration::from_millis(u64::try_from(ms.max(10)).unwrap_or(0)).min(LONGEST_SLEEP)
}
