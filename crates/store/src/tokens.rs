//! API bearer tokens. Only SHA-256 digests are stored: a token is 256 random bits, so a
//! fast hash is enough and lets every request be checked with one indexed lookup.

use porthole_core::UserId;

use crate::users::{UserRecord, user_columns};
use crate::{Millis, Store, StoreError, changed};

/// A new token to store.
#[derive(Clone, Debug)]
pub struct NewToken {
    /// The token's id, for listing and revoking.
    pub id: uuid::Uuid,
    /// Whose token it is.
    pub user_id: UserId,
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    /// What it is for, e.g. `cli login`.
    pub label: String,
    /// When it was made.
    pub created_at: Millis,
    /// When it stops working.
    pub expires_at: Millis,
}

/// A stored token, without its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// Its id.
    pub id: uuid::Uuid,
    /// What it is for.
    pub label: String,
    /// When it was made.
    pub created_at: Millis,
    /// When it stops working.
    pub expires_at: Millis,
    /// Whether it is the one with this hash (the caller's own).
    pub current: bool,
}

impl Store {
    /// `user`'s unexpired tokens, newest first; `current_hash` marks the caller's own.
    pub async fn tokens(
        &self,
        user: UserId,
        current_hash: &str,
        now: Millis,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        use sqlx::Row;
        sqlx::query(
            "SELECT id, label, created_at, expires_at, token_hash FROM api_tokens \
             WHERE user_id = $1 AND expires_at > $2 ORDER BY created_at DESC",
        )
        .bind(user.to_string())
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            let id: String = row.try_get("id")?;
            let hash: String = row.try_get("token_hash")?;
            Ok(TokenRecord {
                id: id
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("token id {id:?}")))?,
                label: row.try_get("label")?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
                current: hash == current_hash,
            })
        })
        .collect()
    }

    /// Revokes `user`'s token `id`.
    pub async fn delete_token_by_id(&self, user: UserId, id: uuid::Uuid) -> Result<(), StoreError> {
        let result = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND user_id = $2")
            .bind(id.to_string())
            .bind(user.to_string())
            .execute(&self.pool)
            .await?;
        changed(&result, StoreError::NotFound("token"))
    }

    /// Stores `token`.
    pub async fn insert_token(&self, token: &NewToken) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, token_hash, label, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token.id.to_string())
        .bind(token.user_id.to_string())
        .bind(&token.token_hash)
        .bind(&token.label)
        .bind(token.created_at)
        .bind(token.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The user whose unexpired token hashes to `token_hash`, if any.
    pub async fn user_by_token(
        &self,
        token_hash: &str,
        now: Millis,
    ) -> Result<Option<UserRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM api_tokens JOIN users ON users.id = api_tokens.user_id \
              WHERE api_tokens.token_hash = $1 AND api_tokens.expires_at > $2"
        ))
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(UserRecord::from_row)
        .transpose()
    }

    /// Revokes the token that hashes to `token_hash`. Revoking an unknown token succeeds.
    pub async fn delete_token(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM api_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::store;
    use porthole_core::Role;

    #[tokio::test]
    async fn tokens_find_their_user_until_they_expire_or_are_revoked() {
        let (store, _dir) = store().await;
        let user = crate::users::tests::user("alice", Role::Member);
        store.insert_user(&user).await.unwrap();
        let token = NewToken {
            id: uuid::Uuid::new_v4(),
            user_id: user.id,
            token_hash: "ab".repeat(32),
            label: "test".into(),
            created_at: 0,
            expires_at: 1000,
        };
        store.insert_token(&token).await.unwrap();
        assert_eq!(
            store.user_by_token(&token.token_hash, 999).await.unwrap(),
            Some(user)
        );
        assert_eq!(
            store.user_by_token(&token.token_hash, 1000).await.unwrap(),
            None
        );
        assert_eq!(
            store.user_by_token(&"cd".repeat(32), 0).await.unwrap(),
            None
        );
        store.delete_token(&token.token_hash).await.unwrap();
        assert_eq!(
            store.user_by_token(&token.token_hash, 0).await.unwrap(),
            None
        );
    }
}
