//! API tokens: `bgt_<id>_<secret>`. The id is public (it names the token in lists and audit
//! events); only SHA-256 of the secret is stored (invariant 6). The secret carries 256 bits of
//! randomness, so a fast hash is the right one: there is nothing to brute-force.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use breakglass_core::text::TOKEN_PREFIX as PREFIX;
use breakglass_core::{
    Actor, DomainError, Duration, EventDraft, EventKind, PolicyAction, PrincipalKind, Scope,
    Timestamp,
};
use breakglass_providers::Secret;
use breakglass_store::{ApiToken, TokenKind};
use sha2::{Digest, Sha256};

use super::{Caller, SignIn};
use crate::error::ServiceError;
use crate::policy::{AccessError, parse_scopes};
use crate::startup::sealing::{SealError, random_32};

/// The longest an API token may live.
const MAX_TOKEN_TTL_SECS: i64 = 366 * 86_400;

/// A token just made: its stored record and the secret shown once.
#[derive(Debug)]
pub struct NewToken {
    pub record: ApiToken,
    pub secret: Secret,
}

pub(crate) fn issue(
    principal: &str,
    kind: TokenKind,
    scopes: Option<Vec<Scope>>,
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

impl SignIn {
    /// A token for a service principal (made by an administrator, with scopes) or for the caller
    /// themself (a person's tokens are made only by that person, so nobody can act as another).
    pub async fn create_token(
        &self,
        caller: &Caller,
        user: &str,
        ttl: Duration,
        scopes: Option<Vec<String>>,
    ) -> Result<NewToken, ServiceError> {
        if ttl.as_secs() > MAX_TOKEN_TTL_SECS {
            return Err(DomainError::InvalidField {
                field: "ttl",
                problem: "it is longer than 366 days".into(),
            }
            .into());
        }
        let p = self.principal(user).await?;
        let scopes = match (p.kind, scopes) {
            (kind, Some(s)) => Some(parse_scopes(kind, &s)?),
            (PrincipalKind::Service, None) => {
                return Err(AccessError::InvalidScopes(
                    "a service token needs `scopes` (what the automation may do)".into(),
                )
                .into());
            }
            (PrincipalKind::Human, None) => None,
        };
        match p.kind {
            PrincipalKind::Human if p.name != caller.principal.name => {
                return Err(AccessError::TokenForAnotherPerson {
                    principal: caller.principal.name.to_string(),
                    user: p.name.to_string(),
                }
                .into());
            }
            PrincipalKind::Human => self.access.check(caller, caller.action, None, true)?,
            PrincipalKind::Service => {
                self.access
                    .check(caller, caller.action.on_others(), None, false)?;
            }
        }
        let now = self.clock.now();
        let token = issue(p.name.as_str(), TokenKind::Api, scopes.clone(), ttl, now)?;
        let event = EventDraft::new(
            Actor::User(caller.principal.name.clone()),
            None,
            EventKind::TokenCreated {
                token_id: token.record.id.clone(),
                principal: p.name.to_string(),
                expires_at: token.record.expires_at,
                scopes: scopes.map(|s| s.iter().map(|x| x.as_str().to_owned()).collect()),
            },
        );
        self.store
            .create_token(&token.record, &[event], now)
            .await?;
        Ok(token)
    }

    /// Every token for those who may read the audit trail; one's own for everyone else.
    pub async fn tokens(&self, caller: &Caller) -> Result<Vec<ApiToken>, ServiceError> {
        let all = self.store.tokens().await?;
        if self
            .access
            .allowed(&caller.principal, PolicyAction::ReadAudit, None, false)
        {
            return Ok(all);
        }
        Ok(all
            .into_iter()
            .filter(|t| t.principal == caller.principal.name.as_str())
            .collect())
    }

    /// Anyone may end their own tokens at once, with no second factor (a leak must be containable
    /// without one at hand); ending someone else's is administration.
    pub async fn revoke_token(&self, caller: &Caller, id: &str) -> Result<ApiToken, ServiceError> {
        // Someone revoking a leaked token may paste the whole token: take its id, and never echo
        // anything but a well-formed id.
        let id = id_of(id);
        let unknown = || DomainError::UnknownToken {
            id: if is_id(id) {
                id.to_owned()
            } else {
                "(not a token id)".to_owned()
            },
        };
        let t = self.store.token(id).await?.ok_or_else(unknown)?;
        if t.principal != caller.principal.name.as_str() {
            self.access
                .check(caller, caller.action.on_others(), None, false)?;
        }
        let now = self.clock.now();
        let event = EventDraft::new(
            Actor::User(caller.principal.name.clone()),
            None,
            EventKind::TokenRevoked {
                token_id: t.id.clone(),
                principal: t.principal.clone(),
            },
        );
        if !self.store.revoke_token(id, &[event], now).await? {
            return Err(DomainError::TokenAlreadyRevoked { id: t.id }.into());
        }
        Ok(self.store.token(id).await?.ok_or_else(unknown)?)
    }
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
        let logged = breakglass_core::text::redact_tokens(&format!(
            "/v1/tokens/{}/revoke",
            t.secret.expose()
        ))
        .into_owned();
        assert!(!logged.contains(secret), "{logged}");
        assert!(logged.contains(&t.record.id));
    }
}
