-- Owner attestation (issue 13). When each role's current content (its file's hash) came into
-- force: an unattested content is due a fixed time after that, not at once.
CREATE TABLE role_contents (
    role  TEXT PRIMARY KEY NOT NULL,
    hash  TEXT NOT NULL,
    since INTEGER NOT NULL
) STRICT;

-- Every attestation, bound to the content it attests; the latest per (role, hash) counts.
CREATE TABLE attestations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    role        TEXT NOT NULL,
    hash        TEXT NOT NULL,
    attested_by TEXT NOT NULL,
    note        TEXT NOT NULL,
    attested_at INTEGER NOT NULL,
    next_due    INTEGER NOT NULL
) STRICT;
CREATE INDEX attestations_by_content ON attestations (role, hash, id);

-- The reminders and lapse alerts already sent, one per (role, content, kind, date): what makes the
-- worker send each once, across restarts and replicas.
CREATE TABLE attestation_notices (
    role    TEXT NOT NULL,
    hash    TEXT NOT NULL,
    kind    TEXT NOT NULL,
    due     INTEGER NOT NULL,
    sent_at INTEGER NOT NULL,
    PRIMARY KEY (role, hash, kind, due)
) STRICT;
