-- A recording opened by a compliance officer for a stated reason (a console "grant"): kept here,
-- not only in one console's memory, so any console node serves the player's range requests.
-- Only the SHA-256 of the grant's id (a secret in the page's links) is stored.
CREATE TABLE recording_grants (
    grant_hash BYTEA   NOT NULL PRIMARY KEY CHECK (octet_length(grant_hash) = 32),
    user_id    TEXT    NOT NULL REFERENCES users (user_id),
    session_id TEXT    NOT NULL REFERENCES sessions (session_id),
    archive_id TEXT    NOT NULL,
    reason     TEXT    NOT NULL CHECK (length(reason) > 0),
    opened_at  BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    played     BOOLEAN NOT NULL DEFAULT FALSE
);
