//! The SQL of drills and their schedule on PostgreSQL. An update names the version it read, so
//! replicas advancing one drill at once take turns: the loser matches nothing and reads again.

use crate::drills::DrillSql;

pub(super) const SQL: DrillSql = DrillSql {
    insert:
        "INSERT INTO drills (id, role, grant_id, stage, started_at, completed_at, version, body)
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7)",
    update: "UPDATE drills SET stage = $1, completed_at = $2, version = version + 1, body = $3
             WHERE id = $4 AND version = $5",
    by_id: "SELECT body, version FROM drills WHERE id = $1",
    list: "SELECT body, version FROM drills WHERE ($1::text IS NULL OR role = $1)
           ORDER BY started_at DESC, id LIMIT $2",
    open: "SELECT body, version FROM drills WHERE completed_at IS NULL ORDER BY started_at, id",
    deliveries: "SELECT (CASE WHEN a.seq < c.next_seq THEN 1 ELSE 0 END)::bigint AS routed,
                        d.channel::text AS channel, d.delivered_at,
                        (CASE WHEN d.dead_at IS NULL THEN 0 ELSE 1 END)::bigint AS dead,
                        COALESCE(d.attempts, 0)::bigint AS attempts, d.last_error
                 FROM audit_log a CROSS JOIN alert_cursor c
                 LEFT JOIN alert_deliveries d ON d.seq = a.seq
                 WHERE a.grant_id = $1 AND a.type = 'drill.started' ORDER BY d.channel",
    credential: "SELECT ciphertext FROM credentials WHERE grant_id = $1
                 ORDER BY serial DESC LIMIT 1",
    schedule_add: "INSERT INTO drill_schedule (role, first_seen)
                   SELECT r, $2 FROM unnest($1::text[]) AS r ON CONFLICT (role) DO NOTHING",
    schedule: "SELECT s.role, s.first_seen, s.alerted_due,
                      (SELECT MAX(d.completed_at) FROM drills d
                       WHERE d.role = s.role AND d.stage = 'passed') AS last_passed
               FROM drill_schedule s ORDER BY s.role",
    mark_alerted: "UPDATE drill_schedule SET alerted_due = $1
                   WHERE role = $2 AND (alerted_due IS NULL OR alerted_due <> $1)",
};
