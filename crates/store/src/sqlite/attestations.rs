//! The SQL of attestations on SQLite. Lists are JSON arrays, joined by position.

use crate::attestations::AttestationSql;

pub(super) const SQL: AttestationSql = AttestationSql {
    in_force: "INSERT INTO role_contents (role, hash, since)
               SELECT i.value, h.value, ?3 FROM json_each(?1) AS i
               JOIN json_each(?2) AS h ON h.key = i.key WHERE true
               ON CONFLICT (role) DO UPDATE SET hash = excluded.hash, since = excluded.since
               WHERE role_contents.hash <> excluded.hash",
    forget_others: "DELETE FROM role_contents WHERE role NOT IN (SELECT value FROM json_each(?1))",
    contents: "SELECT role, hash, since FROM role_contents ORDER BY role",
    insert: "INSERT INTO attestations (role, hash, attested_by, note, attested_at, next_due)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    latest: "SELECT role, hash, attested_by, note, attested_at, next_due FROM attestations AS a
             WHERE id = (SELECT MAX(id) FROM attestations AS b
                         WHERE b.role = a.role AND b.hash = a.hash)
             ORDER BY role, hash",
    insert_notice: "INSERT INTO attestation_notices (role, hash, kind, due, sent_at)
                    VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
    notices: "SELECT role, hash, kind, due FROM attestation_notices",
};
