//! The SQL of post-use reviews on SQLite.

use crate::reviews::ReviewSql;

pub(super) const SQL: ReviewSql = ReviewSql {
    insert: "INSERT INTO reviews (grant_id, reviewer, outcome, final, notes, recorded_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    of_grant: "SELECT grant_id, reviewer, outcome, notes, recorded_at FROM reviews
               WHERE grant_id = ?1 ORDER BY recorded_at, id",
    latest: "SELECT grant_id, reviewer, outcome, notes, recorded_at FROM reviews
             ORDER BY recorded_at DESC, id DESC LIMIT ?1",
    unreviewed: "SELECT g.body, g.version, a.at AS activated_at
                 FROM grants g
                 JOIN (SELECT grant_id, MIN(time) AS at FROM audit_log
                       WHERE type = 'grant.activated' GROUP BY grant_id) a ON a.grant_id = g.id
                 WHERE g.state IN ('expired', 'revoked', 'failed')
                   AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.grant_id = g.id AND r.final = 1)
                 ORDER BY g.requested_at, g.id",
    reminders: "SELECT grant_id, stage FROM review_reminders ORDER BY grant_id, stage",
    remind: "INSERT OR IGNORE INTO review_reminders (grant_id, stage, sent_at) VALUES (?1, ?2, ?3)",
    grant_events: "SELECT seq, bytes FROM audit_log WHERE grant_id = ?1 ORDER BY seq",
    between: "SELECT seq, bytes FROM audit_log WHERE time >= ?1 AND time <= ?2
              ORDER BY seq LIMIT ?3",
    deliveries: "SELECT seq, channel, attempts, delivered_at, dead_at, last_error
                 FROM alert_deliveries
                 WHERE seq IN (SELECT seq FROM audit_log WHERE grant_id = ?1)
                 ORDER BY seq, channel",
};
