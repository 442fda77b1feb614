-- breakglass PostgreSQL schema, version 1: the same tables and rules as the SQLite store's
-- migrations 0001-0003, in one step (this backend never had a log without its tree).
-- Times are unix milliseconds (BIGINT); blobs are BYTEA. Keys that are sorted on use the "C"
-- collation, so lists come out in the same (byte) order as from SQLite.

-- Set-up facts: the `initialized` marker and sealed key material (ciphertext only).
CREATE TABLE meta (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE principals (
    name       TEXT COLLATE "C" PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('human', 'service')),
    groups     TEXT NOT NULL,            -- JSON array of group names
    disabled   BOOLEAN NOT NULL DEFAULT false,
    created_at BIGINT NOT NULL
);

-- API tokens: only SHA-256 of the secret part is kept (invariant 6).
CREATE TABLE api_tokens (
    id          TEXT COLLATE "C" PRIMARY KEY,
    principal   TEXT COLLATE "C" NOT NULL REFERENCES principals (name),
    secret_hash BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

-- The role files last loaded, by hash; the files themselves are the source of truth.
CREATE TABLE roles (
    id        TEXT COLLATE "C" PRIMARY KEY,
    hash      TEXT NOT NULL,
    file      TEXT NOT NULL,
    loaded_at BIGINT NOT NULL
);

-- Grants: indexed columns for the workers, the whole grant as JSON in `body`.
CREATE TABLE grants (
    id           TEXT COLLATE "C" PRIMARY KEY,
    role         TEXT NOT NULL,
    requester    TEXT NOT NULL,
    state        TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    expires_at   BIGINT,
    version      BIGINT NOT NULL,
    body         TEXT NOT NULL
);
CREATE INDEX grants_by_state ON grants (state, expires_at);
CREATE INDEX grants_by_requested_at ON grants (requested_at);

-- Issued credentials: sealed until delivered once, then the ciphertext is erased.
CREATE TABLE credentials (
    grant_id     TEXT COLLATE "C" NOT NULL REFERENCES grants (id),
    serial       BIGINT NOT NULL,
    fingerprint  TEXT NOT NULL,
    ciphertext   BYTEA,
    issued_at    BIGINT NOT NULL,
    delivered_at BIGINT,
    delivered_to TEXT,
    PRIMARY KEY (grant_id, serial)
);

-- The audit log: canonical event bytes exactly as hashed, gapless seq from 0.
CREATE TABLE audit_log (
    seq      BIGINT PRIMARY KEY CHECK (seq >= 0),
    type     TEXT NOT NULL,
    grant_id TEXT,
    time     BIGINT NOT NULL,
    bytes    BYTEA NOT NULL
);
CREATE INDEX audit_log_by_grant ON audit_log (grant_id);

-- The one row every append locks (`FOR UPDATE`) and updates: how many events the tree holds and
-- its frontier (the roots of its perfect subtrees, largest first, 32 bytes each). Locking it is
-- what orders appends across every process that shares this database.
CREATE TABLE audit_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    size     BIGINT NOT NULL,
    frontier BYTEA NOT NULL
);
INSERT INTO audit_head (id, size, frontier) VALUES (1, 0, '\x'::bytea);

-- Every perfect subtree's hash, written once when the subtree completes; proofs read these.
CREATE TABLE audit_hashes (
    level INTEGER NOT NULL,
    idx   BIGINT NOT NULL,
    hash  BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Signed checkpoints (C2SP signed notes), also published outside the database.
CREATE TABLE audit_checkpoints (
    size      BIGINT PRIMARY KEY,
    note      TEXT NOT NULL,
    signed_at BIGINT NOT NULL
);

-- The log, its hashes and its checkpoints are append-only: no update, no delete, no truncate.
CREATE FUNCTION breakglass_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION breakglass_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION breakglass_append_only();
CREATE TRIGGER audit_hashes_append_only BEFORE UPDATE OR DELETE ON audit_hashes
    FOR EACH ROW EXECUTE FUNCTION breakglass_append_only();
CREATE TRIGGER audit_hashes_no_truncate BEFORE TRUNCATE ON audit_hashes
    FOR EACH STATEMENT EXECUTE FUNCTION breakglass_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION breakglass_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION breakglass_append_only();
