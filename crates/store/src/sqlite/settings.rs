//! The SQL of `meta` on SQLite.

use crate::settings::MetaSql;

pub(super) const SQL: MetaSql = MetaSql {
    present: "SELECT COUNT(*) > 0 AS present FROM meta WHERE key = ?1",
    insert_once: "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
    insert: "INSERT INTO meta (key, value) VALUES (?1, ?2)",
    set: "INSERT INTO meta (key, value) VALUES (?1, ?2)
          ON CONFLICT (key) DO UPDATE SET value = excluded.value
          WHERE meta.value IS NOT excluded.value",
    value: "SELECT value FROM meta WHERE key = ?1",
};
