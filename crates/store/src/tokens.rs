//! API tokens and sessions: how a token's kind and scopes are kept (the scopes as a JSON array of
//! their names), its reads, revocation and step-up. Each backend supplies the SQL ([`TokenSql`]).

use breakglass_core::{EventDraft, Scope, Timestamp};

use crate::audit::record_if;
use crate::sql::{Conn, Row, Stmt};
use crate::{ApiToken, Result, StoreError, TokenKind};

/// The SQL of tokens. Parameters, in order, after each field's name.
pub(crate) struct TokenSql {
    /// `id, principal, secret_hash, created_at, expires_at, revoked_at, kind, scopes,
    /// stepped_up_at`: a new token.
    pub(crate) insert: &'static str,
    /// `now, id`: the token revoked, unless it is already.
    pub(crate) revoke: &'static str,
    /// `now, id`: a step-up recorded, unless the token is revoked.
    pub(crate) step_up: &'static str,
    /// `now, principal`: every token of the principal revoked, unless it is already.
    pub(crate) revoke_all_of: &'static str,
    /// `id`: the token's columns.
    pub(crate) by_id: &'static str,
    /// Every token's columns, oldest first.
    pub(crate) all: &'static str,
}

/// Inserts `t`.
pub(crate) async fn insert<C: Conn>(tx: &mut C, t: &ApiToken) -> Result<()> {
    let scopes = t
        .scopes
        .as_ref()
        .map(|s| {
            let names: Vec<&str> = s.iter().map(|s| s.as_str()).collect();
            serde_json::to_string(&names)
                .map_err(|e| StoreError::Corrupt(format!("token scopes: {e}")))
        })
        .transpose()?;
    let insert = Stmt::new(C::TOKENS.insert)
        .text(&t.id)
        .text(&t.principal)
        .bytes(&t.secret_hash)
        .time(t.created_at)
        .time(t.expires_at)
        .opt_time(t.revoked_at)
        .text(t.kind.as_str())
        .opt_text(scopes.as_deref())
        .opt_time(t.stepped_up_at);
    tx.execute(insert).await?;
    Ok(())
}

/// See [`crate::Store::create_token`].
pub(crate) async fn create<C: Conn>(
    tx: &mut C,
    t: &ApiToken,
    events: &[EventDraft],
    now: Timestamp,
) -> Result<()> {
    insert(tx, t).await?;
    tx.append(events, now).await
}

/// See [`crate::Store::revoke_token`].
pub(crate) async fn revoke<C: Conn>(
    tx: &mut C,
    id: &str,
    events: &[EventDraft],
    now: Timestamp,
) -> Result<bool> {
    let done = tx
        .execute(Stmt::new(C::TOKENS.revoke).time(now).text(id))
        .await?;
    record_if(tx, done > 0, events, now).await
}

/// See [`crate::Store::step_up`].
pub(crate) async fn step_up<C: Conn>(
    tx: &mut C,
    id: &str,
    events: &[EventDraft],
    now: Timestamp,
) -> Result<bool> {
    let done = tx
        .execute(Stmt::new(C::TOKENS.step_up).time(now).text(id))
        .await?;
    record_if(tx, done > 0, events, now).await
}

/// Revokes every token `principal` holds, sessions and API tokens alike.
pub(crate) async fn revoke_all_of<C: Conn>(
    tx: &mut C,
    principal: &str,
    now: Timestamp,
) -> Result<()> {
    let revoke = Stmt::new(C::TOKENS.revoke_all_of).time(now).text(principal);
    tx.execute(revoke).await?;
    Ok(())
}

/// See [`crate::Store::token`].
pub(crate) async fn get<C: Conn>(c: &mut C, id: &str) -> Result<Option<ApiToken>> {
    let row = c.optional(Stmt::new(C::TOKENS.by_id).text(id)).await?;
    row.as_ref().map(token).transpose()
}

/// See [`crate::Store::tokens`].
pub(crate) async fn all<C: Conn>(c: &mut C) -> Result<Vec<ApiToken>> {
    let rows = c.all(Stmt::new(C::TOKENS.all)).await?;
    rows.iter().map(token).collect()
}

fn token(r: &impl Row) -> Result<ApiToken> {
    Ok(ApiToken {
        id: r.text("id")?,
        principal: r.text("principal")?,
        secret_hash: r
            .bytes("secret_hash")?
            .try_into()
            .map_err(|_| StoreError::Corrupt("token hash is not 32 bytes".into()))?,
        created_at: r.time("created_at")?,
        expires_at: r.time("expires_at")?,
        revoked_at: r.opt_time("revoked_at")?,
        kind: match r.text("kind")?.as_str() {
            "api" => TokenKind::Api,
            "session" => TokenKind::Session,
            other => {
                return Err(StoreError::Corrupt(format!("unknown token kind `{other}`")));
            }
        },
        scopes: r.opt_text("scopes")?.map(|s| scopes(&s)).transpose()?,
        stepped_up_at: r.opt_time("stepped_up_at")?,
    })
}

/// The scopes a token's `scopes` column names.
fn scopes(text: &str) -> Result<Vec<Scope>> {
    let names: Vec<String> = serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("token scopes: {e}")))?;
    names
        .iter()
        .map(|n| {
            Scope::parse(n).ok_or_else(|| StoreError::Corrupt(format!("unknown token scope `{n}`")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_scope_names_parse_and_an_unknown_one_is_corrupt() {
        assert_eq!(
            scopes(r#"["read","credential"]"#).unwrap(),
            [Scope::Read, Scope::Credential]
        );
        let err = scopes(r#"["read","fly"]"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "stored data is corrupt: unknown token scope `fly`"
        );
        assert!(matches!(scopes("read"), Err(StoreError::Corrupt(_))));
    }
}
