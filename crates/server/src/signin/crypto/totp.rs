//! Time-based one-time codes (RFC 6238): HMAC-SHA-1, 6 digits, 30-second steps, one step of clock
//! skew either way, as every authenticator app supports.
//!
//! [`verify`] returns the time step the code matched. The caller stores it and passes it back as
//! `last_step`, so a code, once accepted, is refused for ever after (RFC 6238 section 5.2), and so
//! is any code from an earlier step. Time is an input; nothing here reads the clock.

use breakglass_providers::Secret;
use totp_rs::{Algorithm, Builder, Totp};

use super::{AuthCryptoError, constant_time_eq, random_fill};

/// Seconds per time step.
pub const STEP_SECS: u64 = 30;
/// Digits per code.
pub const DIGITS: usize = 6;
/// Length of a secret from [`new_secret`] (160 bits, as RFC 4226 section 4 recommends).
pub const SECRET_BYTES: usize = 20;
/// Secrets shorter than RFC 4226's 128-bit minimum never verify.
const MIN_SECRET_BYTES: usize = 16;

/// Why a code was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    #[error("a one-time code is 6 digits")]
    Malformed,
    #[error("the one-time code is wrong or has expired")]
    Wrong,
    #[error("the one-time code was already used")]
    Replayed,
}

impl TotpError {
    pub fn help(&self) -> &'static str {
        match self {
            Self::Malformed => "type the 6 digits your authenticator app shows",
            Self::Wrong => {
                "type the code your authenticator app shows now, and check that this device's clock is right"
            }
            Self::Replayed => {
                "wait for your authenticator app to show the next code, then use that"
            }
        }
    }
}

/// A fresh random secret of [`SECRET_BYTES`] bytes. Store it sealed; show it only during
/// enrolment, as [`uri`] or [`base32`].
pub fn new_secret() -> Result<Vec<u8>, AuthCryptoError> {
    let mut secret = vec![0u8; SECRET_BYTES];
    random_fill(&mut secret)?;
    Ok(secret)
}

/// The secret as unpadded RFC 4648 base32, for users who type it into their app by hand.
pub fn base32(secret: &[u8]) -> String {
    totp_rs::Secret::from(secret).to_base32()
}

/// The `otpauth://` enrolment URI that authenticator apps scan from a QR code. `issuer` and
/// `account` are percent-encoded; the Key URI format reserves `:` as the label separator, so
/// names containing one may be shown split by some apps.
pub fn uri(secret: &[u8], account: &str, issuer: &str) -> String {
    let issuer = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        account = percent_encode(account),
        secret = base32(secret),
    )
}

/// Checks `code` against `secret` at `now_unix_secs`, accepting the current step and one either
/// side. Returns the matched step (`unix_secs / 30`, the newest if several match), which the
/// caller must store and pass back as `last_step`: a code matching only steps up to `last_step`
/// is [`TotpError::Replayed`].
///
/// `code` may have surrounding whitespace and one space inside (`123 456`, as apps display it).
pub fn verify(
    secret: &[u8],
    code: &str,
    last_step: Option<u64>,
    now_unix_secs: u64,
) -> Result<u64, TotpError> {
    let code = parse_code(code).ok_or(TotpError::Malformed)?;
    if secret.len() < MIN_SECRET_BYTES {
        return Err(TotpError::Wrong);
    }
    let totp = totp(secret);
    let now = now_unix_secs / STEP_SECS;
    let mut matched = None;
    // Every step in the window is computed and compared whether or not an earlier one matched,
    // so the time taken does not say which step (if any) the code belongs to. Ascending order
    // leaves the newest match in `matched`.
    for step in [now.checked_sub(1), Some(now), now.checked_add(1)]
        .into_iter()
        .flatten()
    {
        let Some(at) = step.checked_mul(STEP_SECS) else {
            continue;
        };
        let expected = Secret::new(totp.generate(at).to_string());
        if constant_time_eq(expected.expose().as_bytes(), &code) {
            matched = Some(step);
        }
    }
    let step = matched.ok_or(TotpError::Wrong)?;
    // A code is accepted at most once, and never one older than the last accepted one.
    if last_step.is_some_and(|last| step <= last) {
        return Err(TotpError::Replayed);
    }
    Ok(step)
}

