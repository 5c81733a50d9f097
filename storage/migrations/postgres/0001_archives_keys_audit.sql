-- idv metadata, PostgreSQL flavour (the SQLite flavour in ../sqlite mirrors it table for table).
-- Ids are UUID text, times are unix microseconds, secrets and hashes are raw bytes, so the same
-- queries run on both backends.

-- The half of each archive's data key that lives only here. Destroying it (secret := NULL,
-- with when and why) crypto-shreds the archive; the row stays as evidence of the destruction.
-- A key is stored before its archive record, so the archive points at the key, not back.
CREATE TABLE retention_keys (
    key_id         TEXT   NOT NULL PRIMARY KEY,
    archive_id     TEXT   NOT NULL UNIQUE,
    secret         BYTEA  CHECK (secret IS NULL OR octet_length(secret) = 32),
    created_at     BIGINT NOT NULL,
    destroyed_at   BIGINT,
    destroy_reason TEXT,
    UNIQUE (key_id, archive_id),
    CHECK ((secret IS NULL) = (destroyed_at IS NOT NULL)),
    CHECK ((destroyed_at IS NULL) = (destroy_reason IS NULL))
);

-- One row per sealed archive: where it lives and which key-encryption key wraps its header.
CREATE TABLE archives (
    archive_id  TEXT   NOT NULL PRIMARY KEY,
    key_id      TEXT   NOT NULL UNIQUE,
    kek_id      TEXT   NOT NULL,
    location    TEXT   NOT NULL,
    payload_len BIGINT NOT NULL CHECK (payload_len >= 0),
    sealed_len  BIGINT NOT NULL CHECK (sealed_len >= 0),
    created_at  BIGINT NOT NULL,
    state       TEXT   NOT NULL CHECK (state IN ('sealed', 'shredded')),
    FOREIGN KEY (key_id, archive_id) REFERENCES retention_keys (key_id, archive_id)
);

CREATE INDEX archives_by_created ON archives (created_at, archive_id);
CREATE INDEX archives_sealed_by_kek ON archives (kek_id, created_at) WHERE state = 'sealed';

-- Hash-chained audit log; the encoding of `hash` is documented in storage/src/audit.rs.
CREATE TABLE audit_log (
    seq       BIGINT NOT NULL PRIMARY KEY CHECK (seq >= 1),
    at        BIGINT NOT NULL,
    actor     TEXT   NOT NULL,
    action    TEXT   NOT NULL,
    object    TEXT   NOT NULL,
    reason    TEXT,
    outcome   TEXT   NOT NULL CHECK (outcome IN ('success', 'denied', 'failed')),
    prev_hash BYTEA  NOT NULL,
    hash      BYTEA  NOT NULL
);

-- The newest entry's seq and hash, advanced in the same transaction as each append (which
-- locks this row), so that removing the newest entries is detectable. Seq 0 with 32 zero
-- bytes is the empty log.
CREATE TABLE audit_head (
    id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq  BIGINT  NOT NULL CHECK (seq >= 0),
    hash BYTEA   NOT NULL CHECK (octet_length(hash) = 32)
);

INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

-- Refuse changes through idv's own connection too. A superuser can drop these triggers; the
-- hash chain is what detects that kind of tampering.
CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP;
END
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();

CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

CREATE FUNCTION audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' OR NEW.id <> OLD.id OR NEW.seq <> OLD.seq + 1 THEN
        RAISE EXCEPTION 'audit_head only advances one entry at a time (% refused)', TG_OP;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER audit_head_advances_by_one BEFORE UPDATE OR DELETE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION audit_head_guard();

CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_head_guard();
