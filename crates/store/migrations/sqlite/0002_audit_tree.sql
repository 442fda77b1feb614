-- The audit log's Merkle tree (RFC 6962) and its signed checkpoints.

-- The one row every append locks and updates: how many events the tree holds and its frontier
-- (the roots of its perfect subtrees, largest first, 32 bytes each).
CREATE TABLE audit_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    size     INTEGER NOT NULL,
    frontier BLOB NOT NULL
) STRICT;
INSERT INTO audit_head (id, size, frontier) VALUES (1, 0, x'');

-- Every perfect subtree's hash, written once when the subtree completes; proofs read these.
CREATE TABLE audit_hashes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) STRICT, WITHOUT ROWID;

-- Signed checkpoints (C2SP signed notes), also published outside the database.
CREATE TABLE audit_checkpoints (
    size      INTEGER PRIMARY KEY NOT NULL,
    note      TEXT NOT NULL,
    signed_at INTEGER NOT NULL
) STRICT;

CREATE TRIGGER audit_hashes_no_update BEFORE UPDATE ON audit_hashes
BEGIN
    SELECT RAISE(ABORT, 'audit_hashes is append-only');
END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;
