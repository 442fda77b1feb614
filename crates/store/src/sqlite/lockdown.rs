//! The SQL of lockdowns on SQLite.

use crate::lockdown::LockdownSql;

pub(super) const SQL: LockdownSql = LockdownSql {
    insert: "INSERT INTO lockdowns (id, scope, reason, engaged_by, engaged_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
    lift: "UPDATE lockdowns SET lifted_by = ?1, lifted_at = ?2
           WHERE lifted_at IS NULL AND id IN (SELECT value FROM json_each(?3))",
    in_force: "SELECT id, scope, reason, engaged_by, engaged_at FROM lockdowns
               WHERE lifted_at IS NULL ORDER BY engaged_at, id",
};
