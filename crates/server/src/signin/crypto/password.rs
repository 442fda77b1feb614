//! Passwords: Argon2id hashing and verification, the rules a new password must meet, and random
//! initial passwords for accounts an admin creates.
//!
//! Hashes use the OWASP parameters for Argon2id (19 MiB, 2 passes, 1 lane) and are stored as PHC
//! strings, so a later change of parameters still verifies old hashes. Each hash or verify costs
//! tens of milliseconds of CPU and 19 MiB of memory, so all of them (the dummy verify for an
//! unknown user included) run on the bounded pool of [`super::pool`], whose workers keep their
//! memory: a sign-in allocates none of it, and no more hashes run at once than there are workers.
//! The caller's failed-attempt throttle (see `signin::throttle`) is what bounds how often they run.

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use breakglass_providers::Secret;

use super::{AuthCryptoError, constant_time_eq, pool, random_fill};

/// Argon2id memory cost in KiB (OWASP: 19 MiB).
pub const M_COST_KIB: u32 = 19_456;
/// Argon2id passes over memory (OWASP: 2).
pub const T_COST: u32 = 2;
/// Argon2id lanes (OWASP: 1).
pub const P_COST: u32 = 1;
/// Bytes of random salt in a new hash (what the argon2 crate's own `hash_password` uses).
const SALT_LEN: usize = 16;

/// The fewest characters a new password may have.
pub const MIN_CHARS: usize = 12;
/// The most bytes a new password may have; longer input is a mistake or an attempt to make the
/// broker hash megabytes.
pub const MAX_BYTES: usize = 1024;
/// Length of [`generate_initial`] passwords.
pub const INITIAL_CHARS: usize = 20;

/// Starts the hashing pool with `workers` workers (at least one), each allocating its memory now,
/// so that a broker short of memory says so at start rather than at an emergency sign-in. Call it
/// once at start-up; without it, the first hash starts the pool with
/// [`pool::DEFAULT_WORKERS`]. A later call changes nothing.
pub async fn start_pool(workers: usize) {
    let blocks = blocks();
    match tokio::task::spawn_blocking(move || pool::start(workers)).await {
        Ok(Some(ready)) if ready > 0 => tracing::info!(
            workers = ready,
            memory_mib = ready * blocks / 1024,
            "password hashing pool ready"
        ),
        Ok(Some(_)) | Err(_) => tracing::error!(
            "no password hashing worker could start; every sign-in fails until the broker is restarted with more memory"
        ),
        // Already running.
        Ok(None) => {}
    }
}

/// Hashes `password` with Argon2id and a fresh random salt; returns the PHC string to store.
pub async fn hash(password: &Secret) -> Result<String, AuthCryptoError> {
    let password = password.clone();
    let mut salt = [0u8; SALT_LEN];
    random_fill(&mut salt)?;
    pool::run(move |memory| hash_in(memory, password.expose().as_bytes(), &salt)).await?
}

/// Whether `password` matches the stored PHC string `phc`. A malformed or unsupported PHC string,
/// or a hash that could not be computed, is a non-match.
pub async fn verify(password: &Secret, phc: &str) -> bool {
    let password = password.clone();
    let phc = phc.to_owned();
    pool::run(move |memory| verify_in(memory, password.expose().as_bytes(), &phc))
        .await
        .unwrap_or(false)
}

