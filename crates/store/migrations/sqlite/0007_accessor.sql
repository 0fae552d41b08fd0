-- Accessor mode: each porthole session of a Proxmox user holds that user's own PVE ticket
-- and CSRF token, sealed under the plane's key, renewed before PVE's two hours run out.
CREATE TABLE upstream_sessions (
    token_hash  TEXT PRIMARY KEY REFERENCES api_tokens (token_hash) ON DELETE CASCADE,
    pve_user    TEXT NOT NULL,
    sealed      TEXT NOT NULL,
    obtained_at BIGINT NOT NULL
);

-- Console tickets can name a Proxmox VM (by VMID) and the session whose PVE ticket opens
-- it. Tickets live 30 s at most, so the table is simply made anew.
DROP TABLE console_tickets;
CREATE TABLE console_tickets (
    token_hash   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    target_kind  TEXT NOT NULL CHECK (target_kind IN ('vm', 'external', 'proxmox')),
    target_id    TEXT NOT NULL,
    console_kind TEXT NOT NULL CHECK (console_kind IN ('vnc', 'serial')),
    node         TEXT,
    session_hash TEXT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX console_tickets_expiry ON console_tickets (expires_at);
