-- Nodes besides the built-in local one: Proxmox VE clusters for now. `settings` is JSON
-- without secrets (user, realm, TLS trust, a pinned PVE node); the password or API token
-- is sealed under the plane's secret key in `secret_sealed`.
CREATE TABLE nodes (
    name          TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('proxmox')),
    url           TEXT NOT NULL,
    settings      TEXT NOT NULL,
    secret_sealed TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

-- A template can also be a template the node keeps itself (a Proxmox template VM), named in
-- the node's terms by `node_reference`; VMs made from it go to that node.
ALTER TABLE templates ADD COLUMN node TEXT;
ALTER TABLE templates ADD COLUMN node_reference TEXT;
