-- porthole's first schema. Timestamps are unix milliseconds; ids are UUID text. Queries use
-- only portable SQL and $N parameters, so the PostgreSQL schema can mirror this one.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('member', 'admin')),
    email         TEXT,
    created_at    BIGINT NOT NULL
);

-- API bearer tokens. Only a SHA-256 of each token is kept; the token itself is shown once.
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash   TEXT NOT NULL UNIQUE,
    label        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- Template images. The files live in <data-dir>/templates/<id>/; a NULL kernel_sha256 means
-- the template boots from its disk.
CREATE TABLE templates (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    disk_format   TEXT NOT NULL CHECK (disk_format IN ('qcow2', 'raw')),
    virtual_size  BIGINT NOT NULL,
    file_size     BIGINT NOT NULL,
    sha256        TEXT NOT NULL,
    kernel_sha256 TEXT,
    initrd_sha256 TEXT,
    cmdline       TEXT,
    created_at    BIGINT NOT NULL
);

-- Installer ISOs, in <data-dir>/isos/<id>.iso.
CREATE TABLE isos (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    file_size  BIGINT NOT NULL,
    sha256     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- VMs. job_id is the one job allowed to act on the VM at a time; actions are refused while
-- it is set.
CREATE TABLE vms (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    owner_id    TEXT NOT NULL REFERENCES users (id),
    node        TEXT NOT NULL,
    state       TEXT NOT NULL,
    cores       BIGINT NOT NULL,
    memory_mib  BIGINT NOT NULL,
    disk_gib    BIGINT NOT NULL,
    template_id TEXT REFERENCES templates (id),
    iso_id      TEXT REFERENCES isos (id),
    job_id      TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    CHECK ((template_id IS NULL) <> (iso_id IS NULL))
);
CREATE INDEX vms_owner ON vms (owner_id);

-- The durable job queue. A worker claims a job by taking its lease; a lease that runs out
-- (its worker died) lets another worker claim the job again.
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    vm_id        TEXT,
    requested_by TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    progress     DOUBLE PRECISION NOT NULL DEFAULT 0,
    step         TEXT,
    error        TEXT,
    params       TEXT NOT NULL DEFAULT '{}',
    attempts     BIGINT NOT NULL DEFAULT 0,
    lease_owner  TEXT,
    lease_until  BIGINT,
    created_at   BIGINT NOT NULL,
    started_at   BIGINT,
    finished_at  BIGINT
);
CREATE INDEX jobs_pending ON jobs (state, created_at);
CREATE INDEX jobs_vm ON jobs (vm_id);
