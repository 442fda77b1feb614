//! The SQL of the record of loaded role files on PostgreSQL. Two replicas replacing the records
//! at once would each delete only the rows their statement saw and then collide on insert, so a
//! replacement locks the table first and they take turns (reads still go on).

use crate::roles::RoleSql;

pub(super) const SQL: RoleSql = RoleSql {
    lock: Some("LOCK TABLE roles IN SHARE ROW EXCLUSIVE MODE"),
    all: "SELECT id, hash, file FROM roles ORDER BY id",
    delete_all: "DELETE FROM roles",
    insert_all: "INSERT INTO roles (id, hash, file, loaded_at)
                 SELECT id, hash, file, $4 FROM UNNEST($1::text[], $2::text[], $3::text[])
                 AS r(id, hash, file)",
};
