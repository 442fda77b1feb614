//! Retry delays: exponential with a cap, and random jitter so that replicas and retries of many
//! items do not fire in lockstep. Shared by revocation retries and alert deliveries.

/// The wait before the next try after `attempts` failed ones: `base_ms` doubled per attempt, at
/// most `cap_ms`, minus up to 25% at random.
pub(crate) fn delay_ms(attempts: u32, base_ms: i64, cap_ms: i64) -> i64 {
    let mut jitter = [0u8; 1];
    let _ = getrandom::fill(&mut jitter);
    let full = base_ms
        .checked_shl(attempts.min(20))
        .unwrap_or(cap_ms)
        .min(cap_ms);
    full - full * i64::from(jitter[0]) / (4 * 255)
}

#[cfg(test)]
mod tests {
    use super::delay_ms;

    #[test]
    fn doubles_caps_and_jitters_down_only() {
        for _ in 0..200 {
            let d = delay_ms(1, 1000, 60_000);
            assert!((1500..=2000).contains(&d), "{d}");
            let d = delay_ms(30, 1000, 60_000);
            assert!((45_000..=60_000).contains(&d), "{d}");
        }
    }
}
