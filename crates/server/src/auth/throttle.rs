//! Failed-attempt backoff: how long a subject (an account, or a source address) is locked after a
//! run of consecutive failed sign-ins.
//!
//! A few failures are free, then each further one doubles the lock, up to a cap. The caller keeps
//! the count per subject, resets it on success, and refuses attempts until the lock ends, without
//! checking the credential, so the lock also bounds how much Argon2 work an attacker can cause.

use std::time::Duration;

/// The backoff for one kind of subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Consecutive failures allowed before any lock.
    pub free: u32,
    /// The first lock; each later failure doubles it.
    pub base: Duration,
    /// The longest lock.
    pub cap: Duration,
}

/// Per account: a user who mistypes a few times is not slowed down; a guesser gets about 18
/// tries in the first hour and 4 an hour after that.
pub const ACCOUNT: Policy = Policy {
    free: 5,
    base: Duration::from_secs(1),
    cap: Duration::from_secs(15 * 60),
};

/// Per source address: more free failures, since many users may share one address.
pub const SOURCE: Policy = Policy {
    free: 20,
    base: Duration::from_secs(1),
    cap: Duration::from_secs(15 * 60),
};

impl Policy {
    /// The lock earned by `failures` consecutive failures: none up to `free`, then
    /// `base * 2^(failures - free - 1)`, at most `cap`.
    pub fn lock_for(&self, failures: u32) -> Option<Duration> {
        let over = failures.checked_sub(self.free)?.checked_sub(1)?;
        let lock = 1u32
            .checked_shl(over)
            .and_then(|factor| self.base.checked_mul(factor))
            .unwrap_or(self.cap);
        Some(lock.min(self.cap))
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests fail loudly"
)]
mod tests {
    use super::*;

    const fn secs(n: u64) -> Option<Duration> {
        Some(Duration::from_secs(n))
    }

    #[test]
    fn account_backoff() {
        for free in 0..=5 {
            assert_eq!(ACCOUNT.lock_for(free), None, "{free}");
        }
        assert_eq!(ACCOUNT.lock_for(6), secs(1));
        assert_eq!(ACCOUNT.lock_for(7), secs(2));
        assert_eq!(ACCOUNT.lock_for(8), secs(4));
        assert_eq!(ACCOUNT.lock_for(15), secs(512));
        // 1024 s would pass the 15-minute cap.
        assert_eq!(ACCOUNT.lock_for(16), secs(900));
        assert_eq!(ACCOUNT.lock_for(17), secs(900));
    }

    #[test]
    fn source_backoff() {
        assert_eq!(SOURCE.lock_for(20), None);
        assert_eq!(SOURCE.lock_for(21), secs(1));
        assert_eq!(SOURCE.lock_for(24), secs(8));
        assert_eq!(SOURCE.lock_for(31), secs(900));
    }

    #[test]
    fn huge_counts_stay_at_the_cap() {
        for n in [36, 37, 38, 52, 53, 100, 1000, u32::MAX - 1, u32::MAX] {
            assert_eq!(ACCOUNT.lock_for(n), secs(900), "{n}");
            assert_eq!(SOURCE.lock_for(n), secs(900), "{n}");
        }
        // A base large enough that the multiplication itself overflows.
        let p = Policy {
            free: 0,
            base: Duration::MAX,
            cap: Duration::from_secs(60),
        };
        assert_eq!(p.lock_for(1), secs(60));
        assert_eq!(p.lock_for(2), secs(60));
    }
}
