//! Passwords: Argon2id hashing and verification off the async runtime, the rules a new password
//! must meet, and random initial passwords for accounts an admin creates.
//!
//! Hashes use the OWASP parameters for Argon2id (19 MiB, 2 passes, 1 lane) and are stored as PHC
//! strings, so a later change of parameters still verifies old hashes. Each hash or verify costs
//! tens of milliseconds of CPU and 19 MiB, so both run on `spawn_blocking`; the caller's failed-
//! attempt throttle (see [`super::throttle`]) is what bounds how often they run.

use std::sync::OnceLock;

use argon2::password_hash::Error as HashError;
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use breakglass_providers::Secret;

use super::{AuthCryptoError, random_fill};

/// Argon2id memory cost in KiB (OWASP: 19 MiB).
pub const M_COST_KIB: u32 = 19_456;
/// Argon2id passes over memory (OWASP: 2).
pub const T_COST: u32 = 2;
/// Argon2id lanes (OWASP: 1).
pub const P_COST: u32 = 1;

/// The fewest characters a new password may have.
pub const MIN_CHARS: usize = 12;
/// The most bytes a new password may have; longer input is a mistake or an attempt to make the
/// broker hash megabytes.
pub const MAX_BYTES: usize = 1024;
/// Length of [`generate_initial`] passwords.
pub const INITIAL_CHARS: usize = 20;

/// Hashes `password` with Argon2id and a fresh random salt; returns the PHC string to store.
pub async fn hash(password: &Secret) -> Result<String, AuthCryptoError> {
    let password = password.clone();
    tokio::task::spawn_blocking(move || {
        argon2()?
            .hash_password(password.expose().as_bytes())
            .map(|phc| phc.to_string())
            .map_err(|e| match e {
                HashError::RngFailure => AuthCryptoError::Random,
                other => AuthCryptoError::Hash(other.to_string()),
            })
    })
    .await
    .map_err(|_| AuthCryptoError::TaskFailed)?
}

/// Whether `password` matches the stored PHC string `phc`. A malformed or unsupported PHC string,
/// or a hashing task that did not finish, is a non-match.
pub async fn verify(password: &Secret, phc: &str) -> bool {
    let password = password.clone();
    let phc = phc.to_owned();
    tokio::task::spawn_blocking(move || verify_blocking(&password, &phc))
        .await
        .unwrap_or(false)
}

/// Does the work of a [`verify`] that fails, for a sign-in naming an unknown user, so the response
/// time does not tell an attacker which names exist.
pub async fn verify_dummy(password: &Secret) {
    let password = password.clone();
    let _ = tokio::task::spawn_blocking(move || match dummy_phc() {
        Some(phc) => {
            std::hint::black_box(verify_blocking(&password, phc));
        }
        // Only if hashing itself is broken, in which case real verifies fail too; burn the same
        // time regardless.
        None => {
            if let Ok(a) = argon2() {
                let _ = std::hint::black_box(
                    a.hash_password_with_salt(password.expose().as_bytes(), DUMMY_SALT),
                );
            }
        }
    })
    .await;
}

/// Checks a password a user chose for `user`. The error is a sentence telling the user what to
/// choose instead; it never repeats the password.
pub fn check_new(password: &str, user: &str) -> Result<(), String> {
    if password.chars().count() < MIN_CHARS {
        return Err(format!(
            "choose a password of at least {MIN_CHARS} characters; a few unrelated words make a good one"
        ));
    }
    if password.len() > MAX_BYTES {
        return Err(format!("choose a password of at most {MAX_BYTES} bytes"));
    }
    let mut chars = password.chars();
    if let Some(first) = chars.next()
        && chars.all(|c| c == first)
    {
        return Err("choose a password that is not one character repeated".into());
    }
    let user = user.trim().to_lowercase();
    if !user.is_empty() {
        let lower = password.to_lowercase();
        if lower == user {
            return Err("choose a password that is not your user name".into());
        }
        // A one- or two-character name would forbid common letter pairs and tell the user nothing
        // useful, so only longer names are looked for inside the password.
        if user.chars().count() >= 3 && lower.contains(&user) {
            return Err("choose a password that does not contain your user name".into());
        }
    }
    Ok(())
}

/// A random initial password of [`INITIAL_CHARS`] characters from an alphabet without look-alikes
/// (no `0 O o 1 l I`), about 116 bits. For accounts an admin creates; the user must change it.
pub fn generate_initial() -> Result<Secret, AuthCryptoError> {
    let mut out = String::with_capacity(INITIAL_CHARS);
    let mut buf = [0u8; 64];
    while out.len() < INITIAL_CHARS {
        random_fill(&mut buf)?;
        for b in buf {
            if out.len() == INITIAL_CHARS {
                break;
            }
            // Rejection sampling: 224 is the largest multiple of the alphabet's 56 characters
            // below 256, so every character is equally likely.
            if usize::from(b) >= UNAMBIGUOUS.len() * 4 {
                continue;
            }
            if let Some(&c) = UNAMBIGUOUS.get(usize::from(b) % UNAMBIGUOUS.len()) {
                out.push(char::from(c));
            }
        }
    }
    Ok(Secret::new(out))
}

