//! The SQL of `meta` on PostgreSQL. A key is claimed with `ON CONFLICT DO NOTHING`, which waits
//! for a racing insert of the same key and then sees it; a setting is upserted only when it
//! differs, so that replicas recording the same change take turns on the row lock and the second
//! finds nothing to change.

use crate::settings::MetaSql;

pub(super) const SQL: MetaSql = MetaSql {
    present: "SELECT EXISTS (SELECT 1 FROM meta WHERE key = $1) AS present",
    insert_once: "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
    insert: "INSERT INTO meta (key, value) VALUES ($1, $2)",
    set: "INSERT INTO meta (key, value) VALUES ($1, $2)
          ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
          WHERE meta.value IS DISTINCT FROM EXCLUDED.value",
    value: "SELECT value FROM meta WHERE key = $1",
};
