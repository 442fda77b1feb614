-- Local sign-in (issue 7): the same tables as the SQLite store's migration 0005.

ALTER TABLE api_tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'api' CHECK (kind IN ('api', 'session'));
ALTER TABLE api_tokens ADD COLUMN scopes TEXT;
ALTER TABLE api_tokens ADD COLUMN stepped_up_at BIGINT;

CREATE TABLE logins (
    principal  TEXT COLLATE "C" PRIMARY KEY REFERENCES principals (name),
    body       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE auth_throttle (
    subject      TEXT COLLATE "C" PRIMARY KEY,
    failures     INTEGER NOT NULL,
    locked_until BIGINT,
    updated_at   BIGINT NOT NULL
);

CREATE INDEX grants_by_role_requester ON grants (role, requester);
