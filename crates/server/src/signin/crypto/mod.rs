//! Local sign-in: passwords, TOTP and recovery codes (failed-attempt throttling is the store's
//! `record_auth_failure`, under the core's `ThrottlePolicy`).
//!
//! Pure primitives with no database and no HTTP: the broker stores what they return (a PHC string,
//! a sealed TOTP secret with the last accepted step, recovery-code hashes) and
//! passes the current time in. Nothing here logs a password, a code or a secret. Argon2id runs on
//! the process's small pool of workers that keep their memory ([`pool`]).

pub mod password;
pub mod pool;
pub mod recovery;
pub mod totp;

/// The rare ways a sign-in primitive fails for reasons other than a wrong credential.
#[derive(Debug, thiserror::Error)]
pub enum AuthCryptoError {
    #[error("the operating system's random number generator failed")]
    Random,
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the password hashing task did not finish")]
    TaskFailed,
}

impl AuthCryptoError {
    pub fn help(&self) -> &'static str {
        match self {
            Self::Random => {
                "check that the broker can read the kernel's random source (getrandom, /dev/urandom), then retry"
            }
            Self::Hash(_) => {
                "each Argon2id hash needs about 19 MiB of memory; check the broker's memory limit, then retry"
            }
            Self::TaskFailed => {
                "the broker's password hashing workers did not answer: it may be shutting down, or they could not get their memory at start (see its log); retry once it is serving"
            }
        }
    }
}

fn random_fill(buf: &mut [u8]) -> Result<(), AuthCryptoError> {
    getrandom::fill(buf).map_err(|_| AuthCryptoError::Random)
}

/// Equality whose running time depends only on the lengths, never on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // `black_box` keeps the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"123456", b"123456"));
        assert!(!constant_time_eq(b"123456", b"123457"));
        assert!(!constant_time_eq(b"123456", b"12345"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = AuthCryptoError::Random;
        assert_eq!(
            e.to_string(),
            "the operating system's random number generator failed"
        );
        assert!(e.help().contains("random source"));
        let e = AuthCryptoError::Hash("out of memory".into());
        assert_eq!(e.to_string(), "password hashing failed: out of memory");
        assert!(e.help().contains("memory limit"));
        assert!(AuthCryptoError::TaskFailed.help().contains("retry"));
    }
}
