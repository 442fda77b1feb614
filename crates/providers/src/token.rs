//! The `token` provider: a just-in-time entitlement as an EdDSA (Ed25519) JWT.
//!
//! The target is any service that trusts breakglass's key set (`/.well-known/jwks.json`). It
//! enforces the end itself through `exp` (invariant 1); services that need to see an early revoke
//! ask breakglass's RFC 7662 introspection endpoint, which answers from the grant's state. The
//! deny list is therefore the grant record itself: `revoke` has nothing to remove at a target and
//! succeeds, and `check` reports whether the token would still be accepted on its own.

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use breakglass_core::{Target, Timestamp};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{GrantSpec, Issued, Presence, Provider, ProviderError, Secret};

/// The claims breakglass puts in every token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    /// Space-separated, as in RFC 8693 and RFC 9068.
    pub scope: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// The grant id.
    pub jti: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token is not signed by this broker")]
    BadSignature,
    #[error("token was issued by `{0}`, not this broker")]
    WrongIssuer(String),
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
}

pub struct TokenProvider {
    key: SigningKey,
    kid: String,
    issuer: String,
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenProvider")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl TokenProvider {
    /// A provider signing with the Ed25519 key whose 32-byte seed is `seed`.
    pub fn new(seed: &[u8; 32], issuer: &str) -> Self {
        let key = SigningKey::from_bytes(seed);
        let kid = thumbprint(&key.verifying_key());
        Self {
            key,
            kid,
            issuer: issuer.to_owned(),
        }
    }

    /// The key id: the RFC 7638 JWK thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The public key set, as served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        json!({ "keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "x": B64.encode(self.key.verifying_key().as_bytes()),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        }]})
    }

    /// Signs `claims` into a compact JWT.
    pub fn sign(&self, claims: &Claims) -> String {
        let header = json!({ "alg": "EdDSA", "typ": "JWT", "kid": self.kid });
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(serde_json::to_vec(claims).unwrap_or_default())
        );
        let sig: Signature = self.key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(sig.to_bytes()))
    }

    /// Checks signature, issuer and time window; returns the claims. Whether the grant behind the
    /// token is still active is the caller's question.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(h).map_err(|_| TokenError::Malformed)?)
                .map_err(|_| TokenError::Malformed)?;
        if header.get("alg").and_then(|v| v.as_str()) != Some("EdDSA") {
            return Err(TokenError::BadSignature);
        }
        let sig = Signature::from_slice(&B64.decode(s).map_err(|_| TokenError::Malformed)?)
            .map_err(|_| TokenError::Malformed)?;
        let signing_input_len = h.len() + 1 + p.len();
        let signing_input = token
            .get(..signing_input_len)
            .ok_or(TokenError::Malformed)?;
        self.key
            .verifying_key()
            .verify_strict(signing_input.as_bytes(), &sig)
            .map_err(|_| TokenError::BadSignature)?;
        let claims: Claims =
            serde_json::from_slice(&B64.decode(p).map_err(|_| TokenError::Malformed)?)
                .map_err(|_| TokenError::Malformed)?;
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer(claims.iss));
        }
        let now_s = now.unix_seconds();
        if now_s >= claims.exp {
            return Err(TokenError::Expired);
        }
        if now_s < claims.nbf {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

/// RFC 7638 thumbprint of an Ed25519 public key, base64url.
fn thumbprint(k: &VerifyingKey) -> String {
    // Members in lexicographic order, no whitespace, as RFC 7638 section 3 requires.
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        B64.encode(k.as_bytes())
    );
    B64.encode(Sha256::digest(canonical.as_bytes()))
}

/// A fingerprint that identifies a credential in audit events without revealing it.
pub fn fingerprint(credential: &str) -> String {
    let full = hex::encode(Sha256::digest(credential.as_bytes()));
    format!("sha256:{}", full.get(..16).unwrap_or(&full))
}

#[async_trait]
impl Provider for TokenProvider {
    fn kind(&self) -> &'static str {
        "token"
    }

    fn handle(&self, spec: &GrantSpec<'_>) -> String {
        format!("{}/{}", spec.grant, spec.expires_at.unix_seconds())
    }

    async fn grant(&self, spec: &GrantSpec<'_>) -> Result<Issued, ProviderError> {
        let Target::Token { audience, scope } = spec.target else {
            return Err(ProviderError::WrongTarget {
                kind: "token",
                target: spec.target.kind(),
            });
        };
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: spec.principal.to_owned(),
            aud: audience.clone(),
            scope: scope.join(" "),
            iat: spec.not_before.unix_seconds(),
            nbf: spec.not_before.unix_seconds(),
            // INVARIANT(1): the token ends on its own at the grant's end (rounded down to the
            // second, so never later), whatever happens to the broker.
            exp: spec.expires_at.unix_seconds(),
            jti: spec.grant.to_string(),
        };
        // Ed25519 signatures are deterministic: the same spec gives the same token (invariant 8).
        let jwt = self.sign(&claims);
        Ok(Issued {
            fingerprint: fingerprint(&jwt),
            handle: self.handle(spec),
            credential: Secret::new(jwt),
        })
    }

    async fn revoke(&self, handle: &str) -> Result<(), ProviderError> {
        parse_handle(handle).map(|_| ())
    }

    async fn check(&self, handle: &str, now: Timestamp) -> Result<Presence, ProviderError> {
        let (_, exp) = parse_handle(handle)?;
        Ok(if now.unix_seconds() < exp {
            Presence::Present
        } else {
            Presence::Absent
        })
    }
}

