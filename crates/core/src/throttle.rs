//! Locks after repeated failures: how many consecutive failures lock a subject (an account, a
//! source address), and for how long. A pure rule; the store applies it in the transaction that
//! counts a failure, so replicas counting at once agree.

/// How failures turn into a lock: the first `free` are free, then each locks for `base`
/// doubling up to `cap`. Failures older than [`ThrottlePolicy::FORGET_AFTER_MS`] are forgotten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottlePolicy {
    pub free: u32,
    pub base_ms: i64,
    pub cap_ms: i64,
}

impl ThrottlePolicy {
    /// A failure this long after the previous one starts the count again.
    pub const FORGET_AFTER_MS: i64 = 3_600_000;

    /// How long `failures` consecutive failures lock the subject, if at all.
    pub fn lock_ms(&self, failures: u32) -> Option<i64> {
        let over = failures.checked_sub(self.free)?.checked_sub(1)?;
        let factor = 1_i64.checked_shl(over.min(40)).unwrap_or(i64::MAX);
        Some(self.base_ms.saturating_mul(factor).min(self.cap_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_double_from_the_first_failure_past_the_free_ones_up_to_the_cap() {
        let p = ThrottlePolicy {
            free: 5,
            base_ms: 1_000,
            cap_ms: 900_000,
        };
        assert_eq!(p.lock_ms(0), None);
        assert_eq!(p.lock_ms(5), None);
        assert_eq!(p.lock_ms(6), Some(1_000));
        assert_eq!(p.lock_ms(7), Some(2_000));
        assert_eq!(p.lock_ms(15), Some(512_000));
        assert_eq!(p.lock_ms(16), Some(900_000));
        assert_eq!(p.lock_ms(u32::MAX), Some(900_000), "no overflow");
    }
}
