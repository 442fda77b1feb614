//! Sign-in state on SQLite: sessions' step-up, principals' factors and failed-attempt throttling.
//! Every write goes through the group-commit writer with its audit events.

use breakglass_core::{EventDraft, Timestamp};
use sqlx::Row as _;

use super::{SqliteStore, append_in};
use crate::{
    Result, StoreError, StoredGrant, StoredLogin, ThrottlePolicy, ThrottleState, locked_event,
};

impl SqliteStore {
    pub(super) async fn step_up_in(
        &self,
        id: &str,
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<bool> {
        let id = id.to_owned();
        let events = events.to_vec();
        self.write(move |tx| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE api_tokens SET stepped_up_at = ? WHERE id = ? AND revoked_at IS NULL",
                )
                .bind(now.unix_millis())
                .bind(&id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                append_in(tx, &events, now).await?;
                Ok(true)
            })
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
        let name = name.to_owned();
        let events = events.to_vec();
        self.write(move |tx| {
            Box::pin(async move {
                let done =
                    sqlx::query("UPDATE principals SET disabled = ? WHERE name = ? AND disabled <> ?")
                        .bind(i64::from(disabled))
                        .bind(&name)
                        .bind(i64::from(disabled))
                        .execute(&mut *tx)
                        .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                if disabled {
                    sqlx::query(
                        "UPDATE api_tokens SET revoked_at = ? WHERE principal = ? AND revoked_at IS NULL",
                    )
                    .bind(now.unix_millis())
                    .bind(&name)
                    .execute(&mut *tx)
                    .await?;
                }
                append_in(tx, &events, now).await?;
                Ok(true)
            })
        })
        .await
    }

    pub(super) async fn login_in(&self, principal: &str) -> Result<Option<StoredLogin>> {
        let row = sqlx::query("SELECT body, version FROM logins WHERE principal = ?")
            .bind(principal)
            .fetch_optional(&self.reader)
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
        let principal = principal.to_owned();
        let body = body.to_owned();
        let events = events.to_vec();
        self.write(move |tx| {
            Box::pin(async move {
                let done = match expected {
                    None => sqlx::query(
                        "INSERT INTO logins (principal, body, version, updated_at) VALUES (?, ?, 1, ?)
                         ON CONFLICT (principal) DO NOTHING",
                    )
                    .bind(&principal)
                    .bind(&body)
                    .bind(now.unix_millis())
                    .execute(&mut *tx)
                    .await?,
                    Some(v) => sqlx::query(
                        "UPDATE logins SET body = ?, version = version + 1, updated_at = ?
                         WHERE principal = ? AND version = ?",
                    )
                    .bind(&body)
                    .bind(now.unix_millis())
                    .bind(&principal)
                    .bind(v)
                    .execute(&mut *tx)
                    .await?,
                };
                if done.rows_affected() == 0 {
                    return Err(StoreError::Conflict);
                }
                if revoke_sessions {
                    sqlx::query(
                        "UPDATE api_tokens SET revoked_at = ?
                         WHERE principal = ? AND revoked_at IS NULL",
                    )
                    .bind(now.unix_millis())
                    .bind(&principal)
                    .execute(&mut *tx)
                    .await?;
                }
                append_in(tx, &events, now).await?;
                Ok(())
            })
        })
        .await
    }

    pub(super) async fn throttles_in(&self, subjects: &[String]) -> Result<Vec<ThrottleState>> {
        let mut out = Vec::new();
        for s in subjects {
            let row = sqlx::query(
                "SELECT subject, failures, locked_until FROM auth_throttle WHERE subject = ?",
            )
            .bind(s)
            .fetch_optional(&self.reader)
            .await?;
            if let Some(r) = row {
                out.push(throttle_from_row(&r)?);
            }
        }
        Ok(out)
    }

    pub(super) async fn record_auth_failure_in(
        &self,
        subjects: &[(String, ThrottlePolicy)],
        events: &[EventDraft],
        now: Timestamp,
    ) -> Result<Vec<ThrottleState>> {
        let subjects = subjects.to_vec();
        let events = events.to_vec();
        self.write(move |tx| {
            Box::pin(async move {
                let mut states = Vec::new();
                let mut all = events;
                for (subject, policy) in &subjects {
                    let failures: i64 = sqlx::query_scalar(
                        "INSERT INTO auth_throttle (subject, failures, locked_until, updated_at)
                         VALUES (?1, 1, NULL, ?2)
                         ON CONFLICT (subject) DO UPDATE SET
                           failures = CASE WHEN auth_throttle.updated_at < ?2 - ?3 THEN 1
                                           ELSE auth_throttle.failures + 1 END,
                           updated_at = ?2
                         RETURNING failures",
                    )
                    .bind(subject)
                    .bind(now.unix_millis())
                    .bind(ThrottlePolicy::FORGET_AFTER_MS)
                    .fetch_one(&mut *tx)
                    .await?;
                    let failures = u32::try_from(failures).unwrap_or(u32::MAX);
                    let locked_until = policy.lock_ms(failures).map(|ms| {
                        Timestamp::from_unix_millis(now.unix_millis().saturating_add(ms))
                    });
                    if let Some(until) = locked_until {
                        sqlx::query("UPDATE auth_throttle SET locked_until = ? WHERE subject = ?")
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
                append_in(tx, &all, now).await?;
                Ok(states)
            })
        })
        .await
    }

    pub(super) async fn clear_auth_failures_in(&self, subject: &str) -> Result<()> {
        let subject = subject.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM auth_throttle WHERE subject = ?")
                    .bind(&subject)
                    .execute(&mut *tx)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    pub(super) async fn grants_for_in(
        &self,
        role: &str,
        requester: &str,
    ) -> Result<Vec<StoredGrant>> {
        let rows = sqlx::query(
            "SELECT body, version FROM grants WHERE role = ? AND requester = ?
             ORDER BY requested_at DESC, id",
        )
        .bind(role)
        .bind(requester)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(super::grant_from_row).collect()
    }
}

fn throttle_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<ThrottleState> {
    let failures: i64 = r.try_get("failures")?;
    Ok(ThrottleState {
        subject: r.try_get("subject")?,
        failures: u32::try_from(failures).unwrap_or(u32::MAX),
        locked_until: r
            .try_get::<Option<i64>, _>("locked_until")?
            .map(Timestamp::from_unix_millis),
    })
}
