-- Nodes can be hypervisor agents. SQLite cannot change a CHECK, so the table is remade.
-- An agent node's `url` is where the plane reaches it, empty until it joins; it has no
-- settings and no secret: it proves itself with a certificate.
CREATE TABLE nodes_new (
    name          TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('proxmox', 'agent')),
    url           TEXT NOT NULL,
    settings      TEXT NOT NULL,
    secret_sealed TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
INSERT INTO nodes_new SELECT name, kind, url, settings, secret_sealed, created_at FROM nodes;
DROP TABLE nodes;
ALTER TABLE nodes_new RENAME TO nodes;

-- The one-time join token of an agent node, stored as its SHA-256. `used_at` is set in the
-- same transaction that records the certificate it bought, so a token is never used twice.
CREATE TABLE agent_joins (
    node       TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);

-- Every certificate the plane's CA signed for an agent. A certificate is accepted only if
-- it is here, unrevoked, for the node it names; removing the node revokes them all.
CREATE TABLE agent_certificates (
    serial     TEXT PRIMARY KEY,
    node       TEXT NOT NULL,
    issued_at  BIGINT NOT NULL,
    not_after  BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX agent_certificates_node ON agent_certificates (node);
