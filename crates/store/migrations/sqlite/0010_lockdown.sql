-- Lockdowns: every one ever engaged; in force while `lifted_at` is NULL. At most one of each
-- scope (`all` or `role:ID`) is in force at once.
CREATE TABLE lockdowns (
    id         TEXT PRIMARY KEY,
    scope      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    engaged_by TEXT NOT NULL,
    engaged_at INTEGER NOT NULL,
    lifted_by  TEXT,
    lifted_at  INTEGER
);
CREATE UNIQUE INDEX lockdowns_in_force ON lockdowns (scope) WHERE lifted_at IS NULL;
