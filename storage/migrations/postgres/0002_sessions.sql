-- idv metadata, PostgreSQL flavour: what the ingest server keeps about live sessions (the SQLite
-- flavour in ../sqlite mirrors it table for table). Same conventions as 0001: ids are UUID
-- text, times are unix microseconds (agent clock readings are nanoseconds, named `*_ns` or
-- documented as such), secrets and hashes are raw bytes, states are CHECKed text.

-- One remote identification or support session, opened by an operator of `group_name`.
-- `media_key_wrapped` is the session media key as the caller wrapped it (opaque here); it
-- becomes NULL when forgotten, which crypto-shreds the raw media segments sealed under it.
CREATE TABLE sessions (
    session_id        TEXT    NOT NULL PRIMARY KEY,
    group_name        TEXT    NOT NULL CHECK (length(group_name) > 0),
    created_by        TEXT    NOT NULL CHECK (length(created_by) > 0),
    created_at        BIGINT  NOT NULL,
    state             TEXT    NOT NULL
                      CHECK (state IN ('created', 'joined', 'consented', 'live', 'ended')),
    state_changed_at  BIGINT  NOT NULL,
    ended_at          BIGINT,
    end_reason        TEXT,
    media_key_wrapped BYTEA   CHECK (media_key_wrapped IS NULL OR octet_length(media_key_wrapped) > 0),
    CHECK ((state = 'ended') = (ended_at IS NOT NULL)),
    CHECK (ended_at IS NOT NULL OR end_reason IS NULL)
);

CREATE INDEX sessions_by_state ON sessions (state, created_at);
CREATE INDEX sessions_by_group ON sessions (group_name, created_at);

-- One-time connection codes, stored only as the caller's keyed hash (HMAC of group and code).
-- At most one *open* code per hash, so a redemption names exactly one session; a hash comes
-- free again once its code is used, locked or expired.
CREATE TABLE connection_codes (
    code_id         TEXT    NOT NULL PRIMARY KEY,
    code_hash       BYTEA   NOT NULL CHECK (octet_length(code_hash) BETWEEN 16 AND 64),
    session_id      TEXT    NOT NULL REFERENCES sessions (session_id),
    group_name      TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('open', 'used', 'locked', 'expired')),
    used_at         BIGINT,
    failed_attempts BIGINT  NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    locked_at       BIGINT,
    CHECK ((state = 'used') = (used_at IS NOT NULL)),
    CHECK ((state = 'locked') = (locked_at IS NOT NULL))
);

CREATE UNIQUE INDEX connection_codes_open_hash ON connection_codes (code_hash)
    WHERE state = 'open';
CREATE INDEX connection_codes_by_session ON connection_codes (session_id, state);

-- Every attempt to join with a code, by source address, for the per-source brute-force limit.
-- Pruned by age; the audit log keeps the lasting record.
CREATE TABLE join_attempts (
    id     BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source TEXT    NOT NULL,
    at     BIGINT  NOT NULL,
    ok     BOOLEAN NOT NULL
);

CREATE INDEX join_attempts_by_source ON join_attempts (source, at);
CREATE INDEX join_attempts_by_time ON join_attempts (at);

-- What the customer allowed, scope by scope. A revoked consent keeps its row; at most one
-- consent per scope is in force at a time.
CREATE TABLE consents (
    consent_id TEXT    NOT NULL PRIMARY KEY,
    session_id TEXT    NOT NULL REFERENCES sessions (session_id),
    scope      TEXT    NOT NULL CHECK (scope IN ('camera', 'screen', 'recording',
                                                 'file_transfer', 'screen_capture',
                                                 'mic_reference')),
    granted_by TEXT    NOT NULL CHECK (length(granted_by) > 0),
    granted_at BIGINT  NOT NULL,
    revoked_at BIGINT,
    CHECK (revoked_at IS NULL OR revoked_at >= granted_at)
);

CREATE UNIQUE INDEX consents_in_force ON consents (session_id, scope) WHERE revoked_at IS NULL;
CREATE INDEX consents_by_session ON consents (session_id, granted_at);

-- Durable media: one row per sealed segment file in the blob store. Seqs and capture
-- timestamps (agent monotonic nanoseconds) are the frames' own.
CREATE TABLE segments (
    session_id    TEXT    NOT NULL REFERENCES sessions (session_id),
    track         TEXT    NOT NULL
                  CHECK (track IN ('camera', 'screen', 'screenshot', 'mic_reference')),
    segment_index BIGINT  NOT NULL CHECK (segment_index >= 0),
    location      TEXT    NOT NULL,
    first_seq     BIGINT  NOT NULL CHECK (first_seq >= 0),
    last_seq      BIGINT  NOT NULL CHECK (last_seq >= first_seq),
    first_ts      BIGINT  NOT NULL,
    last_ts       BIGINT  NOT NULL,
    bytes         BIGINT  NOT NULL CHECK (bytes >= 0),
    sealed_at     BIGINT  NOT NULL,
    PRIMARY KEY (session_id, track, segment_index)
);

CREATE INDEX segments_by_seq ON segments (session_id, track, last_seq);

-- NTP-style clock-sync exchanges as they came, in arrival order (`id`): t1 and t4 on the
-- agent's monotonic clock, t2 and t3 on the server's UTC clock, all nanoseconds.
CREATE TABLE clock_samples (
    id         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id TEXT    NOT NULL REFERENCES sessions (session_id),
    t1         BIGINT  NOT NULL,
    t2         BIGINT  NOT NULL,
    t3         BIGINT  NOT NULL,
    t4         BIGINT  NOT NULL
);

CREATE INDEX clock_samples_by_session ON clock_samples (session_id, id);

-- Call recordings handed in by the CTI system, sealed on arrival. `session_id` stays NULL
-- until the recording is correlated with a session; a call id appears once per session.
CREATE TABLE cti_recordings (
    recording_id    TEXT    NOT NULL PRIMARY KEY,
    call_id         TEXT    NOT NULL CHECK (length(call_id) > 0),
    session_id      TEXT    REFERENCES sessions (session_id),
    correlation_key TEXT,
    started_at      BIGINT  NOT NULL,
    ended_at        BIGINT  CHECK (ended_at IS NULL OR ended_at >= started_at),
    location        TEXT    NOT NULL,
    archive_id      TEXT,
    received_at     BIGINT  NOT NULL,
    UNIQUE (session_id, call_id)
);

CREATE INDEX cti_recordings_by_correlation ON cti_recordings (correlation_key)
    WHERE session_id IS NULL;

-- One mux job per session. `claimed_by`/`claimed_at` name the latest claimant; only a running
-- job has a lease.
CREATE TABLE mux_jobs (
    job_id      TEXT    NOT NULL PRIMARY KEY,
    session_id  TEXT    NOT NULL UNIQUE REFERENCES sessions (session_id),
    state       TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    video_only  BOOLEAN NOT NULL,
    attempts    BIGINT  NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at  BIGINT  NOT NULL,
    not_before  BIGINT  NOT NULL,
    claimed_by  TEXT,
    claimed_at  BIGINT,
    lease_until BIGINT,
    finished_at BIGINT,
    archive_id  TEXT,
    error       TEXT,
    CHECK ((state = 'running') = (lease_until IS NOT NULL)),
    CHECK (state <> 'running' OR (claimed_by IS NOT NULL AND claimed_at IS NOT NULL)),
    CHECK ((state = 'done') = (archive_id IS NOT NULL)),
    CHECK ((state IN ('done', 'failed')) = (finished_at IS NOT NULL))
);

CREATE INDEX mux_jobs_claimable ON mux_jobs (state, not_before);
