//! The reconciler: at start and periodically, finishes or undoes every open `approved` and
//! `activating` intent so a crash between intent and outcome is repaired (invariant 3); open
//! `revoking` intents are the reaper's.

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
                match broker.reconcile().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(open_intents = n, "reconciler pass"),
                    Err(e) => tracing::warn!(error = %e, "reconciler pass failed; retrying next tick"),
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}
