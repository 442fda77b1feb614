//! The alert dispatcher: routes new audit events to their channels, warns holders of grants about
//! to end, and delivers what is due, in its own task so no request ever waits on a channel, and
//! each delivery in a task of its own so no channel waits on another.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::broker::Broker;

pub async fn run(broker: Arc<Broker>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(crate::alerting::DELIVERY_SLOTS));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // A full batch means more is waiting: keep going until the backlog is drained
                // (or every slot is busy), rather than one batch per tick.
                loop {
                    match broker.dispatch_alerts(&slots).await {
                        Ok(n) if n > 0 => {
                            if *shutdown.borrow() {
                                return;
                            }
                        }
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "alert dispatch pass failed; retrying next tick");
                            break;
                        }
                    }
                }
            }
            // A delivery finished: its slot (and its channel's) can take the next one now.
            () = broker.alerting.slot_freed.notified() => {
                if let Err(e) = broker.deliver_due_alerts(&slots).await {
                    tracing::warn!(error = %e, "alert delivery pass failed; retrying next tick");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}
