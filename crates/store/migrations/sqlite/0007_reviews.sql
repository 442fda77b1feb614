-- Post-use reviews. Only recorded reviews are stored: which grants owe one is derived from the
-- grants and the audit log (ended, after a `grant.activated` event) and the role in force.

-- One row per review recorded. `follow-up` keeps a review open; any other outcome is final, and a
-- grant has at most one final review.
CREATE TABLE reviews (
    id          INTEGER PRIMARY KEY NOT NULL,
    grant_id    TEXT NOT NULL REFERENCES grants(id),
    reviewer    TEXT NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('legitimate', 'drill', 'misuse', 'follow-up')),
    final       INTEGER NOT NULL CHECK (final IN (0, 1)),
    notes       TEXT NOT NULL,
    recorded_at INTEGER NOT NULL
) STRICT;
CREATE INDEX reviews_by_grant ON reviews (grant_id);
CREATE UNIQUE INDEX reviews_one_final ON reviews (grant_id) WHERE final = 1;

-- The alerts already sent about an overdue review: each once per grant.
CREATE TABLE review_reminders (
    grant_id TEXT NOT NULL,
    stage    TEXT NOT NULL CHECK (stage IN ('overdue', 'escalated')),
    sent_at  INTEGER NOT NULL,
    PRIMARY KEY (grant_id, stage)
) STRICT;

-- The evidence of a review reads the requester's events inside the grant's window.
CREATE INDEX audit_log_by_time ON audit_log (time);
