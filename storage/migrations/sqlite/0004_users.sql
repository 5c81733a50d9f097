-- The people who use the web console: their group, roles, password (argon2id, PHC string),
-- optional TOTP secret (wrapped by the keyring) and the addresses they may log in from
-- (comma-separated CIDRs; empty: the group's list decides).
CREATE TABLE console_groups (
    name          TEXT    NOT NULL PRIMARY KEY CHECK (length(name) > 0),
    allowed_cidrs TEXT    NOT NULL DEFAULT ''
) STRICT;

CREATE TABLE users (
    user_id       TEXT    NOT NULL PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE CHECK (length(name) > 0),
    group_name    TEXT    NOT NULL CHECK (length(group_name) > 0),
    roles         TEXT    NOT NULL CHECK (length(roles) > 0),
    password_hash TEXT    NOT NULL CHECK (length(password_hash) > 0),
    totp_wrapped  BLOB,
    allowed_cidrs TEXT    NOT NULL DEFAULT '',
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at    INTEGER NOT NULL
) STRICT;

-- A logged-in browser: the SHA-256 of its cookie's token (the token itself is never stored),
-- its CSRF token, where it logged in from, and until when it is valid.
CREATE TABLE console_sessions (
    token_hash BLOB    NOT NULL PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id    TEXT    NOT NULL REFERENCES users (user_id),
    csrf_token TEXT    NOT NULL CHECK (length(csrf_token) > 0),
    source     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX console_sessions_by_user ON console_sessions (user_id);
