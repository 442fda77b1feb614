//! The SQL of grants and their credentials on SQLite. A write holds the whole database until it
//! commits (the group-commit writer's `BEGIN IMMEDIATE`), so a grant read inside one cannot change
//! before it ends: `lock` needs no lock of its own.

use crate::grants::GrantSql;

pub(super) const SQL: GrantSql = GrantSql {
    insert:
        "INSERT INTO grants (id, role, requester, state, requested_at, expires_at, version, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7)",
    update: "UPDATE grants SET state = ?1, expires_at = ?2, version = version + 1, body = ?3
             WHERE id = ?4 AND version = ?5",
    add_credential: "INSERT INTO credentials (grant_id, serial, fingerprint, ciphertext, issued_at)
                     VALUES (?1, (SELECT COALESCE(MAX(serial) + 1, 1) FROM credentials
                                  WHERE grant_id = ?1), ?2, ?3, ?4)",
    erase_credentials: "UPDATE credentials SET ciphertext = NULL WHERE grant_id = ?1",
    lock: "SELECT body, version FROM grants WHERE id = ?1",
    latest_credential: "SELECT serial, fingerprint, ciphertext FROM credentials WHERE grant_id = ?1
                        ORDER BY serial DESC LIMIT 1",
    mark_delivered: "UPDATE credentials SET ciphertext = NULL, delivered_at = ?1, delivered_to = ?2
                     WHERE grant_id = ?3 AND serial = ?4",
    by_id: "SELECT body, version FROM grants WHERE id = ?1",
    list: "SELECT body, version FROM grants WHERE (?1 IS NULL OR state = ?1)
           ORDER BY requested_at DESC, id LIMIT ?2",
    counts: "SELECT state, COUNT(*) AS n FROM grants GROUP BY state",
    in_states: "SELECT body, version FROM grants WHERE state IN (SELECT value FROM json_each(?1))
                ORDER BY requested_at, id",
    due_for_expiry: "SELECT body, version FROM grants WHERE state = 'active' AND expires_at <= ?1
                     ORDER BY expires_at, id",
    requested_before: "SELECT body, version FROM grants
                       WHERE state = 'requested' AND requested_at <= ?1 ORDER BY requested_at, id",
    of_requester: "SELECT body, version FROM grants WHERE role = ?1 AND requester = ?2
                   ORDER BY requested_at DESC, id",
    next_expiry: "SELECT MIN(expires_at) AS at FROM grants WHERE state = 'active'",
    oldest_requests: "SELECT role, MIN(requested_at) AS at FROM grants WHERE state = 'requested'
                      GROUP BY role ORDER BY role",
};
