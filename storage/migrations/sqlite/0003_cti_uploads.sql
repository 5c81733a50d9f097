-- CTI recordings uploaded in parts while the call runs. An upload is opened with the call
-- record, takes parts 0, 1, 2 … (each sealed as an archive of its own on arrival), and is
-- completed into one sealed CTI recording; the completed upload keeps its row (with the
-- recording it became) so a repeated completion answers the same, and its parts' rows go.
CREATE TABLE cti_uploads (
    upload_id       TEXT    NOT NULL PRIMARY KEY,
    call_id         TEXT    NOT NULL CHECK (length(call_id) > 0),
    session_id      TEXT    REFERENCES sessions (session_id),
    correlation_key TEXT,
    started_at      INTEGER NOT NULL,
    source_name     TEXT,
    opened_at       INTEGER NOT NULL,
    recording_id    TEXT    REFERENCES cti_recordings (recording_id),
    CHECK (session_id IS NOT NULL OR correlation_key IS NOT NULL)
) STRICT;
-- One upload of a call at a time per session (or per correlation key while unattached).
CREATE UNIQUE INDEX cti_uploads_one_open_per_call
    ON cti_uploads (call_id, COALESCE(session_id, ''), COALESCE(correlation_key, ''))
    WHERE recording_id IS NULL;

CREATE TABLE cti_upload_parts (
    upload_id   TEXT    NOT NULL REFERENCES cti_uploads (upload_id),
    part        INTEGER NOT NULL CHECK (part >= 0),
    archive_id  TEXT    NOT NULL,
    location    TEXT    NOT NULL,
    bytes       INTEGER NOT NULL CHECK (bytes > 0),
    sha256      BLOB    NOT NULL CHECK (length(sha256) = 32),
    received_at INTEGER NOT NULL,
    PRIMARY KEY (upload_id, part)
) STRICT;
