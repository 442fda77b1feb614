//! The SQL of principals on SQLite. `disabled` is an `INTEGER` 0 or 1.

use crate::principals::PrincipalSql;

pub(super) const SQL: PrincipalSql = PrincipalSql {
    insert: "INSERT INTO principals (name, kind, groups, disabled, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
    set_disabled: "UPDATE principals SET disabled = ?1 WHERE name = ?2 AND disabled <> ?1",
    by_name: "SELECT * FROM principals WHERE name = ?1",
    all: "SELECT * FROM principals ORDER BY name",
};
