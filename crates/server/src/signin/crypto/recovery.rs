//! Recovery codes: single-use codes a user prints or stores when enrolling TOTP, to sign in when
//! the authenticator is lost.
//!
//! A code is 16 characters of lowercase RFC 4648 base32 (`a-z`, `2-7`), shown grouped as
//! `xxxx-xxxx-xxxx-xxxx`: 80 random bits. Guessing one is out of reach even against a stolen hash,
//! so an unsalted SHA-256 at rest is enough and a slow hash would only cost the broker time. The
//! caller deletes a code's hash once [`find`] has matched it.

use breakglass_providers::Secret;
use sha2::{Digest as _, Sha256};

use super::{AuthCryptoError, constant_time_eq, random_fill};

/// Characters in a code, not counting the dashes.
pub const CODE_CHARS: usize = 16;
const RANDOM_BYTES: usize = CODE_CHARS * 5 / 8;

/// `n` distinct new codes, to show once, and their hashes (hex SHA-256 of the normalised code), to
/// store. `hashes[i]` belongs to `codes[i]`.
pub fn generate(n: usize) -> Result<(Vec<Secret>, Vec<String>), AuthCryptoError> {
    let mut codes = Vec::with_capacity(n);
    let mut hashes = Vec::with_capacity(n);
    while codes.len() < n {
        let mut raw = [0u8; RANDOM_BYTES];
        random_fill(&mut raw)?;
        let code = encode(raw);
        let hash = digest(&code);
        // Two equal 80-bit codes will not happen, but distinctness is promised, so it is checked.
        if hashes.contains(&hash) {
            continue;
        }
        codes.push(Secret::new(group(&code)));
        hashes.push(hash);
    }
    Ok((codes, hashes))
}

/// The index in `hashes` of the code `code`, after normalising it (case, dashes and whitespace do
/// not matter). Every stored hash is compared, in constant time, whether or not one matched
/// earlier.
pub fn find(code: &str, hashes: &[String]) -> Option<usize> {
    let hash = digest(&normalise(code));
    let mut found = None;
    for (i, stored) in hashes.iter().enumerate() {
        let equal = constant_time_eq(hash.as_bytes(), stored.as_bytes());
        if equal && found.is_none() {
            found = Some(i);
        }
    }
    found
}

/// Whether `code` has the shape of a recovery code (as opposed to, say, a 6-digit TOTP code).
pub fn looks_like(code: &str) -> bool {
    let code = normalise(code);
    code.len() == CODE_CHARS && code.bytes().all(is_base32)
}

/// Lowercase, without dashes or whitespace.
fn normalise(code: &str) -> String {
    code.chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

fn digest(normalised: &str) -> String {
    hex::encode(Sha256::digest(normalised.as_bytes()))
}

/// 80 bits as 16 base32 characters, most significant first.
fn encode(raw: [u8; RANDOM_BYTES]) -> String {
    let bits = raw.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
    (0..CODE_CHARS)
        .rev()
        .map(|i| {
            let d = ((bits >> (5 * i)) & 0x1f) as u8;
            char::from(if d < 26 { b'a' + d } else { b'2' + (d - 26) })
        })
        .collect()
}

fn group(code: &str) -> String {
    let mut out = String::with_capacity(code.len() + code.len() / 4);
    for (i, c) in code.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(c);
    }
    out
}

fn is_base32(b: u8) -> bool {
    b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)
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

    #[test]
    fn codes_round_trip() {
        let (codes, hashes) = generate(10).unwrap();
        assert_eq!(codes.len(), 10);
        assert_eq!(hashes.len(), 10);
        for (i, code) in codes.iter().enumerate() {
            let c = code.expose();
            assert_eq!(c.len(), 19, "{c}");
            assert_eq!(c.split('-').count(), 4);
            assert!(
                c.split('-')
                    .all(|g| g.len() == 4 && g.bytes().all(is_base32))
            );
            assert!(looks_like(c));
            assert_eq!(find(c, &hashes), Some(i));
            assert_eq!(hashes[i].len(), 64);
            assert!(!hashes[i].contains(&c.replace('-', "")));
        }
        assert!(generate(0).unwrap().0.is_empty());
    }

    #[test]
    fn codes_are_unique() {
        let (codes, hashes) = generate(200).unwrap();
        let mut c: Vec<&str> = codes.iter().map(Secret::expose).collect();
        c.sort_unstable();
        c.dedup();
        assert_eq!(c.len(), 200);
        let mut h = hashes.clone();
        h.sort_unstable();
        h.dedup();
        assert_eq!(h.len(), 200);
    }

    #[test]
    fn wrong_codes_are_not_found() {
        let (codes, hashes) = generate(5).unwrap();
        let (other, _) = generate(1).unwrap();
        assert_eq!(find(other[0].expose(), &hashes), None);
        assert_eq!(find("", &hashes), None);
        assert_eq!(find(codes[0].expose(), &[]), None);
        // One character off.
        let mut off = codes[0].expose().to_owned();
        let last = off.pop().unwrap();
        off.push(if last == 'a' { 'b' } else { 'a' });
        assert_eq!(find(&off, &hashes), None);
        // The stored hash itself is not a code.
        assert_eq!(find(&hashes[0], &hashes), None);
    }

    #[test]
    fn normalisation() {
        let (codes, hashes) = generate(3).unwrap();
        let c = codes[2].expose();
        let bare = c.replace('-', "");
        let upper = c.to_uppercase();
        let spaced = format!("  {}\t", c.replace('-', " "));
        for variant in [bare.as_str(), upper.as_str(), spaced.as_str()] {
            assert_eq!(find(variant, &hashes), Some(2), "{variant:?}");
            assert!(looks_like(variant));
        }
        assert_eq!(hashes[2], digest(&bare));
    }

    #[test]
    fn tells_recovery_codes_from_totp_codes() {
        assert!(looks_like("abcd-efgh-ijkl-mn23"));
        assert!(looks_like("ABCD EFGH IJKL MN67"));
        assert!(!looks_like("123456"));
        assert!(!looks_like("123 456"));
        assert!(!looks_like("abcd-efgh-ijkl-mn2"));
        assert!(!looks_like("abcd-efgh-ijkl-mn234"));
        // 0, 1, 8 and 9 are not base32.
        assert!(!looks_like("abcd-efgh-ijkl-mn01"));
        assert!(!looks_like("abcd_efgh_ijkl_mn23"));
        assert!(!looks_like(""));
    }

    #[test]
    fn encoding_is_base32() {
        assert_eq!(encode([0; RANDOM_BYTES]), "aaaaaaaaaaaaaaaa");
        assert_eq!(encode([0xff; RANDOM_BYTES]), "7777777777777777");
        // RFC 4648's test vector "fooba" is MZXW6YTB; twice over, lowercase.
        assert_eq!(encode(*b"foobafooba"), "mzxw6ytbmzxw6ytb");
        assert_eq!(group("abcdefghijklmnop"), "abcd-efgh-ijkl-mnop");
    }
}
