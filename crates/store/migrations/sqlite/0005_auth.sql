-- Local sign-in (issue 7): sessions and scoped tokens, a principal's login factors, and the
-- failed-attempt counters that throttle guessing.

-- `kind`: `api` (made with `tokens create`) or `session` (made by `login`). `scopes`: a JSON
-- array, or NULL for everything the principal may do. `stepped_up_at`: when a second factor was
-- last verified for this token (unix millis), or NULL.
ALTER TABLE api_tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'api' CHECK (kind IN ('api', 'session'));
ALTER TABLE api_tokens ADD COLUMN scopes TEXT;
ALTER TABLE api_tokens ADD COLUMN stepped_up_at INTEGER;

-- One row per principal that can sign in: the Argon2id hash, the sealed TOTP secret, the last
-- accepted TOTP step and the hashed recovery codes, as JSON in `body` (the server's format);
-- `version` makes every change a compare-and-set, so a code is accepted once however many
-- requests race with it.
CREATE TABLE logins (
    principal  TEXT PRIMARY KEY NOT NULL REFERENCES principals(name),
    body       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- Consecutive failed sign-ins per subject (`account NAME`, `source ADDR`) and the lock they earned.
CREATE TABLE auth_throttle (
    subject      TEXT PRIMARY KEY NOT NULL,
    failures     INTEGER NOT NULL,
    locked_until INTEGER,
    updated_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX grants_by_role_requester ON grants (role, requester);
