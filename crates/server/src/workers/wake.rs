//! When a worker next has work, and how it is told of earlier work: the reaper and the alert
//! dispatcher sleep until their next due item instead of polling the store.
//!
//! Each has an [`Alarm`]: the earliest time it knows it has work. After a pass the worker asks the
//! store when its next item is due and sleeps until then. A service that has just committed work
//! due sooner (a grant activated with an earlier end, a request to time out, a revocation retry
//! scheduled, a warning due before a grant's end) moves the alarm forward, which wakes the worker
//! at once to sleep less. New audit events reach the dispatcher through the store
//! ([`breakglass_store::Store::watch_appends`]).
//!
//! Neither reaches a worker from another process: with several replicas on one PostgreSQL
//! database, one replica's writes wake only its own workers. So each worker also looks again after
//! [`Pace::recheck`] (the reconcile interval, 30 s by default) however far off its next item
//! seems; that is also what covers a system clock that jumps. And however soon work falls due, a
//! worker starts a pass at most once per [`Pace::min_gap`], so a burst of work shares one pass
//! and a worker that keeps finding work it cannot do (a store that is down) does not spin.
//!
//! Deadlines are computed from the injected `Clock` and slept with `tokio::time`; tests drive the
//! passes themselves with a manual clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use breakglass_core::{Clock, Timestamp};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The alarms of the workers that sleep until their next due item.
#[derive(Debug, Default)]
pub struct Alarms {
    pub reaper: Alarm,
    pub alerts: Alarm,
    /// The drill worker: a drill grant changed, or a drill started.
    pub drills: Alarm,
}

/// How often a worker may pass, at least and at most.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// The least time from one pass to the next, however soon work falls due.
    pub min_gap: Duration,
    /// The most time from one pass to the next, however far off the next item seems: for what this
    /// process is not told of (another replica's writes).
    pub recheck: Duration,
}

/// The earliest time a worker knows it has work, and the means to wake it sooner.
#[derive(Debug)]
pub struct Alarm {
    /// Unix milliseconds; `i64::MAX` while nothing is known to be due.
    due: AtomicI64,
    notify: Notify,
}

impl Default for Alarm {
    fn default() -> Self {
        Self {
            due: AtomicI64::new(i64::MAX),
            notify: Notify::new(),
        }
    }
}

impl Alarm {
    /// Work falls due at `at`. If the worker meant to sleep past it, it wakes now (to sleep until
    /// `at` instead); otherwise nothing happens.
    pub fn due_at(&self, at: Timestamp) {
        let ms = at.unix_millis();
        if self.due.fetch_min(ms, Ordering::AcqRel) > ms {
            self.notify.notify_one();
        }
    }

    /// Work is due now.
    pub fn ring(&self) {
        self.due_at(Timestamp::from_unix_millis(i64::MIN));
    }

    /// The earliest time work is known to be due, if any.
    pub fn due(&self) -> Option<Timestamp> {
        let ms = self.due.load(Ordering::Acquire);
        (ms != i64::MAX).then_some(Timestamp::from_unix_millis(ms))
    }

    /// At the start of a pass: what was due, the pass looks for itself. Work a service reports
    /// from here on moves the alarm again.
    pub(crate) fn clear(&self) {
        self.due.store(i64::MAX, Ordering::Release);
    }

    /// After a pass: what it found due next (if anything), without waking the worker that found it.
    pub(crate) fn found(&self, at: Option<Timestamp>) {
        if let Some(at) = at {
            self.due.fetch_min(at.unix_millis(), Ordering::AcqRel);
        }
    }

    /// Resolves when a service moves the alarm forward.
    pub(crate) async fn moved(&self) {
        self.notify.notified().await;
    }

    /// When to start the next pass, it being `now`, given that the last one started at `last`:
    /// when work is due, but no sooner than `pace.min_gap` and no later than `pace.recheck` after
    /// `last`.
    pub(crate) fn wake_at(
        &self,
        clock: &dyn Clock,
        pace: Pace,
        last: Instant,
        now: Instant,
    ) -> Instant {
        let earliest = last + pace.min_gap;
        let latest = last + pace.recheck.max(pace.min_gap);
        let Some(due) = self.due() else {
            return latest;
        };
        let wait = due.unix_millis().saturating_sub(clock.now().unix_millis());
        let until = match u64::try_from(wait) {
            // Never further off than `latest`, so the sum cannot overflow.
            Ok(ms) => now + Duration::from_millis(ms).min(pace.recheck),
            Err(_) => now,
        };
        until.max(earliest).min(latest)
    }
}

/// The earlier of two due times.
pub(crate) fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use breakglass_core::ManualClock;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(1_800_000_000_000 + ms)
    }

    const PACE: Pace = Pace {
        min_gap: Duration::from_millis(250),
        recheck: Duration::from_secs(30),
    };

    #[test]
    fn an_alarm_moves_only_forward_and_wakes_only_then() {
        let a = Alarm::default();
        assert_eq!(a.due(), None);
        a.due_at(t(5_000));
        assert_eq!(a.due(), Some(t(5_000)));
        a.due_at(t(9_000));
        assert_eq!(a.due(), Some(t(5_000)), "later work does not move it");
        a.found(Some(t(7_000)));
        assert_eq!(a.due(), Some(t(5_000)));
        a.clear();
        assert_eq!(a.due(), None);
        a.found(Some(t(7_000)));
        assert_eq!(a.due(), Some(t(7_000)));
    }

    #[tokio::test]
    async fn earlier_work_wakes_the_worker_and_later_work_does_not() {
        let a = Alarm::default();
        a.found(Some(t(5_000)));
        a.due_at(t(9_000));
        let woken = tokio::time::timeout(Duration::ZERO, a.moved()).await;
        assert!(woken.is_err(), "nothing earlier: still asleep");
        a.due_at(t(1_000));
        // The wake is kept until the worker looks, even if it was not waiting yet.
        a.moved().await;
        a.ring();
        a.moved().await;
        assert_eq!(a.due(), Some(Timestamp::from_unix_millis(i64::MIN)));
    }

    #[test]
    fn a_worker_wakes_when_due_within_its_pace() {
        let clock = ManualClock::new(t(0));
        let a = Alarm::default();
        let last = Instant::now();
        let wake = |now| a.wake_at(&clock, PACE, last, now);
        assert_eq!(wake(last), last + PACE.recheck, "nothing due");
        a.found(Some(t(10_000)));
        assert_eq!(wake(last), last + Duration::from_secs(10));
        a.due_at(t(100));
        assert_eq!(wake(last), last + PACE.min_gap, "not before the gap");
        a.clear();
        a.found(Some(t(3_600_000)));
        assert_eq!(wake(last), last + PACE.recheck, "nor after the recheck");
        a.ring();
        let later = last + Duration::from_secs(1);
        assert_eq!(wake(later), later, "overdue: now");
    }
}
