//! User accounts.

use porthole_core::{LimitOverrides, Role, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::taken_as;
use crate::quotas::overrides_from_row;
use crate::{Millis, Store, StoreError, changed, count_column, enum_column, id_column};

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
    /// The user's own limits; unset parts inherit from their groups or the site.
    pub limits: LimitOverrides,
    /// Wrong passwords in a row since the last good one.
    pub failed_logins: u64,
    /// Until when logins are refused, after too many wrong passwords.
    pub locked_until: Option<Millis>,
}

/// The columns [`UserRecord::from_row`] reads, for `concat!` into queries.
macro_rules! user_columns {
    () => {
        "users.id, users.username, users.password_hash, users.role, users.email, \
         users.created_at, users.limit_cores, users.limit_memory_mib, users.limit_disk_gib, \
         users.failed_logins, users.locked_until"
    };
}
pub(crate) use user_columns;

impl UserRecord {
    /// A new account with a fresh id, no limits of its own and no failed logins.
    pub fn new(
        username: &str,
        password_hash: String,
        role: Role,
        email: Option<String>,
        created_at: Millis,
    ) -> Self {
        Self {
            id: UserId::random(),
            username: username.to_owned(),
            password_hash,
            role,
            email,
            created_at,
            limits: LimitOverrides::default(),
            failed_logins: 0,
            locked_until: None,
        }
    }

    pub(crate) fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: id_column(row, "id")?,
            username: row.try_get("username")?,
            password_hash: row.try_get("password_hash")?,
            role: enum_column(row, "role", Role::parse)?,
            email: row.try_get("email")?,
            created_at: row.try_get("created_at")?,
            limits: overrides_from_row(row)?,
            failed_logins: count_column(row, "failed_logins")?,
            locked_until: row.try_get("locked_until")?,
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

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY username"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(UserRecord::from_row)
        .collect()
    }

    /// Counts a wrong password for `user` at `now`. The `max_failures`-th in a row locks the
    /// account until `now + lockout`, and starts the count again. Returns when the account is
    /// locked until, if it now is.
    pub async fn record_login_failure(
        &self,
        user: UserId,
        now: Millis,
        max_failures: u64,
        lockout: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        let mut tx = self.begin_write().await?;
        let failures: i64 = sqlx::query_scalar(
            "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1 \
             RETURNING failed_logins",
        )
        .bind(user.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let locked_until =
            (u64::try_from(failures).unwrap_or(0) >= max_failures).then(|| now + lockout);
        if let Some(until) = locked_until {
            sqlx::query("UPDATE users SET failed_logins = 0, locked_until = $1 WHERE id = $2")
                .bind(until)
                .bind(user.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(locked_until)
    }

    /// Records a good password: the count of wrong ones starts again.
    pub async fn record_login_success(&self, user: UserId) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1")
            .bind(user.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Changes what is given of `user`'s role, email (`Some(None)` removes it) and password
    /// hash, and lifts a lockout if `unlock`, in one statement.
    pub async fn update_user(
        &self,
        user: UserId,
        role: Option<Role>,
        email: Option<Option<String>>,
        password_hash: Option<&str>,
        unlock: bool,
    ) -> Result<(), StoreError> {
        let result = sqlx::query(
            "UPDATE users SET role = COALESCE($1, role), \
             email = CASE WHEN $2 = 1 THEN $3 ELSE email END, \
             password_hash = COALESCE($4, password_hash), \
             failed_logins = CASE WHEN $5 = 1 THEN 0 ELSE failed_logins END, \
             locked_until = CASE WHEN $5 = 1 THEN NULL ELSE locked_until END \
             WHERE id = $6",
        )
        .bind(role.map(Role::as_str))
        .bind(i64::from(email.is_some()))
        .bind(email.flatten())
        .bind(password_hash)
        .bind(i64::from(unlock))
        .bind(user.to_string())
        .execute(&self.pool)
        .await?;
        changed(&result, StoreError::NotFound("user"))
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
pub(crate) mod tests {
    use super::*;
    use crate::testing::store;

    pub(crate) fn user(name: &str, role: Role) -> UserRecord {
        UserRecord::new(name, "$argon2id$fake".into(), role, None, 1)
    }

    #[tokio::test]
    async fn the_last_allowed_wrong_password_locks_the_account() {
        let (store, _dir) = store().await;
        let alice = user("alice", Role::Member);
        store.insert_user(&alice).await.unwrap();
        for _ in 0..2 {
            assert_eq!(
                store
                    .record_login_failure(alice.id, 100, 3, 50)
                    .await
                    .unwrap(),
                None
            );
        }
        assert_eq!(
            store
                .record_login_failure(alice.id, 100, 3, 50)
                .await
                .unwrap(),
            Some(150)
        );
        let locked = store.user_by_name("alice").await.unwrap().unwrap();
        assert_eq!((locked.failed_logins, locked.locked_until), (0, Some(150)));
        store.record_login_success(alice.id).await.unwrap();
        let unlocked = store.user_by_name("alice").await.unwrap().unwrap();
        assert_eq!((unlocked.failed_logins, unlocked.locked_until), (0, None));
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
