//! Trying an issued credential the way its holder's target would, for drills: a token checked by a
//! relying party that knows only the published key set, and a PostgreSQL login followed by
//! `SELECT 1`. What comes back says what was seen, never the credential.

use std::str::FromStr as _;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use breakglass_core::Timestamp;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::Value;
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::Secret;
use crate::token::Claims;

/// How long a drill's login may take before the target counts as not answering.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Verifies `token` as a relying party would: with the key of the published key set `jwks` that
/// its header names, then its issuer and time window. `Err` says why it is refused.
pub fn verify_with_key_set(
    token: &Secret,
    jwks: &Value,
    issuer: &str,
    now: Timestamp,
) -> Result<Claims, String> {
    let mut parts = token.expose().split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the token is not a compact JWT".into());
    };
    let header: Value = B64
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("the token's header is malformed")?;
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or("the token's header names no key")?;
    let key = jwks
        .get("keys")
        .and_then(Value::as_array)
        .and_then(|keys| {
            keys.iter()
                .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        })
        .ok_or_else(|| format!("the key set has no key `{kid}`"))?;
    let x: [u8; 32] = key
        .get("x")
        .and_then(Value::as_str)
        .and_then(|x| B64.decode(x).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("key `{kid}` of the key set is malformed"))?;
    let public = VerifyingKey::from_bytes(&x).map_err(|_| format!("key `{kid}` is not Ed25519"))?;
    let sig = B64
        .decode(s)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or("the token's signature is malformed")?;
    let signed = format!("{h}.{p}");
    public
        .verify_strict(signed.as_bytes(), &sig)
        .map_err(|_| format!("the signature does not verify with key `{kid}`"))?;
    let claims: Claims = B64
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("the token's claims are malformed")?;
    if claims.iss != issuer {
        return Err(format!("the token was issued by `{}`", claims.iss));
    }
    let now_s = now.unix_seconds();
    if now_s >= claims.exp || now_s < claims.nbf {
        return Err("the token is outside its validity window".into());
    }
    Ok(claims)
}

/// Logs in to PostgreSQL with the credential `uri` (a `postgres://` URI holding a password) and
/// runs `SELECT 1`. `Ok` names the user; `Err` is the target's refusal (or why it could not be
/// reached), which never contains the password.
pub async fn postgres_login(uri: &Secret) -> Result<String, String> {
    let options = PgConnectOptions::from_str(uri.expose())
        .map_err(|_| "the credential is not a PostgreSQL URI".to_owned())?;
    let user = options.get_username().to_owned();
    let attempt = async {
        let mut conn = PgConnection::connect_with(&options)
            .await
            .map_err(|e| refusal(&e))?;
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| refusal(&e))?;
        let _ = conn.close().await;
        Ok::<_, String>(one)
    };
    match tokio::time::timeout(LOGIN_TIMEOUT, attempt).await {
        Ok(Ok(1)) => Ok(format!("logged in as `{user}` and ran `SELECT 1`")),
        Ok(Ok(other)) => Err(format!("`SELECT 1` returned {other}")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "the target did not answer within {}s",
            LOGIN_TIMEOUT.as_secs()
        )),
    }
}

/// What a failed login or query says, without anything of the connection string.
fn refusal(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_owned(),
        },
        sqlx::Error::Io(io) => format!("could not connect: {}", io.kind()),
        sqlx::Error::Tls(_) => "the TLS handshake failed".into(),
        sqlx::Error::PoolTimedOut => "the target did not answer in time".into(),
        _ => "the login failed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TokenProvider;

    #[test]
    fn a_token_verifies_with_the_published_key_set_only() {
        let now = Timestamp::from_unix_millis(1_800_000_000_000);
        let p = TokenProvider::new(&[7; 32], "https://bg");
        let claims = Claims {
            iss: "https://bg".into(),
            sub: "dana".into(),
            aud: "svc".into(),
            scope: "a".into(),
            iat: now.unix_seconds(),
            nbf: now.unix_seconds(),
            exp: now.unix_seconds() + 60,
            jti: "x".into(),
        };
        let token = Secret::new(p.sign(&claims));
        assert_eq!(
            verify_with_key_set(&token, &p.jwks(), "https://bg", now),
            Ok(claims)
        );
        let other = TokenProvider::new(&[8; 32], "https://bg");
        let err = verify_with_key_set(&token, &other.jwks(), "https://bg", now).unwrap_err();
        assert!(err.contains("has no key"), "{err}");
        let err = verify_with_key_set(&token, &p.jwks(), "https://other", now).unwrap_err();
        assert!(err.contains("issued by"), "{err}");
    }
}
