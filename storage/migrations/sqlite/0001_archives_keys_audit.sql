-- idv metadata, SQLite flavour (the PostgreSQL flavour in ../postgres mirrors it table for table).
-- Ids are UUID text, times are unix microseconds, secrets and hashes are raw bytes.

-- The half of each archive's data key that lives only here. Destroying it (secret := NULL,
-- with when and why) crypto-shreds the archive; the row stays as evidence of the destruction.
-- A key is stored before its archive record, so the archive points at the key, not back.
CREATE TABLE retention_keys (
    key_id         TEXT    NOT NULL PRIMARY KEY,
    archive_id     TEXT    NOT NULL UNIQUE,
    secret         BLOB    CHECK (secret IS NULL OR length(secret) = 32),
    created_at     INTEGER NOT NULL,
    destroyed_at   INTEGER,
    destroy_reason TEXT,
    UNIQUE (key_id, archive_id),
    CHECK ((secret IS NULL) = (destroyed_at IS NOT NULL)),
    CHECK ((destroyed_at IS NULL) = (destroy_reason IS NULL))
) STRICT;

-- One row per sealed archive: where it lives and which key-encryption key wraps its header.
CREATE TABLE archives (
    archive_id  TEXT    NOT NULL PRIMARY KEY,
    key_id      TEXT    NOT NULL UNIQUE,
    kek_id      TEXT    NOT NULL,
    location    TEXT    NOT NULL,
    payload_len INTEGER NOT NULL CHECK (payload_len >= 0),
    sealed_len  INTEGER NOT NULL CHECK (sealed_len >= 0),
    created_at  INTEGER NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('sealed', 'shredded')),
    FOREIGN KEY (key_id, archive_id) REFERENCES retention_keys (key_id, archive_id)
) STRICT;

CREATE INDEX archives_by_created ON archives (created_at, archive_id);
CREATE INDEX archives_sealed_by_kek ON archives (kek_id, created_at) WHERE state = 'sealed';

-- Hash-chained audit log; the encoding of `hash` is documented in storage/src/audit.rs.
CREATE TABLE audit_log (
    seq       INTEGER NOT NULL PRIMARY KEY CHECK (seq >= 1),
    at        INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    object    TEXT    NOT NULL,
    reason    TEXT,
    outcome   TEXT    NOT NULL CHECK (outcome IN ('success', 'denied', 'failed')),
    prev_hash BLOB    NOT NULL,
    hash      BLOB    NOT NULL
) STRICT;

-- The newest entry's seq and hash, advanced in the same transaction as each append, so that
-- removing the newest entries is detectable. Seq 0 with 32 zero bytes is the empty log.
CREATE TABLE audit_head (
    id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL CHECK (seq >= 0),
    hash BLOB    NOT NULL CHECK (length(hash) = 32)
) STRICT;

INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, zeroblob(32));

-- Refuse changes through idv's own connection too. Someone with file access can drop these
-- triggers; the hash chain is what detects that kind of tampering.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: entries cannot be changed');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: entries cannot be removed');
END;

CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
BEGIN
    SELECT RAISE(ABORT, 'audit_head cannot be removed');
END;

CREATE TRIGGER audit_head_advances_by_one BEFORE UPDATE ON audit_head
WHEN NEW.id <> OLD.id OR NEW.seq <> OLD.seq + 1
BEGIN
    SELECT RAISE(ABORT, 'audit_head only advances one entry at a time');
END;
