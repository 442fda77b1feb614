//! The SQL of the record of loaded role files on SQLite. The writer holds the database for the
//! whole replacement, so no lock is taken; the three lists are JSON arrays, joined by position.

use crate::roles::RoleSql;

pub(super) const SQL: RoleSql = RoleSql {
    lock: None,
    all: "SELECT id, hash, file FROM roles ORDER BY id",
    delete_all: "DELETE FROM roles",
    insert_all: "INSERT INTO roles (id, hash, file, loaded_at)
                 SELECT i.value, h.value, f.value, ?4 FROM json_each(?1) AS i
                 JOIN json_each(?2) AS h ON h.key = i.key
                 JOIN json_each(?3) AS f ON f.key = i.key",
};