const UNAMBIGUOUS: &[u8; 56] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";

const DUMMY_PASSWORD: &[u8] = b"breakglass dummy password for unknown users";
const DUMMY_SALT: &[u8] = b"breakglass-dummy-salt";

fn argon2() -> Result<Argon2<'static>, AuthCryptoError> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None)
        .map_err(|e| AuthCryptoError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn verify_blocking(password: &Secret, phc: &str) -> bool {
    // Verification takes the algorithm and parameters from `phc`, not from `argon2()`.
    Argon2::default()
        .verify_password(password.expose().as_bytes(), phc)
        .is_ok()
}

/// A hash of a fixed password with the current parameters, made once: verifying against it costs
/// what verifying against a real user's hash costs. The salt is fixed because nothing is protected
/// by this hash.
fn dummy_phc() -> Option<&'static str> {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    DUMMY
        .get_or_init(|| {
            argon2()
                .ok()?
                .hash_password_with_salt(DUMMY_PASSWORD, DUMMY_SALT)
                .ok()
                .map(|phc| phc.to_string())
        })
        .as_deref()
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

    fn secret(s: &str) -> Secret {
        Secret::new(s.to_owned())
    }

    #[tokio::test]
    async fn hash_verifies_and_wrong_password_does_not() {
        let phc = hash(&secret("correct horse battery")).await.unwrap();
        assert!(
            phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "unexpected parameters in {phc}"
        );
        assert!(!phc.contains("correct horse"));
        assert!(verify(&secret("correct horse battery"), &phc).await);
        assert!(!verify(&secret("correct horse batterY"), &phc).await);
        assert!(!verify(&secret(""), &phc).await);
    }

    #[tokio::test]
    async fn salts_differ() {
        let a = hash(&secret("same password here")).await.unwrap();
        let b = hash(&secret("same password here")).await.unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn malformed_phc_is_a_non_match() {
        let pw = secret("correct horse battery");
        for phc in [
            "",
            "not a hash",
            "$argon2id$v=19$m=19456,t=2,p=1$",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$!!!",
            "$2b$12$KIXQJQ8z0uM1Yw4B8T3QWeVvVJ7Zr0y5b1q8l4n6b2c3d4e5f6g7h",
        ] {
            assert!(!verify(&pw, phc).await, "{phc:?} verified");
        }
    }

    #[tokio::test]
    async fn dummy_hash_uses_current_parameters() {
        let phc = dummy_phc().unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_blocking(
            &Secret::new(String::from_utf8(DUMMY_PASSWORD.to_vec()).unwrap()),
            phc
        ));
        verify_dummy(&secret("anything at all")).await;
    }

    #[test]
    fn new_password_rules() {
        assert!(check_new("a sound passphrase", "alice").is_ok());
        assert!(check_new("twelve chars", "bob").is_ok());

        let short = check_new("elevenchars", "bob").unwrap_err();
        assert!(short.contains("at least 12 characters"), "{short}");
        assert!(!short.contains("elevenchars"));
        // Characters, not bytes: 11 two-byte characters are still too short.
        assert!(check_new(&"é".repeat(11), "bob").is_err());
        assert!(check_new(&"éa".repeat(6), "bob").is_ok());

        let long = check_new(&"ab".repeat(513), "bob").unwrap_err();
        assert!(long.contains("at most 1024 bytes"), "{long}");
        assert!(check_new(&"ab".repeat(512), "bob").is_ok());

        let repeated = check_new(&"x".repeat(20), "bob").unwrap_err();
        assert!(
            repeated.contains("not one character repeated"),
            "{repeated}"
        );
        assert!(check_new(&" ".repeat(12), "bob").is_err());

        let same = check_new("Administrator", "administrator").unwrap_err();
        assert!(same.contains("not your user name"), "{same}");
        let inside = check_new("my-ALICE-password", "alice").unwrap_err();
        assert!(
            inside.contains("does not contain your user name"),
            "{inside}"
        );
        assert!(!inside.contains("my-ALICE-password"));
        // Short names are not searched for inside the password, only compared whole.
        assert!(check_new("all quiet on the front", "al").is_ok());
        assert!(check_new("a sound passphrase", "").is_ok());
    }

    #[test]
    fn initial_passwords_are_random_and_acceptable() {
        let a = generate_initial().unwrap();
        let b = generate_initial().unwrap();
        assert_ne!(a, b);
        for pw in [&a, &b] {
            assert_eq!(pw.expose().chars().count(), INITIAL_CHARS);
            assert!(pw.expose().bytes().all(|c| UNAMBIGUOUS.contains(&c)));
            assert!(!pw.expose().contains(['0', 'O', 'o', '1', 'l', 'I']));
            assert!(check_new(pw.expose(), "someone").is_ok());
        }
        assert!(!format!("{a:?}").contains(a.expose()));
    }
}
