//! The SQL of attestations on PostgreSQL. Lists are `text[]`, joined by position. Two replicas
//! sending the same notice at once insert one row: the second waits for the first's commit and
//! inserts nothing, so only one records the event.

use crate::attestations::AttestationSql;

pub(super) const SQL: AttestationSql = AttestationSql {
    in_force: "INSERT INTO role_contents (role, hash, since)
               SELECT role, hash, $3 FROM UNNEST($1::text[], $2::text[]) AS r(role, hash)
               ON CONFLICT (role) DO UPDATE SET hash = EXCLUDED.hash, since = EXCLUDED.since
               WHERE role_contents.hash <> EXCLUDED.hash",
    forget_others: "DELETE FROM role_contents WHERE NOT (role = ANY($1::text[]))",
    contents: "SELECT role, hash, since FROM role_contents ORDER BY role",
    insert: "INSERT INTO attestations (role, hash, attested_by, note, attested_at, next_due)
             VALUES ($1, $2, $3, $4, $5, $6)",
    latest: "SELECT role, hash, attested_by, note, attested_at, next_due FROM attestations AS a
             WHERE id = (SELECT MAX(id) FROM attestations AS b
                         WHERE b.role = a.role AND b.hash = a.hash)
             ORDER BY role, hash",
    insert_notice: "INSERT INTO attestation_notices (role, hash, kind, due, sent_at)
                    VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    notices: "SELECT role, hash, kind, due FROM attestation_notices",
};
