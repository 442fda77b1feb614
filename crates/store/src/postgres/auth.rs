//! Sign-in state on PostgreSQL: sessions' step-up, principals' factors and failed-attempt
//! throttling, each write one transaction with its audit events.

use breakglass_core::{EventDraft, Timestamp};
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use super::{PostgresStore, append_in};
use crate::{
    Result, StoreError, StoredGrant, StoredLogin, ThrottlePolicy, ThrottleState, locked_event,
};

impl PostgresStore {
    pub(super) async fn step_up_in(
        &self,
        id: &str,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool> {
        self.write(|mut tx| async move {
            let done = sqlx::query(
                "UPDATE api_tokens SET stepped_up_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            )
            .bind(now.unix_millis())
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok((tx, false));
            }
            append_in(&mut tx, events, now).await?;
            Ok((tx, true))
        })
        .await
    }

    pub(super) async fn set_disabled_in(
        &self,
        name: &str,
        disabled: bool,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool> {
        self.write(|mut tx| async move {
            let done = sqlx::query(
                "UPDATE principals SET disabled = $1 WHERE name = $2 AND disabled <> $1",
            )
            .bind(disabled)
            .bind(name)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok((tx, false));
            }
            if disabled {
                sqlx::query(
                    "UPDATE api_tokens SET revoked_at = $1 WHERE principal = $2 AND revoked_at IS NULL",
                )
                .bind(now.unix_millis())
                .bind(name)
                .execute(&mut *tx)
                .await?;
            }
            append_in(&mut tx, events, now).await?;
            Ok((tx, true))
        })
        .await
    }

    pub(super) async fn login_in(&self, principal: &str) -> Result<Option<StoredLogin>> {
        let row = sqlx::query("SELECT body, version FROM logins WHERE principal = $1")
            .bind(principal)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(StoredLogin {
                body: r.try_get("body")?,
                version: r.try_get("version")?,
            })
        })
        .transpose()
    }

    pub(super) async fn put_login_in(
        &self,
        principal: &str,
        body: &str,
        expected: Option<i64>,
        revoke_sessions: bool,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<()> {
        self.write(|mut tx| async move {
            let done = match expected {
                None => {
                    sqlx::query(
                        "INSERT INTO logins (principal, body, version, updated_at) VALUES ($1, $2, 1, $3)
                         ON CONFLICT (principal) DO NOTHING",
                    )
                    .bind(principal)
                    .bind(body)
                    .bind(now.unix_millis())
                    .execute(&mut *tx)
                    .await?
                }
                Some(v) => {
                    sqlx::query(
                        "UPDATE logins SET body = $1, version = version + 1, updated_at = $2
                         WHERE principal = $3 AND version = $4",
                    )
                    .bind(body)
                    .bind(now.unix_millis())
                    .bind(principal)
                    .bind(v)
                    .execute(&mut *tx)
                    .await?
                }
            };
            if done.rows_affected() == 0 {
                return Err(StoreError::Conflict);
            }
            if revoke_sessions {
                sqlx::query(
                    "UPDATE api_tokens SET revoked_at = $1
                     WHERE principal = $2 AND revoked_at IS NULL",
                )
                .bind(now.unix_millis())
                .bind(principal)
                .execute(&mut *tx)
                .await?;
            }
            append_in(&mut tx, events, now).await?;
            Ok((tx, ()))
        })
        .await
    }

    pub(super) async fn throttles_in(&self, subjects: &[String]) -> Result<Vec<ThrottleState>> {
        let rows = sqlx::query(
            "SELECT subject, failures, locked_until FROM auth_throttle
             WHERE subject = ANY($1) ORDER BY subject",
        )
        .bind(subjects)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(throttle_from_row).collect()
    }

    pub(super) async fn record_auth_failure_in(
        &self,
        subjects: &[(String, ThrottlePolicy)],
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<Vec<ThrottleState>> {
        self.write(|mut tx| async move {
            let mut states = Vec::new();
            let mut all = events.to_vec();
            for (subject, policy) in subjects {
                let failures: i32 = sqlx::query_scalar(
                    "INSERT INTO auth_throttle (subject, failures, locked_until, updated_at)
                     VALUES ($1, 1, NULL, $2)
                     ON CONFLICT (subject) DO UPDATE SET
                       failures = CASE WHEN auth_throttle.updated_at < $2 - $3 THEN 1
                                       ELSE auth_throttle.failures + 1 END,
                       updated_at = $2
                     RETURNING failures",
                )
                .bind(subject)
                .bind(now.unix_millis())
                .bind(ThrottlePolicy::FORGET_AFTER_MS)
                .fetch_one(&mut *tx)
                .await?;
                let failures = u32::try_from(failures).unwrap_or(u32::MAX);
                let locked_until = policy
                    .lock_ms(failures)
                    .map(|ms| Timestamp::from_unix_millis(now.unix_millis().saturating_add(ms)));
                if let Some(until) = locked_until {
                    sqlx::query("UPDATE auth_throttle SET locked_until = $1 WHERE subject = $2")
                        .bind(until.unix_millis())
                        .bind(subject)
                        .execute(&mut *tx)
                        .await?;
                }
                let st = ThrottleState {
                    subject: subject.clone(),
                    failures,
                    locked_until,
                };
                all.extend(locked_event(&st));
                states.push(st);
            }
            append_in(&mut tx, &all, now).await?;
            Ok((tx, states))
        })
        .await
    }

    pub(super) async fn clear_auth_failures_in(&self, subject: &str) -> Result<()> {
        sqlx::query("DELETE FROM auth_throttle WHERE subject = $1")
            .bind(subject)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn grants_for_in(
        &self,
        role: &str,
        requester: &str,
    ) -> Result<Vec<StoredGrant>> {
        let rows = sqlx::query(
            "SELECT body, version FROM grants WHERE role = $1 AND requester = $2
             ORDER BY requested_at DESC, id",
        )
        .bind(role)
        .bind(requester)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(super::grant_from_row).collect()
    }
}

fn throttle_from_row(r: &PgRow) -> Result<ThrottleState> {
    let failures: i32 = r.try_get("failures")?;
    Ok(ThrottleState {
        subject: r.try_get("subject")?,
        failures: u32::try_from(failures).unwrap_or(u32::MAX),
        locked_until: r
            .try_get::<Option<i64>, _>("locked_until")?
            .map(Timestamp::from_unix_millis),
    })
}
