//! API tokens: `bgt_<id>_<secret>`. The id is public (it names the token in lists and audit
//! events); only SHA-256 of the secret is stored (invariant 6). The secret carries 256 bits of
//! randomness, so a fast hash is the right one: there is nothing to brute-force.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use breakglass_core::{Duration, Timestamp};
use breakglass_providers::Secret;
use breakglass_store::{ApiToken, TokenKind};
use sha2::{Digest, Sha256};

use crate::sealing::{SealError, random_32};

const PREFIX: &str = "bgt_";

/// A token just made: its stored record and the secret shown once.
#[derive(Debug)]
pub struct NewToken {
    pub record: ApiToken,
    pub secret: Secret,
}

pub(crate) fn issue(
    principal: &str,
    kind: TokenKind,
    scopes: Option<Vec<String>>,
    ttl: Duration,
    now: Timestamp,
) -> Result<NewToken, SealError> {
    let r = random_32()?;
    let id = hex::encode(r.get(..6).unwrap_or_default());
    let secret = B64.encode(random_32()?);
    let record = ApiToken {
        id: id.clone(),
        principal: principal.to_owned(),
        secret_hash: hash(&secret),
        created_at: now,
        expires_at: now.saturating_add(ttl),
        revoked_at: None,
        kind,
        scopes,
        stepped_up_at: None,
    };
    Ok(NewToken {
        record,
        secret: Secret::new(format!("{PREFIX}{id}_{secret}")),
    })
}

/// Splits a presented token into `(id, secret)`; `None` if it is not shaped like one of ours.
pub(crate) fn parse(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let ok = id.len() == 12
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some((id, secret))
}

/// Whether `s` has the shape of a token id (12 lowercase hex characters).
pub(crate) fn is_id(s: &str) -> bool {
    s.len() == 12
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The id part of a whole token (`bgt_<id>_<secret>`), or `s` itself.
pub(crate) fn id_of(s: &str) -> &str {
    s.strip_prefix(PREFIX)
        .and_then(|rest| rest.split('_').next())
        .unwrap_or(s)
}

/// `path` with any whole API token in it cut down to its id, for log lines.
pub(crate) fn redact_path(path: &str) -> String {
    path.split('/')
        .map(
            |seg| match seg.strip_prefix(PREFIX).and_then(|r| r.split_once('_')) {
                Some((id, _)) => format!("{PREFIX}{id}_[redacted]"),
                None => seg.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether `secret` is the one whose hash `record` keeps, compared in constant time.
pub(crate) fn matches(record: &ApiToken, secret: &str) -> bool {
    let h = hash(secret);
    h.iter()
        .zip(record.secret_hash.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_parse_and_match() {
        let t = issue(
            "alice",
            TokenKind::Api,
            None,
            Duration::from_secs(60),
            Timestamp::from_unix_millis(0),
        )
        .unwrap();
        let (id, secret) = parse(t.secret.expose()).unwrap();
        assert_eq!(id, t.record.id);
        assert!(matches(&t.record, secret));
        assert!(!matches(&t.record, "x"));
        assert_eq!(t.record.expires_at.unix_millis(), 60_000);
        assert!(parse("bgt_zz_zz").is_none());
        assert!(parse("Bearer x").is_none());
        assert_eq!(id_of(t.secret.expose()), t.record.id);
        assert_eq!(id_of("abc"), "abc");
        let logged = redact_path(&format!("/v1/tokens/{}/revoke", t.secret.expose()));
        assert!(!logged.contains(secret), "{logged}");
        assert!(logged.contains(&t.record.id));
    }
}
