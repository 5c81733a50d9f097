-- Retention: how long a group's recordings are kept after their session ended (NULL: until
-- shredded by hand), and legal holds that keep a session's recording whatever its age.
ALTER TABLE console_groups ADD COLUMN retention_days INTEGER CHECK (retention_days IS NULL OR retention_days > 0);

CREATE TABLE legal_holds (
    session_id TEXT    NOT NULL PRIMARY KEY REFERENCES sessions (session_id),
    placed_by  TEXT    NOT NULL CHECK (length(placed_by) > 0),
    reason     TEXT    NOT NULL CHECK (length(reason) > 0),
    placed_at  INTEGER NOT NULL
) STRICT;
