-- Drills of roles (issue 13, item 3): the same tables as the SQLite store's migration 0009.
CREATE TABLE drills (
    id           TEXT PRIMARY KEY,
    role         TEXT NOT NULL,
    grant_id     TEXT NOT NULL,
    stage        TEXT NOT NULL,   -- awaiting_grant … passed | failed
    started_at   BIGINT NOT NULL,
    completed_at BIGINT,          -- NULL while the drill is open
    version      BIGINT NOT NULL,
    body         TEXT NOT NULL
);
CREATE INDEX drills_by_role ON drills (role, started_at);
CREATE INDEX drills_open ON drills (started_at) WHERE completed_at IS NULL;

-- When each role was first seen, and the due date whose `drill.overdue` was last recorded.
CREATE TABLE drill_schedule (
    role        TEXT PRIMARY KEY,
    first_seen  BIGINT NOT NULL,
    alerted_due BIGINT
);
