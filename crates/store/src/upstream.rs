//! Accessor mode's upstream sessions: the Proxmox ticket behind a porthole session, sealed.

use sqlx::Row;

use crate::{Millis, Store, StoreError};

/// The PVE ticket of one porthole session.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamSession {
    /// The porthole session (token) it belongs to.
    pub token_hash: String,
    /// The PVE user, `alice@pve`.
    pub pve_user: String,
    /// The ticket and CSRF token, sealed by the plane.
    pub sealed: String,
    /// When PVE issued the ticket.
    pub obtained_at: Millis,
}

impl std::fmt::Debug for UpstreamSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSession")
            .field("pve_user", &self.pve_user)
            .field("obtained_at", &self.obtained_at)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Stores (or, after a renewal, replaces) a session's PVE ticket.
    pub async fn put_upstream_session(&self, session: &UpstreamSession) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO upstream_sessions (token_hash, pve_user, sealed, obtained_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (token_hash) DO UPDATE SET \
             sealed = excluded.sealed, obtained_at = excluded.obtained_at",
        )
        .bind(&session.token_hash)
        .bind(&session.pve_user)
        .bind(&session.sealed)
        .bind(session.obtained_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The PVE ticket of the session whose token hashes to `token_hash`.
    pub async fn upstream_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<UpstreamSession>, StoreError> {
        let row = sqlx::query(
            "SELECT token_hash, pve_user, sealed, obtained_at FROM upstream_sessions \
             WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(UpstreamSession {
                token_hash: row.try_get("token_hash")?,
                pve_user: row.try_get("pve_user")?,
                sealed: row.try_get("sealed")?,
                obtained_at: row.try_get("obtained_at")?,
            })
        })
        .transpose()
    }
}
