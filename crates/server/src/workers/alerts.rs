//! The alert dispatcher: routes new audit events to their channels, warns holders of grants about
//! to end, and delivers what is due, in its own task so no request ever waits on a channel.

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
                if let Err(e) = broker.dispatch_alerts().await {
                    tracing::warn!(error = %e, "alert dispatch pass failed; retrying next tick");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}
