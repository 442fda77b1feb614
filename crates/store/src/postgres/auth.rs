//! Sign-in state on PostgreSQL: its SQL, and reading several subjects' counters in one query.
//! `failures` is an `INTEGER`, read as a `bigint`.

use super::PostgresStore;
use crate::auth::{self, AuthSql, Throttles};
use crate::{Result, ThrottleState};

pub(super) const SQL: AuthSql = AuthSql {
    insert_login: "INSERT INTO logins (principal, body, version, updated_at) VALUES ($1, $2, 1, $3)
                   ON CONFLICT (principal) DO NOTHING",
    replace_login: "UPDATE logins SET body = $1, version = version + 1, updated_at = $2
                    WHERE principal = $3 AND version = $4",
    login: "SELECT body, version FROM logins WHERE principal = $1",
    count_failure: "INSERT INTO auth_throttle (subject, failures, locked_until, updated_at)
                    VALUES ($1, 1, NULL, $2)
                    ON CONFLICT (subject) DO UPDATE SET
                      failures = CASE WHEN auth_throttle.updated_at < $2 - $3 THEN 1
                                      ELSE auth_throttle.failures + 1 END,
                      updated_at = $2
                    RETURNING failures::bigint AS failures",
    lock: "UPDATE auth_throttle SET locked_until = $1 WHERE subject = $2",
    clear: "DELETE FROM auth_throttle WHERE subject = $1",
    refuse:
        "UPDATE auth_throttle SET refused = refused + 1 WHERE subject = $1 AND locked_until > $2
             RETURNING refused::bigint AS refused",
    refusals_of: "SELECT refused::bigint AS refused, locked_until FROM auth_throttle
                  WHERE subject = $1",
    ended_windows: "SELECT subject, refused::bigint AS refused, locked_until FROM auth_throttle
                    WHERE refused > 0 AND locked_until <= $1 ORDER BY locked_until, subject",
    reset_refused: "UPDATE auth_throttle SET refused = 0 WHERE subject = $1",
    prune: "DELETE FROM auth_throttle WHERE updated_at <= $1
            AND (locked_until IS NULL OR locked_until <= $2) AND refused = 0",
    next_window_end: "SELECT MIN(locked_until) AS t FROM auth_throttle WHERE refused > 0",
    oldest_failure: "SELECT MIN(updated_at) AS t FROM auth_throttle",
};

impl Throttles for PostgresStore {
    async fn throttles_in(&self, subjects: &[String]) -> Result<Vec<ThrottleState>> {
        let rows = sqlx::query(
            "SELECT subject, failures::bigint AS failures, locked_until FROM auth_throttle
             WHERE subject = ANY($1) ORDER BY subject",
        )
        .bind(subjects)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(auth::throttle).collect()
    }
}
