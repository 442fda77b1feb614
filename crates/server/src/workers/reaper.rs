//! The reaper: expires active grants when their window closes (revoking at the provider first,
//! then recording `grant.expired`) and times out requests nobody approved.

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
                if let Err(e) = broker.reap().await {
                    tracing::warn!(error = %e, "reaper pass failed; retrying next tick");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}
