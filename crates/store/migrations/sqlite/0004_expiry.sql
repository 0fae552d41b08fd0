-- Expiry: every reminder and expiry step taken for a VM, and periodic runs such as the
-- admins' daily summary. A row is claimed before the mail is sent, so a notice is never sent
-- twice, even across restarts; a renewal changes expires_at, which starts a fresh series.
CREATE TABLE expiry_notices (
    vm_id      TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('claimed', 'sent', 'skipped', 'no_address')),
    at         BIGINT NOT NULL,
    PRIMARY KEY (vm_id, expires_at, kind)
);

CREATE TABLE scheduled_runs (
    name   TEXT NOT NULL,
    period TEXT NOT NULL,
    state  TEXT NOT NULL CHECK (state IN ('claimed', 'done')),
    at     BIGINT NOT NULL,
    PRIMARY KEY (name, period)
);