fn parse_handle(handle: &str) -> Result<(&str, i64), ProviderError> {
    let bad = || ProviderError::BadHandle(handle.chars().take(80).collect());
    let (jti, exp) = handle.split_once('/').ok_or_else(bad)?;
    Ok((jti, exp.parse().map_err(|_| bad())?))
}

#[cfg(test)]
mod tests {
    use breakglass_core::GrantId;

    use super::*;

    fn provider() -> TokenProvider {
        TokenProvider::new(&[7; 32], "https://bg.example")
    }

    fn spec(target: &Target) -> GrantSpec<'_> {
        GrantSpec {
            grant: GrantId::from_bytes([3; 16]),
            principal: "alice",
            target,
            not_before: Timestamp::from_unix_millis(1_800_000_000_000),
            expires_at: Timestamp::from_unix_millis(1_800_001_800_000),
        }
    }

    #[tokio::test]
    async fn grant_is_idempotent_and_verifies() {
        let p = provider();
        let target = Target::Token {
            audience: "prod-db".into(),
            scope: vec!["db:admin".into(), "db:read".into()],
        };
        let a = p.grant(&spec(&target)).await.unwrap();
        let b = p.grant(&spec(&target)).await.unwrap();
        assert_eq!(a.credential, b.credential, "same spec, same token");
        assert_eq!(
            a.handle,
            p.handle(&spec(&target)),
            "the handle is known before granting"
        );
        assert_eq!(a.fingerprint, b.fingerprint);
        assert!(!a.fingerprint.contains(a.credential.expose()));
        let claims = p
            .verify(
                a.credential.expose(),
                Timestamp::from_unix_millis(1_800_000_001_000),
            )
            .unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.aud, "prod-db");
        assert_eq!(claims.scope, "db:admin db:read");
        assert_eq!(claims.exp - claims.iat, 1800);
        assert_eq!(claims.jti, GrantId::from_bytes([3; 16]).to_string());
        assert_eq!(
            p.verify(
                a.credential.expose(),
                Timestamp::from_unix_millis(1_800_001_800_000)
            ),
            Err(TokenError::Expired)
        );
        assert_eq!(
            p.check(&a.handle, Timestamp::from_unix_millis(1_800_000_000_000))
                .await
                .unwrap(),
            Presence::Present
        );
        assert_eq!(
            p.check(&a.handle, Timestamp::from_unix_millis(1_800_001_800_000))
                .await
                .unwrap(),
            Presence::Absent
        );
        p.revoke(&a.handle).await.unwrap();
        p.revoke(&a.handle).await.unwrap();
    }

    #[tokio::test]
    async fn tampered_or_foreign_tokens_are_refused() {
        let p = provider();
        let target = Target::Token {
            audience: "a".into(),
            scope: vec!["s".into()],
        };
        let jwt = p
            .grant(&spec(&target))
            .await
            .unwrap()
            .credential
            .expose()
            .to_owned();
        let now = Timestamp::from_unix_millis(1_800_000_001_000);
        let other = TokenProvider::new(&[8; 32], "https://bg.example");
        assert_eq!(other.verify(&jwt, now), Err(TokenError::BadSignature));
        let mut parts: Vec<&str> = jwt.split('.').collect();
        let forged = B64.encode(br#"{"iss":"https://bg.example","sub":"mallory","aud":"a","scope":"s","iat":0,"nbf":0,"exp":9999999999,"jti":"x"}"#);
        parts[1] = &forged;
        assert_eq!(
            p.verify(&parts.join("."), now),
            Err(TokenError::BadSignature)
        );
        assert_eq!(p.verify("a.b", now), Err(TokenError::Malformed));
        assert_eq!(p.verify("", now), Err(TokenError::Malformed));
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // RFC 8037 appendix A.3 gives the thumbprint of its example Ed25519 key.
        let x = B64
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let vk = VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
        assert_eq!(
            thumbprint(&vk),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }
}
