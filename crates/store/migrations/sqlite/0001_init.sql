-- breakglass SQLite schema, version 1.

-- Set-up facts: the `initialized` marker and sealed key material (ciphertext only).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
) STRICT;

CREATE TABLE principals (
    name       TEXT PRIMARY KEY NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('human', 'service')),
    groups     TEXT NOT NULL,            -- JSON array of group names
    disabled   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL          -- unix millis
) STRICT;

-- API tokens: only SHA-256 of the secret part is kept (invariant 6).
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY NOT NULL,
    principal   TEXT NOT NULL REFERENCES principals(name),
    secret_hash BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;

-- The role files last loaded, by hash; the files themselves are the source of truth.
CREATE TABLE roles (
    id        TEXT PRIMARY KEY NOT NULL,
    hash      TEXT NOT NULL,
    file      TEXT NOT NULL,
    loaded_at INTEGER NOT NULL
) STRICT;

-- Grants: indexed columns for the workers, the whole grant as JSON in `body`.
CREATE TABLE grants (
    id           TEXT PRIMARY KEY NOT NULL,
    role         TEXT NOT NULL,
    requester    TEXT NOT NULL,
    state        TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    expires_at   INTEGER,
    version      INTEGER NOT NULL,
    body         TEXT NOT NULL
) STRICT;
CREATE INDEX grants_by_state ON grants (state, expires_at);
CREATE INDEX grants_by_requested_at ON grants (requested_at);

-- Issued credentials: sealed until delivered once, then the ciphertext is erased.
CREATE TABLE credentials (
    grant_id     TEXT NOT NULL REFERENCES grants(id),
    serial       INTEGER NOT NULL,
    fingerprint  TEXT NOT NULL,
    ciphertext   BLOB,
    issued_at    INTEGER NOT NULL,
    delivered_at INTEGER,
    delivered_to TEXT,
    PRIMARY KEY (grant_id, serial)
) STRICT;

-- The audit log: canonical event bytes exactly as hashed, gapless seq from 0.
CREATE TABLE audit_log (
    seq      INTEGER PRIMARY KEY NOT NULL,
    type     TEXT NOT NULL,
    grant_id TEXT,
    time     INTEGER NOT NULL,
    bytes    BLOB NOT NULL
) STRICT;
CREATE INDEX audit_log_by_grant ON audit_log (grant_id);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
