//! User accounts.

use porthole_core::{Role, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::taken_as;
use crate::{Millis, Store, StoreError, enum_column, id_column};

/// A user as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    /// The account's id.
    pub id: UserId,
    /// The login name.
    pub username: String,
    /// An argon2 PHC string; never the password.
    pub password_hash: String,
    /// Member or admin.
    pub role: Role,
    /// Where reminders go.
    pub email: Option<String>,
    /// When the account was made.
    pub created_at: Millis,
}

/// The columns [`UserRecord::from_row`] reads, for `concat!` into queries.
macro_rules! user_columns {
    () => {
        "users.id, users.username, users.password_hash, users.role, users.email, users.created_at"
    };
}
pub(crate) use user_columns;

impl UserRecord {
    pub(crate) fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: id_column(row, "id")?,
            username: row.try_get("username")?,
            password_hash: row.try_get("password_hash")?,
            role: enum_column(row, "role", Role::parse)?,
            email: row.try_get("email")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

impl Store {
    /// Adds `user`. A username that exists already is [`StoreError::Taken`].
    pub async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, role, email, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(user.id.to_string())
        .bind(&user.username)
        .bind(&user.password_hash)
        .bind(user.role.as_str())
        .bind(&user.email)
        .bind(user.created_at)
        .execute(&self.pool)
        .await
        .map_err(taken_as("username"))?;
        Ok(())
    }

    /// The user called `username`, if any.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(UserRecord::from_row)
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::store;

    pub(crate) fn user(name: &str, role: Role) -> UserRecord {
        UserRecord {
            id: UserId::random(),
            username: name.into(),
            password_hash: "$argon2id$fake".into(),
            role,
            email: None,
            created_at: 1,
        }
    }

    #[tokio::test]
    async fn usernames_are_unique() {
        let (store, _dir) = store().await;
        let alice = user("alice", Role::Member);
        store.insert_user(&alice).await.unwrap();
        let err = store
            .insert_user(&user("alice", Role::Admin))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Taken { field: "username" }),
            "{err:?}"
        );
        assert_eq!(store.user_by_name("alice").await.unwrap(), Some(alice));
        assert_eq!(store.user_by_name("bob").await.unwrap(), None);
    }
}
