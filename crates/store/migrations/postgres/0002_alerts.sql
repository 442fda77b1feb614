-- Alert deliveries: the durable outbox of alerts, derived from the audit log (the same tables as
-- the SQLite store's migration 0004). Operational state, not part of the audit tree: a
-- delivery's row changes as attempts are made.

-- Replicas of the previous version may still be appending: hold the audit head, as an append
-- does, so that the end of the log read at the bottom is still the end when this commits.
SELECT 1 FROM audit_head WHERE id = 1 FOR UPDATE;

-- One delivery of one audit event to one channel. Pending while neither delivered nor dead;
-- leased to one worker until `claimed_until`; due (again) at `next_attempt_at`.
CREATE TABLE alert_deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq             BIGINT NOT NULL,  -- the audit event (no foreign key: nothing here constrains the log)
    channel         TEXT COLLATE "C" NOT NULL,
    created_at      BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    claimed_until   BIGINT,
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error      TEXT,           -- never holds a secret
    delivered_at    BIGINT,
    dead_at         BIGINT,         -- the dead letter: given up on
    UNIQUE (seq, channel),
    CHECK (delivered_at IS NULL OR dead_at IS NULL)
);
-- The claim: pending deliveries by due time.
CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at, id)
    WHERE delivered_at IS NULL AND dead_at IS NULL;

-- The one row every routing pass locks: the next audit seq not yet routed to channels. A new
-- database starts at 0; one upgraded to this version starts at the end of its log, so that the
-- upgrade does not alert on history.
CREATE TABLE alert_cursor (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    next_seq BIGINT NOT NULL CHECK (next_seq >= 0)
);
INSERT INTO alert_cursor (id, next_seq) SELECT 1, COALESCE(MAX(seq) + 1, 0) FROM audit_log;