/// The code for `secret` at `unix_secs`, for tests and test tooling.
pub fn code_at(secret: &[u8], unix_secs: u64) -> String {
    totp(secret).generate(unix_secs).to_string()
}

fn totp(secret: &[u8]) -> Totp {
    // `build` would refuse secrets under 128 bits; `verify` refuses those itself, and the
    // parameters set here are all RFC-compliant, so nothing `build` checks can go wrong.
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(STEP_SECS)
        .with_secret(secret)
        .build_noncompliant()
}

/// The six ASCII digits of `code`, if it is exactly that after trimming and dropping one inner
/// space.
fn parse_code(code: &str) -> Option<[u8; DIGITS]> {
    let code = code.trim();
    let (head, tail) = code.split_once(' ').unwrap_or((code, ""));
    let mut out = [0u8; DIGITS];
    let mut n = 0;
    for c in head.bytes().chain(tail.bytes()) {
        if !c.is_ascii_digit() {
            return None;
        }
        *out.get_mut(n)? = c;
        n += 1;
    }
    (n == DIGITS).then_some(out)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0xf));
        }
    }
    out
}

fn hex_digit(n: u8) -> char {
    char::from_digit(u32::from(n), 16)
        .unwrap_or('0')
        .to_ascii_uppercase()
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

    /// RFC 6238 appendix B's SHA-1 seed.
    const RFC_SECRET: &[u8] = b"12345678901234567890";
    /// A time in the middle of a step, so the steps either side are plainly inside the window.
    const NOW: u64 = 1_700_000_015;

    #[test]
    fn rfc_6238_sha1_vector() {
        // The RFC's 8-digit code at t=59 is 94287082; the 6-digit code is its last six digits.
        assert_eq!(code_at(RFC_SECRET, 59), "287082");
        assert_eq!(verify(RFC_SECRET, "287082", None, 59), Ok(1));
        // More RFC times, truncated to 6 digits.
        assert_eq!(code_at(RFC_SECRET, 1_111_111_109), "081804");
        assert_eq!(code_at(RFC_SECRET, 1_234_567_890), "005924");
        assert_eq!(code_at(RFC_SECRET, 2_000_000_000), "279037");
    }

    #[test]
    fn accepts_current_and_adjacent_steps() {
        let secret = new_secret().unwrap();
        let step = NOW / STEP_SECS;
        for (offset, expect) in [(-30i64, step - 1), (0, step), (30, step + 1)] {
            let code = code_at(&secret, NOW.checked_add_signed(offset).unwrap());
            assert_eq!(verify(&secret, &code, None, NOW), Ok(expect), "{offset}");
            assert_eq!(
                verify(&secret, &code, Some(expect - 1), NOW),
                Ok(expect),
                "{offset}"
            );
        }
        for offset in [-60i64, 60, -3600] {
            let code = code_at(&secret, NOW.checked_add_signed(offset).unwrap());
            assert_eq!(
                verify(&secret, &code, None, NOW),
                Err(TotpError::Wrong),
                "{offset}"
            );
        }
    }

    #[test]
    fn refuses_replayed_and_older_codes() {
        let secret = new_secret().unwrap();
        let now_code = code_at(&secret, NOW);
        let step = verify(&secret, &now_code, None, NOW).unwrap();
        // The same code again, even a few seconds later in the same step.
        assert_eq!(
            verify(&secret, &now_code, Some(step), NOW + 5),
            Err(TotpError::Replayed)
        );
        // A code from the step before the accepted one is still inside the window, but older.
        let older = code_at(&secret, NOW - 30);
        assert_eq!(
            verify(&secret, &older, Some(step), NOW),
            Err(TotpError::Replayed)
        );
        // The next step's code is new.
        let next = code_at(&secret, NOW + 30);
        assert_eq!(verify(&secret, &next, Some(step), NOW + 30), Ok(step + 1));
    }

    #[test]
    fn prefers_the_newest_matching_step() {
        // With the RFC secret, steps 56188870 and 56188871 share the code 617002 (found by
        // search; about one adjacent pair in a million does).
        let (older, newer) = (56_188_870u64, 56_188_871u64);
        assert_eq!(code_at(RFC_SECRET, older * STEP_SECS), "617002");
        assert_eq!(code_at(RFC_SECRET, newer * STEP_SECS), "617002");
        let now = older * STEP_SECS + 10;
        assert_eq!(verify(RFC_SECRET, "617002", None, now), Ok(newer));
        // Having used it for the older step, the same digits are still good for the newer one.
        assert_eq!(verify(RFC_SECRET, "617002", Some(older), now), Ok(newer));
        assert_eq!(
            verify(RFC_SECRET, "617002", Some(newer), now),
            Err(TotpError::Replayed)
        );
    }

    #[test]
    fn input_shapes() {
        let secret = new_secret().unwrap();
        let code = code_at(&secret, NOW);
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        let padded = format!("  {code}\n");
        for ok in [code.as_str(), spaced.as_str(), padded.as_str()] {
            assert!(verify(&secret, ok, None, NOW).is_ok(), "{ok:?}");
        }
        let bad = [
            "",
            "12345",
            "1234567",
            "12345a",
            "+12345",
            "-12345",
            "１２３４５６",
            "12 34 56",
            "123  456",
            "123\u{a0}456",
        ];
        for b in bad {
            assert_eq!(
                verify(&secret, b, None, NOW),
                Err(TotpError::Malformed),
                "{b:?}"
            );
        }
    }

    #[test]
    fn short_secrets_never_verify() {
        let short = b"0123456789";
        let code = code_at(short, NOW);
        assert_eq!(verify(short, &code, None, NOW), Err(TotpError::Wrong));
    }

    #[test]
    fn edges_of_time() {
        let secret = new_secret().unwrap();
        assert_eq!(verify(&secret, &code_at(&secret, 0), None, 0), Ok(0));
        assert_eq!(verify(&secret, &code_at(&secret, 0), None, 10), Ok(0));
        let late = u64::MAX;
        let code = code_at(&secret, late);
        assert_eq!(verify(&secret, &code, None, late), Ok(late / STEP_SECS));
    }

    #[test]
    fn enrolment_uri_round_trips() {
        let secret = new_secret().unwrap();
        let uri = uri(&secret, "alice@example.com", "Break Glass");
        assert!(uri.starts_with("otpauth://totp/Break%20Glass:alice%40example.com?secret="));
        assert!(uri.ends_with("&issuer=Break%20Glass&algorithm=SHA1&digits=6&period=30"));
        assert!(uri.contains(&format!("secret={}&", base32(&secret))));
        let parsed = Totp::from_url(&uri).unwrap();
        assert_eq!(parsed.secret().as_bytes(), secret.as_slice());
        assert_eq!(parsed.account_name(), "alice@example.com");
        assert_eq!(parsed.issuer(), Some("Break Glass"));
        assert_eq!(parsed.generate(NOW).to_string(), code_at(&secret, NOW));
    }

    #[test]
    fn base32_is_unpadded_rfc_4648() {
        assert_eq!(base32(RFC_SECRET), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(base32(&[0xff]), "74");
        assert_eq!(new_secret().unwrap().len(), SECRET_BYTES);
    }

    #[test]
    fn errors_say_what_to_do() {
        assert_eq!(
            TotpError::Malformed.to_string(),
            "a one-time code is 6 digits"
        );
        assert!(TotpError::Replayed.help().contains("next code"));
        assert!(TotpError::Wrong.help().contains("clock"));
    }
}
