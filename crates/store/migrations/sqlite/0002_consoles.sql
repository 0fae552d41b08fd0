-- Console access: tickets, the audit record of every session, and consoles that are not
-- porthole VMs.

-- Tickets live at most 30 seconds and are deleted by the statement that reads them.
CREATE TABLE console_tickets (
    token_hash   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    target_kind  TEXT NOT NULL CHECK (target_kind IN ('vm', 'external')),
    target_id    TEXT NOT NULL,
    console_kind TEXT NOT NULL CHECK (console_kind IN ('vnc', 'serial')),
    node         TEXT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX console_tickets_expiry ON console_tickets (expires_at);

-- One row per console session: who, what, from where, when, and bytes each way.
CREATE TABLE console_sessions (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL,
    username          TEXT NOT NULL,
    target_kind       TEXT NOT NULL,
    target_id         TEXT NOT NULL,
    target_name       TEXT NOT NULL,
    console_kind      TEXT NOT NULL,
    framing           TEXT NOT NULL,
    remote_addr       TEXT NOT NULL,
    started_at        BIGINT NOT NULL,
    ended_at          BIGINT,
    bytes_to_client   BIGINT NOT NULL DEFAULT 0,
    bytes_from_client BIGINT NOT NULL DEFAULT 0,
    end_reason        TEXT
);
CREATE INDEX console_sessions_started ON console_sessions (started_at);

-- Consoles an admin registered: a VNC server or a TCP serial console. The password is
-- sealed with the plane's secret key, never stored in the clear.
CREATE TABLE external_consoles (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    protocol        TEXT NOT NULL CHECK (protocol IN ('vnc', 'tcp')),
    address         TEXT NOT NULL,
    password_sealed TEXT,
    created_at      BIGINT NOT NULL
);

CREATE TABLE external_console_grants (
    console_id TEXT NOT NULL REFERENCES external_consoles (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (console_id, user_id)
);
