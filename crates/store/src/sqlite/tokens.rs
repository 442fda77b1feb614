//! The SQL of API tokens and sessions on SQLite.

use crate::tokens::TokenSql;

pub(super) const SQL: TokenSql = TokenSql {
    insert:
        "INSERT INTO api_tokens (id, principal, secret_hash, created_at, expires_at, revoked_at,
                                     kind, scopes, stepped_up_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    revoke: "UPDATE api_tokens SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
    step_up: "UPDATE api_tokens SET stepped_up_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
    revoke_all_of: "UPDATE api_tokens SET revoked_at = ?1
                    WHERE principal = ?2 AND revoked_at IS NULL",
    by_id: "SELECT * FROM api_tokens WHERE id = ?1",
    all: "SELECT * FROM api_tokens ORDER BY created_at, id",
};
