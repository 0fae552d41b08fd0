//! SSH public keys on users' profiles, put into the VMs they create.

use porthole_core::{SshKeyId, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::taken_as;
use crate::{Millis, Store, StoreError, changed, id_column};

/// A stored key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshKeyRecord {
    /// Its id.
    pub id: SshKeyId,
    /// Whose it is.
    pub user_id: UserId,
    /// A label.
    pub name: String,
    /// The `authorized_keys` line.
    pub public_key: String,
    /// `SHA256:…`.
    pub fingerprint: String,
    /// When it was added.
    pub created_at: Millis,
}

impl SshKeyRecord {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: id_column(row, "id")?,
            user_id: id_column(row, "user_id")?,
            name: row.try_get("name")?,
            public_key: row.try_get("public_key")?,
            fingerprint: row.try_get("fingerprint")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

impl Store {
    /// Adds a key. The same key twice for one user is [`StoreError::Taken`] (`public_key`).
    pub async fn insert_ssh_key(&self, key: &SshKeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO ssh_keys (id, user_id, name, public_key, fingerprint, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(key.id.to_string())
        .bind(key.user_id.to_string())
        .bind(&key.name)
        .bind(&key.public_key)
        .bind(&key.fingerprint)
        .bind(key.created_at)
        .execute(&self.pool)
        .await
        .map_err(taken_as("public_key"))?;
        Ok(())
    }

    /// `user`'s keys, oldest first.
    pub async fn ssh_keys(&self, user: UserId) -> Result<Vec<SshKeyRecord>, StoreError> {
        sqlx::query(
            "SELECT id, user_id, name, public_key, fingerprint, created_at FROM ssh_keys \
             WHERE user_id = $1 ORDER BY created_at, id",
        )
        .bind(user.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(SshKeyRecord::from_row)
        .collect()
    }

    /// Removes `user`'s key `id`.
    pub async fn delete_ssh_key(&self, user: UserId, id: SshKeyId) -> Result<(), StoreError> {
        let result = sqlx::query("DELETE FROM ssh_keys WHERE id = $1 AND user_id = $2")
            .bind(id.to_string())
            .bind(user.to_string())
            .execute(&self.pool)
            .await?;
        changed(&result, StoreError::NotFound("SSH key"))
    }
}
