//! Step-up freshness: whether a caller verified a second factor recently enough for an action that
//! needs one. A pure rule of (who, when they last stepped up, the window, the role, now).

use crate::{Duration, Principal, PrincipalKind, Role, Timestamp};

/// Why a step-up is not good enough.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepUpRefusal {
    /// No second factor within the window: step up and try again.
    Required,
    /// A service principal cannot step up, and the role does not exempt services.
    ServiceNotExempt { role: String },
    /// A service principal cannot step up, and nothing exempts it.
    ServiceCannot,
}

/// Passes if `principal` verified a second factor within `window` before `now`. A service
/// principal cannot step up: it passes only where `role` exempts services.
pub fn check(
    principal: &Principal,
    stepped_up_at: Option<Timestamp>,
    window: Duration,
    role: Option<&Role>,
    now: Timestamp,
) -> Result<(), StepUpRefusal> {
    match principal.kind {
        PrincipalKind::Service => match role {
            Some(r) if r.step_up_exempt_services => Ok(()),
            Some(r) => Err(StepUpRefusal::ServiceNotExempt {
                role: r.id.to_string(),
            }),
            None => Err(StepUpRefusal::ServiceCannot),
        },
        PrincipalKind::Human => {
            // A step-up recorded a moment "ahead" (another replica's clock) counts as fresh.
            let fresh = stepped_up_at.is_some_and(|at| {
                now.unix_millis().saturating_sub(at.unix_millis()) <= window.as_millis()
            });
            if fresh {
                Ok(())
            } else {
                Err(StepUpRefusal::Required)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;
    use crate::clock::Clock as _;

    fn person(kind: PrincipalKind) -> Principal {
        Principal {
            name: "alice".parse().unwrap(),
            kind,
            groups: Default::default(),
            disabled: false,
            created_at: Timestamp::from_unix_millis(0),
        }
    }

    #[test]
    fn a_step_up_is_fresh_for_its_window_and_not_a_moment_longer() {
        let clock = ManualClock::new(Timestamp::from_unix_millis(1_000_000));
        let at = Some(clock.now());
        let window = Duration::from_secs(300);
        let alice = person(PrincipalKind::Human);
        assert_eq!(check(&alice, at, window, None, clock.now()), Ok(()));
        clock.advance(Duration::from_secs(300));
        assert_eq!(check(&alice, at, window, None, clock.now()), Ok(()));
        clock.set(Timestamp::from_unix_millis(clock.now().unix_millis() + 1));
        assert_eq!(
            check(&alice, at, window, None, clock.now()),
            Err(StepUpRefusal::Required)
        );
        assert_eq!(
            check(&alice, None, window, None, clock.now()),
            Err(StepUpRefusal::Required)
        );
    }

    #[test]
    fn a_step_up_recorded_by_a_replica_whose_clock_is_ahead_counts() {
        let alice = person(PrincipalKind::Human);
        let now = Timestamp::from_unix_millis(1_000_000);
        let ahead = Some(Timestamp::from_unix_millis(1_000_050));
        assert_eq!(
            check(&alice, ahead, Duration::from_secs(300), None, now),
            Ok(())
        );
    }

    #[test]
    fn a_service_passes_only_where_its_role_exempts_it() {
        let bot = person(PrincipalKind::Service);
        let now = Timestamp::from_unix_millis(0);
        let w = Duration::from_secs(300);
        assert_eq!(
            check(&bot, Some(now), w, None, now),
            Err(StepUpRefusal::ServiceCannot)
        );
    }
}
