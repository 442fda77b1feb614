//! Sealing secrets at rest under the data directory's master key (XChaCha20-Poly1305).
//!
//! The master key lives in `<data-dir>/master.key` (0600), never in the database, so a copy of the
//! database alone reveals no signing key and no undelivered credential.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const NONCE_LEN: usize = 24;

pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the operating system's random number generator failed")]
    Random,
    #[error(
        "sealed data does not open with this master key (wrong key file, or the data was altered)"
    )]
    Open,
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Self {
        // INVARIANT: a 32-byte key is always the right length for XChaCha20-Poly1305.
        let cipher = XChaCha20Poly1305::new_from_slice(key).unwrap_or_else(|_| unreachable_key());
        Self { cipher }
    }

    /// `nonce ‖ ciphertext ‖ tag`. `context` binds the blob to its purpose (for example the grant
    /// id) so a sealed value cannot be swapped into another place.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
        let n = XNonce::try_from(&nonce[..]).map_err(|_| SealError::Random)?;
        let ct = self
            .cipher
            .encrypt(
                &n,
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Vec<u8>, SealError> {
        let (nonce, ct) = sealed.split_at_checked(NONCE_LEN).ok_or(SealError::Open)?;
        let n = XNonce::try_from(nonce).map_err(|_| SealError::Open)?;
        self.cipher
            .decrypt(
                &n,
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::Open)
    }
}

#[expect(
    clippy::panic,
    reason = "unreachable: XChaCha20-Poly1305 keys are exactly 32 bytes"
)]
fn unreachable_key() -> XChaCha20Poly1305 {
    panic!("32-byte key rejected")
}

/// 32 bytes from the operating system.
pub(crate) fn random_32() -> Result<[u8; 32], SealError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|_| SealError::Random)?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_in_context() {
        let s = Sealer::new(&[1; 32]);
        let blob = s.seal(b"secret", "grant:1").unwrap();
        assert!(!blob.windows(6).any(|w| w == b"secret"));
        assert_eq!(s.open(&blob, "grant:1").unwrap(), b"secret");
        assert!(s.open(&blob, "grant:2").is_err());
        assert!(Sealer::new(&[2; 32]).open(&blob, "grant:1").is_err());
        assert!(s.open(&blob[..10], "grant:1").is_err());
    }
}