/// Does the work of a [`verify`] that fails, for a sign-in naming an unknown user, so the response
/// time does not tell an attacker which names exist.
pub async fn verify_dummy(password: &Secret) {
    let password = password.clone();
    let _ = pool::run(move |memory| {
        std::hint::black_box(verify_in(memory, password.expose().as_bytes(), DUMMY_PHC));
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

/// A hash of a fixed password (`breakglass dummy password for unknown users`) with a fixed salt
/// (`breakglass-dummy-salt`) and the current parameters: verifying against it costs what verifying
/// against a real user's hash costs. Nothing is protected by it; a test checks that it is what the
/// current parameters make.
const DUMMY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$YnJlYWtnbGFzcy1kdW1teS1zYWx0$0/bvozJCxMfUdw4P+iouLD8mQhk20lvVMvjeJbMQgTg";

/// The current parameters.
fn params() -> Result<Params, AuthCryptoError> {
    Params::new(M_COST_KIB, T_COST, P_COST, None).map_err(hash_error)
}

/// The memory a hash with the current parameters needs, in 1 KiB blocks: what each worker keeps.
pub(super) fn blocks() -> usize {
    params().map_or(M_COST_KIB as usize, |p| p.block_count())
}

fn hash_error(e: impl std::fmt::Display) -> AuthCryptoError {
    AuthCryptoError::Hash(e.to_string())
}

/// Argon2id of `password` with `salt` and the current parameters, computed in `memory`, as the PHC
/// string the argon2 crate's own `hash_password` makes.
fn hash_in(memory: &mut [Block], password: &[u8], salt: &[u8]) -> Result<String, AuthCryptoError> {
    let params = params()?;
    let salt = Salt::new(salt).map_err(hash_error)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password, &salt, &mut out, &mut *memory)
        .map_err(hash_error)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(hash_error)?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(hash_error)?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches `phc`, with the algorithm, version and parameters `phc` names,
/// computed in `memory`; a hash made with more memory than that (other parameters, before a
/// change) gets memory of its own for the one call.
fn verify_in(memory: &mut [Block], password: &[u8], phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    let computed = if argon2.params().block_count() <= memory.len() {
        argon2.hash_password_into_with_memory(password, salt, &mut out, &mut *memory)
    } else {
        argon2.hash_password_into(password, salt, &mut out)
    };
    computed.is_ok() && constant_time_eq(&out, expected.as_bytes())
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
    use argon2::{PasswordHasher as _, PasswordVerifier as _};

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

    /// A worker's memory, as the pool gives it.
    fn memory() -> Vec<Block> {
        vec![Block::new(); blocks()]
    }

    fn argon2id() -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params().unwrap())
    }

    #[tokio::test]
    async fn the_dummy_hash_is_what_the_current_parameters_make() {
        let made = argon2id()
            .hash_password_with_salt(
                b"breakglass dummy password for unknown users",
                b"breakglass-dummy-salt",
            )
            .unwrap()
            .to_string();
        assert_eq!(DUMMY_PHC, made);
        assert!(DUMMY_PHC.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_in(
            &mut memory(),
            b"breakglass dummy password for unknown users",
            DUMMY_PHC
        ));
        verify_dummy(&secret("anything at all")).await;
    }

    #[test]
    fn a_hash_is_the_argon2_crates_own_phc_string() {
        let salt = [7u8; SALT_LEN];
        let ours = hash_in(&mut memory(), b"correct horse battery", &salt).unwrap();
        let theirs = argon2id()
            .hash_password_with_salt(b"correct horse battery", &salt)
            .unwrap()
            .to_string();
        assert_eq!(ours, theirs);
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery", ours.as_str())
                .is_ok()
        );
    }

    #[test]
    fn hashes_made_with_other_parameters_still_verify() {
        let mut memory = memory();
        for (algorithm, version, m, t, p) in [
            (Algorithm::Argon2id, Version::V0x13, 8_192, 1, 1),
            // More memory than a worker keeps: that one call gets its own.
            (Algorithm::Argon2id, Version::V0x13, 32_768, 1, 1),
            (Algorithm::Argon2id, Version::V0x13, 4_096, 3, 2),
            (Algorithm::Argon2i, Version::V0x13, 4_096, 2, 1),
            (Algorithm::Argon2d, Version::V0x10, 4_096, 2, 1),
        ] {
            let params = Params::new(m, t, p, None).unwrap();
            let phc = Argon2::new(algorithm, version, params)
                .hash_password(b"an older password")
                .unwrap()
                .to_string();
            assert!(verify_in(&mut memory, b"an older password", &phc), "{phc}");
            assert!(!verify_in(&mut memory, b"an older passworD", &phc), "{phc}");
        }
    }

    #[tokio::test]
    async fn verifies_at_once_queue_for_the_workers_and_each_gets_its_answer() {
        let phc = hash(&secret("correct horse battery")).await.unwrap();
        let checks: Vec<_> = (0..8)
            .map(|i| {
                let phc = phc.clone();
                let pw = if i % 2 == 0 {
                    "correct horse battery"
                } else {
                    "wrong horse battery"
                };
                tokio::spawn(async move { verify(&secret(pw), &phc).await })
            })
            .collect();
        for (i, check) in checks.into_iter().enumerate() {
            assert_eq!(check.await.unwrap(), i % 2 == 0, "check {i}");
        }
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
