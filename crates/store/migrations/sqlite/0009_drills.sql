-- Drills of roles (issue 13, item 3): each drill whole as JSON in `body`, next to the columns
-- lists and the drill worker filter on. Its grant is an ordinary grant flagged `drill`.
CREATE TABLE drills (
    id           TEXT PRIMARY KEY NOT NULL,
    role         TEXT NOT NULL,
    grant_id     TEXT NOT NULL,
    stage        TEXT NOT NULL,   -- awaiting_grant … passed | failed
    started_at   INTEGER NOT NULL,
    completed_at INTEGER,         -- NULL while the drill is open
    version      INTEGER NOT NULL,
    body         TEXT NOT NULL
) STRICT;
CREATE INDEX drills_by_role ON drills (role, started_at);
CREATE INDEX drills_open ON drills (started_at) WHERE completed_at IS NULL;

-- When each role was first seen (its first drill is due `drill_every` after), and the due date
-- whose `drill.overdue` was last recorded, so an overdue drill alerts once per due date.
CREATE TABLE drill_schedule (
    role        TEXT PRIMARY KEY NOT NULL,
    first_seen  INTEGER NOT NULL,
    alerted_due INTEGER
) STRICT;
