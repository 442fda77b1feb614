-- Post-use reviews. Only recorded reviews are stored: which grants owe one is derived from the
-- grants and the audit log (ended, after a `grant.activated` event) and the role in force.

-- One row per review recorded. `follow-up` keeps a review open; any other outcome is final, and a
-- grant has at most one final review.
CREATE TABLE reviews (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    grant_id    TEXT COLLATE "C" NOT NULL REFERENCES grants (id),
    reviewer    TEXT NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('legitimate', 'drill', 'misuse', 'follow-up')),
    final       BOOLEAN NOT NULL,
    notes       TEXT NOT NULL,
    recorded_at BIGINT NOT NULL
);
CREATE INDEX reviews_by_grant ON reviews (grant_id);
CREATE UNIQUE INDEX reviews_one_final ON reviews (grant_id) WHERE final;

-- The alerts already sent about an overdue review: each once per grant.
CREATE TABLE review_reminders (
    grant_id TEXT COLLATE "C" NOT NULL,
    stage    TEXT NOT NULL CHECK (stage IN ('overdue', 'escalated')),
    sent_at  BIGINT NOT NULL,
    PRIMARY KEY (grant_id, stage)
);

-- The evidence of a review reads the requester's events inside the grant's window.
CREATE INDEX audit_log_by_time ON audit_log (time);
