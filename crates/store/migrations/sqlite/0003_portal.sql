-- The self-service portal: limits per user and per group, login lockout, SSH keys, expiry
-- exemptions, and the audit log.

-- A NULL limit inherits: a user's from their groups (the most generous), a group's from the
-- site default.
ALTER TABLE users ADD COLUMN limit_cores BIGINT;
ALTER TABLE users ADD COLUMN limit_memory_mib BIGINT;
ALTER TABLE users ADD COLUMN limit_disk_gib BIGINT;
-- Wrong passwords in a row, and until when the account refuses logins.
ALTER TABLE users ADD COLUMN failed_logins BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN locked_until BIGINT;

CREATE TABLE groups (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    limit_cores      BIGINT,
    limit_memory_mib BIGINT,
    limit_disk_gib   BIGINT,
    created_at       BIGINT NOT NULL
);

CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);

-- Public keys a user wants in the VMs they create.
CREATE TABLE ssh_keys (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (user_id, fingerprint)
);

-- 1: the VM never expires (set by an admin).
ALTER TABLE vms ADD COLUMN expiry_exempt BIGINT NOT NULL DEFAULT 0;

-- Every action that changes state, whoever did it and however it ended. Names are copied,
-- not referenced, so the record outlives what it names.
CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor_id    TEXT,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target_kind TEXT,
    target_id   TEXT,
    target_name TEXT,
    remote_addr TEXT,
    outcome     TEXT NOT NULL CHECK (outcome IN ('ok', 'denied', 'failed')),
    detail      TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
