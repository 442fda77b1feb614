-- Owner attestation (issue 13). When each role's current content (its file's hash) came into
-- force: an unattested content is due a fixed time after that, not at once.
CREATE TABLE role_contents (
    role  TEXT COLLATE "C" PRIMARY KEY,
    hash  TEXT NOT NULL,
    since BIGINT NOT NULL
);

-- Every attestation, bound to the content it attests; the latest per (role, hash) counts.
CREATE TABLE attestations (
    id          BIGSERIAL PRIMARY KEY,
    role        TEXT COLLATE "C" NOT NULL,
    hash        TEXT NOT NULL,
    attested_by TEXT NOT NULL,
    note        TEXT NOT NULL,
    attested_at BIGINT NOT NULL,
    next_due    BIGINT NOT NULL
);
CREATE INDEX attestations_by_content ON attestations (role, hash, id);

-- The reminders and lapse alerts already sent, one per (role, content, kind, date): what makes the
-- worker send each once, across restarts and replicas.
CREATE TABLE attestation_notices (
    role    TEXT COLLATE "C" NOT NULL,
    hash    TEXT NOT NULL,
    kind    TEXT NOT NULL,
    due     BIGINT NOT NULL,
    sent_at BIGINT NOT NULL,
    PRIMARY KEY (role, hash, kind, due)
);
