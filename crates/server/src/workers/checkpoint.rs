//! The checkpointer: signs an audit checkpoint on a schedule whenever the log has grown, and
//! publishes the latest to the channels named in `[alerts] checkpoints`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::App;

pub async fn run(app: Arc<App>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match app.checkpoint().await {
                    // Published outside the database in a second place too (webhook, syslog):
                    // here, not on the grant path, so a slow channel never delays an activation.
                    Ok(cp) => app.alerts.publish_checkpoint(&cp, app.checkpoints.origin()).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "scheduled audit checkpoint failed; retrying next tick");
                    }
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}
