//! Signs an audit checkpoint on a schedule whenever the log has grown.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::broker::Broker;

pub async fn run(broker: Arc<Broker>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = broker.checkpoint().await {
                    tracing::warn!(error = %e, "scheduled audit checkpoint failed; retrying next tick");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}
