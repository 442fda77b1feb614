-- Alert deliveries: the durable outbox of alerts, derived from the audit log. Operational state,
-- not part of the audit tree: a delivery's row changes as attempts are made.

-- One delivery of one audit event to one channel. Pending while neither delivered nor dead;
-- leased to one worker until `claimed_until`; due (again) at `next_attempt_at`.
CREATE TABLE alert_deliveries (
    id              INTEGER PRIMARY KEY NOT NULL,
    seq             INTEGER NOT NULL,  -- the audit event (no foreign key: nothing here constrains the log)
    channel         TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    claimed_until   INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error      TEXT,           -- never holds a secret
    delivered_at    INTEGER,
    dead_at         INTEGER,        -- the dead letter: given up on
    UNIQUE (seq, channel),
    CHECK (delivered_at IS NULL OR dead_at IS NULL)
) STRICT;
-- The claim: pending deliveries by due time.
CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at, id)
    WHERE delivered_at IS NULL AND dead_at IS NULL;

-- The next audit seq not yet routed to channels. A new database starts at 0; one upgraded to
-- this version starts at the end of its log, so that the upgrade does not alert on history.
CREATE TABLE alert_cursor (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    next_seq INTEGER NOT NULL CHECK (next_seq >= 0)
) STRICT;
-- This migration's transaction holds the database's write lock from its first statement on, so
-- no other process can append between this count and the commit.
INSERT INTO alert_cursor (id, next_seq) SELECT 1, COUNT(*) FROM audit_log;
