//! The SQL of principals on PostgreSQL. `disabled` is a `BOOLEAN`.

use crate::principals::PrincipalSql;

pub(super) const SQL: PrincipalSql = PrincipalSql {
    insert: "INSERT INTO principals (name, kind, groups, disabled, created_at)
             VALUES ($1, $2, $3, $4, $5)",
    set_disabled: "UPDATE principals SET disabled = $1 WHERE name = $2 AND disabled <> $1",
    by_name: "SELECT name, kind, groups, disabled, created_at FROM principals WHERE name = $1",
    all: "SELECT name, kind, groups, disabled, created_at FROM principals ORDER BY name",
};
