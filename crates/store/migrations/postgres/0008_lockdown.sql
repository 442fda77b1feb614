-- Lockdowns: every one ever engaged; in force while `lifted_at` is NULL. At most one of each
-- scope (`all` or `role:ID`) is in force at once.
CREATE TABLE lockdowns (
    id         TEXT COLLATE "C" PRIMARY KEY,
    scope      TEXT COLLATE "C" NOT NULL,
    reason     TEXT NOT NULL,
    engaged_by TEXT NOT NULL,
    engaged_at BIGINT NOT NULL,
    lifted_by  TEXT,
    lifted_at  BIGINT
);
CREATE UNIQUE INDEX lockdowns_in_force ON lockdowns (scope) WHERE lifted_at IS NULL;
