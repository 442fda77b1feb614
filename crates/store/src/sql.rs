//! Running a statement the same way on either backend. The shared code builds a [`Stmt`] from a
//! backend's SQL text and its parameters, runs it on a [`Conn`], and reads what comes back through
//! [`Row`]. A backend supplies its SQL (the `SQL` tables of its noun files), how a parameter is
//! bound, and the audit append.
//!
//! Parameters are numbered in the SQL (`?1` on SQLite, `$1` on PostgreSQL) in the order the
//! shared code binds them; each table's fields say that order.

use std::future::Future;

use breakglass_core::{EventDraft, Timestamp};
use futures_util::stream::BoxStream;
use sqlx::{ColumnIndex, Decode, Type};

use crate::alerts::AlertSql;
use crate::attestations::AttestationSql;
use crate::audit::AuditSql;
use crate::auth::AuthSql;
use crate::drills::DrillSql;
use crate::grants::GrantSql;
use crate::lockdown::LockdownSql;
use crate::principals::PrincipalSql;
use crate::reviews::ReviewSql;
use crate::roles::RoleSql;
use crate::settings::MetaSql;
use crate::tokens::TokenSql;
use crate::{Result, StoreError};

/// A connection of one backend, inside a transaction or not, as the shared code uses it.
pub(crate) trait Conn: Send {
    type Row: Row + Send;

    // Each noun's SQL, in this backend's dialect.
    const ALERTS: AlertSql;
    const ATTESTATIONS: AttestationSql;
    const AUDIT: AuditSql;
    const AUTH: AuthSql;
    const DRILLS: DrillSql;
    const GRANTS: GrantSql;
    const LOCKDOWNS: LockdownSql;
    const META: MetaSql;
    const PRINCIPALS: PrincipalSql;
    const REVIEWS: ReviewSql;
    const ROLES: RoleSql;
    const TOKENS: TokenSql;

    /// Runs `s`; how many rows it changed.
    fn execute(&mut self, s: Stmt<'_>) -> impl Future<Output = Result<u64>> + Send;
    /// Runs `s` for the one row it reads.
    fn one(&mut self, s: Stmt<'_>) -> impl Future<Output = Result<Self::Row>> + Send;
    /// Runs `s` for the row it reads, if any.
    fn optional(&mut self, s: Stmt<'_>) -> impl Future<Output = Result<Option<Self::Row>>> + Send;
    /// Runs `s` for every row it reads.
    fn all(&mut self, s: Stmt<'_>) -> impl Future<Output = Result<Vec<Self::Row>>> + Send;
    /// Runs `s` and hands its rows over as they come.
    fn stream<'a>(&'a mut self, s: Stmt<'a>) -> BoxStream<'a, Result<Self::Row>>;
    /// Appends `events` at the end of the audit log, in this connection's transaction.
    // INVARIANT(2): every shared write appends its events through this, in the transaction of
    // its change.
    fn append(
        &mut self,
        events: &[EventDraft],
        now: Timestamp,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// One statement: a backend's SQL text and the parameters to bind, in order.
pub(crate) struct Stmt<'q> {
    pub(crate) sql: &'static str,
    pub(crate) args: Vec<Arg<'q>>,
}

/// A parameter, as one of the few types both schemas keep.
pub(crate) enum Arg<'q> {
    Int(Option<i64>),
    Text(Option<&'q str>),
    Bytes(&'q [u8]),
    /// `INTEGER` 0 or 1 on SQLite, `BOOLEAN` on PostgreSQL.
    Flag(bool),
    /// A list of names: a JSON array on SQLite (read with `json_each`), a `text[]` on PostgreSQL.
    Texts(Vec<&'q str>),
}

impl<'q> Stmt<'q> {
    pub(crate) fn new(sql: &'static str) -> Self {
        Self {
            sql,
            args: Vec::new(),
        }
    }

    fn arg(mut self, a: Arg<'q>) -> Self {
        self.args.push(a);
        self
    }

    pub(crate) fn int(self, v: i64) -> Self {
        self.arg(Arg::Int(Some(v)))
    }

    /// A time, as unix milliseconds.
    pub(crate) fn time(self, t: Timestamp) -> Self {
        self.int(t.unix_millis())
    }

    pub(crate) fn opt_time(self, t: Option<Timestamp>) -> Self {
        self.arg(Arg::Int(t.map(Timestamp::unix_millis)))
    }

    pub(crate) fn text(self, v: &'q str) -> Self {
        self.arg(Arg::Text(Some(v)))
    }

    pub(crate) fn opt_text(self, v: Option<&'q str>) -> Self {
        self.arg(Arg::Text(v))
    }

    pub(crate) fn bytes(self, v: &'q [u8]) -> Self {
        self.arg(Arg::Bytes(v))
    }

    pub(crate) fn flag(self, v: bool) -> Self {
        self.arg(Arg::Flag(v))
    }

    pub(crate) fn texts(self, v: Vec<&'q str>) -> Self {
        self.arg(Arg::Texts(v))
    }
}

/// A row of either backend, read by column name as one of the types both schemas keep: text,
/// 64-bit integers (times as unix milliseconds), blobs and flags. A PostgreSQL `INTEGER` column is
/// cast to `bigint` by the query that reads it, so that the shared mapping sees one integer type.
pub(crate) trait Row {
    fn text(&self, column: &str) -> Result<String>;
    fn opt_text(&self, column: &str) -> Result<Option<String>>;
    fn int(&self, column: &str) -> Result<i64>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>>;
    fn bytes(&self, column: &str) -> Result<Vec<u8>>;
    fn opt_bytes(&self, column: &str) -> Result<Option<Vec<u8>>>;
    fn flag(&self, column: &str) -> Result<bool>;

    /// A time, kept as unix milliseconds.
    fn time(&self, column: &str) -> Result<Timestamp> {
        Ok(Timestamp::from_unix_millis(self.int(column)?))
    }

    fn opt_time(&self, column: &str) -> Result<Option<Timestamp>> {
        Ok(self.opt_int(column)?.map(Timestamp::from_unix_millis))
    }

    /// A count or position, which is never negative; `what` names it in the error.
    fn count(&self, column: &str, what: &str) -> Result<u64> {
        to_u64(self.int(column)?, what)
    }
}

impl<R> Row for R
where
    R: sqlx::Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, column: &str) -> Result<String> {
        Ok(self.try_get(column)?)
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        Ok(self.try_get(column)?)
    }

    fn int(&self, column: &str) -> Result<i64> {
        Ok(self.try_get(column)?)
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        Ok(self.try_get(column)?)
    }

    fn bytes(&self, column: &str) -> Result<Vec<u8>> {
        Ok(self.try_get(column)?)
    }

    fn opt_bytes(&self, column: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.try_get(column)?)
    }

    fn flag(&self, column: &str) -> Result<bool> {
        Ok(self.try_get(column)?)
    }
}

/// A position or size as the database keeps it.
pub(crate) fn to_i64(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| StoreError::Corrupt("audit position overflow".into()))
}

/// A count or position read back; `what` names it in the error.
pub(crate) fn to_u64(n: i64, what: &str) -> Result<u64> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative {what}")))
}
