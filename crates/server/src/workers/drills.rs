//! The drill worker: moves open drills on (their grant approved, the credential exercised, the
//! revoke and the refusal checked, the channels' deliveries of the drill alert read) and alerts a
//! role whose drill is overdue, once per due date. The steps are the drills service's
//! ([`crate::governance::drills::pass`]).
//!
//! It sleeps until its next due item (see [`super::wake`]): the earliest overdue date not yet
//! alerted, or shortly while a drill waits on its target or its channels. Every write of a drill's
//! grant rings its alarm (`Grants::wake_for`), so a drill moves on as soon as its approvers
//! approve; other replicas' writes are seen on the recheck.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use super::wake::Pace;
use crate::app::App;
use crate::governance::drills;

pub async fn run(app: Arc<App>, pace: Pace, mut shutdown: watch::Receiver<bool>) {
    let alarm = &app.alarms.drills;
    // Drills left open by a restart move on at once.
    alarm.ring();
    let mut last = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(alarm.wake_at(app.clock.as_ref(), pace, last, Instant::now())) => {}
            // Earlier work: sleep less.
            () = alarm.moved() => continue,
            _ = shutdown.changed() => return,
        }
        last = Instant::now();
        alarm.clear();
        if let Err(e) = drills::pass(&app).await {
            tracing::warn!(error = %e, "drill pass failed; retrying shortly");
            alarm.ring();
        }
        match drills::next_due(&app).await {
            Ok(at) => alarm.found(at),
            Err(e) => {
                tracing::warn!(error = %e, "could not find the drill worker's next due item; retrying shortly");
                alarm.ring();
            }
        }
    }
}
