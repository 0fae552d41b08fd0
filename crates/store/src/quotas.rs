//! Limits, usage and groups, and the quota check that writes run inside their transaction.
//!
//! A write that makes a user use more (a create, a start, a bigger disk) calls
//! [`admit_in`] inside its own transaction. It first takes the user's row lock, so
//! concurrent writes for one user queue behind each other (SQLite's `BEGIN IMMEDIATE` already
//! serializes writers; PostgreSQL locks the row), then sums what the user uses and compares.
//! Two requests can therefore never both squeeze under the same limit. Admins' own VMs are
//! not limited.

use porthole_core::{GroupId, LimitOverrides, Limits, Resources, Usage, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::{StoreError, taken_as};
use crate::{Millis, Store, changed, count_column, id_column, to_db};

/// What a write adds to its owner's usage, and the default limits.
#[derive(Clone, Copy, Debug)]
pub struct QuotaRequest {
    /// The owner.
    pub user: UserId,
    /// The site's default limits.
    pub defaults: Limits,
    /// What the write adds.
    pub extra: Usage,
}

/// A group, with its limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRecord {
    /// Its id.
    pub id: GroupId,
    /// Its unique name.
    pub name: String,
    /// Its limits; unset parts inherit the site default.
    pub limits: LimitOverrides,
    /// Its members' usernames, sorted.
    pub members: Vec<String>,
    /// When it was made.
    pub created_at: Millis,
}

/// Reads `limit_cores`, `limit_memory_mib` and `limit_disk_gib`.
pub(crate) fn overrides_from_row(row: &AnyRow) -> Result<LimitOverrides, StoreError> {
    let part = |column: &str| -> Result<Option<u64>, StoreError> {
        let value: Option<i64> = row.try_get(column)?;
        value
            .map(|v| u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{column} = {v}"))))
            .transpose()
    };
    Ok(LimitOverrides {
        cores: part("limit_cores")?,
        memory_mib: part("limit_memory_mib")?,
        disk_gib: part("limit_disk_gib")?,
    })
}

/// Whether a VM in this state (with this job) counts as running for cores and memory: it
/// runs, is paused, is being created, or is about to start.
fn counts_as_running(state: &str, job_kind: Option<&str>) -> bool {
    matches!(state, "creating" | "running" | "paused") || job_kind == Some("vm.start")
}

/// What `user` uses now, read through `executor`.
async fn usage<'e, E>(executor: E, user: UserId) -> Result<Usage, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT vms.cores, vms.memory_mib, vms.disk_gib, vms.state, jobs.kind AS job_kind \
         FROM vms LEFT JOIN jobs ON jobs.id = vms.job_id WHERE vms.owner_id = $1",
    )
    .bind(user.to_string())
    .fetch_all(executor)
    .await?;
    let mut total = Usage::default();
    for row in &rows {
        let state: String = row.try_get("state")?;
        let job_kind: Option<String> = row.try_get("job_kind")?;
        let cores = count_column(row, "cores")?;
        let resources = Resources {
            cores: u32::try_from(cores)
                .map_err(|_| StoreError::Corrupt(format!("cores = {cores}")))?,
            memory_mib: count_column(row, "memory_mib")?,
            disk_gib: count_column(row, "disk_gib")?,
        };
        total.add(resources, counts_as_running(&state, job_kind.as_deref()));
    }
    Ok(total)
}

/// The user's own overrides and those of each of their groups.
async fn overrides(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    user: UserId,
) -> Result<(LimitOverrides, Vec<LimitOverrides>), StoreError> {
    let own = sqlx::query(
        "SELECT limit_cores, limit_memory_mib, limit_disk_gib FROM users WHERE id = $1",
    )
    .bind(user.to_string())
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("user"))?;
    let groups = sqlx::query(
        "SELECT groups.limit_cores, groups.limit_memory_mib, groups.limit_disk_gib \
         FROM groups JOIN group_members ON group_members.group_id = groups.id \
         WHERE group_members.user_id = $1",
    )
    .bind(user.to_string())
    .fetch_all(&mut **tx)
    .await?;
    Ok((
        overrides_from_row(&own)?,
        groups
            .iter()
            .map(overrides_from_row)
            .collect::<Result<_, _>>()?,
    ))
}

/// The quota check, inside `tx`: locks the owner's row, then admits `request.extra` or fails
/// with [`StoreError::Quota`].
pub(crate) async fn admit_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    request: &QuotaRequest,
) -> Result<(), StoreError> {
    // A no-op write takes the row lock on PostgreSQL; on SQLite the transaction already
    // holds the database's write lock.
    sqlx::query("UPDATE users SET limit_cores = limit_cores WHERE id = $1")
        .bind(request.user.to_string())
        .execute(&mut **tx)
        .await?;
    // Admins run the site; their own VMs are not limited.
    let role: Option<String> = sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
        .bind(request.user.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    if role.as_deref() == Some("admin") {
        return Ok(());
    }
    let (own, groups) = overrides(tx, request.user).await?;
    let limits = request.defaults.resolve(own, &groups);
    let used = usage(&mut **tx, request.user).await?;
    limits.admit(used, request.extra).map_err(StoreError::Quota)
}

impl Store {
    /// What `user` uses now.
    pub async fn usage(&self, user: UserId) -> Result<Usage, StoreError> {
        usage(&self.pool, user).await
    }

    /// The limits that apply to `user`, given the site's `defaults`.
    pub async fn limits(&self, user: UserId, defaults: Limits) -> Result<Limits, StoreError> {
        let mut tx = self.pool.begin().await?;
        let (own, groups) = overrides(&mut tx, user).await?;
        tx.commit().await?;
        Ok(defaults.resolve(own, &groups))
    }

    /// Sets `user`'s own limits; unset parts inherit.
    pub async fn set_user_limits(
        &self,
        user: UserId,
        limits: LimitOverrides,
    ) -> Result<(), StoreError> {
        self.set_limits("users", user.to_string(), limits).await
    }

    /// Adds a group with no members.
    pub async fn insert_group(&self, group: &GroupRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO groups (id, name, limit_cores, limit_memory_mib, limit_disk_gib, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(group.id.to_string())
        .bind(&group.name)
        .bind(group.limits.cores.map(to_db))
        .bind(group.limits.memory_mib.map(to_db))
        .bind(group.limits.disk_gib.map(to_db))
        .bind(group.created_at)
        .execute(&self.pool)
        .await
        .map_err(taken_as("name"))?;
        Ok(())
    }

    /// Every group, by name, with its members.
    pub async fn groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, limit_cores, limit_memory_mib, limit_disk_gib, created_at \
             FROM groups ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        let members = sqlx::query(
            "SELECT group_members.group_id, users.username FROM group_members \
             JOIN users ON users.id = group_members.user_id ORDER BY users.username",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let id: GroupId = id_column(row, "id")?;
                let mut names = Vec::new();
                for member in &members {
                    let group: GroupId = id_column(member, "group_id")?;
                    if group == id {
                        names.push(member.try_get("username")?);
                    }
                }
                Ok(GroupRecord {
                    id,
                    name: row.try_get("name")?,
                    limits: overrides_from_row(row)?,
                    members: names,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// The group called `name`, if any.
    pub async fn group_by_name(&self, name: &str) -> Result<Option<GroupRecord>, StoreError> {
        Ok(self.groups().await?.into_iter().find(|g| g.name == name))
    }

    /// Sets a group's limits; unset parts inherit the site default.
    pub async fn set_group_limits(
        &self,
        group: GroupId,
        limits: LimitOverrides,
    ) -> Result<(), StoreError> {
        self.set_limits("groups", group.to_string(), limits).await
    }

    /// Sets the limits of row `id` of `table` (`users` or `groups`).
    async fn set_limits(
        &self,
        table: &'static str,
        id: String,
        limits: LimitOverrides,
    ) -> Result<(), StoreError> {
        let query = if table == "users" {
            "UPDATE users SET limit_cores = $1, limit_memory_mib = $2, limit_disk_gib = $3 \
             WHERE id = $4"
        } else {
            "UPDATE groups SET limit_cores = $1, limit_memory_mib = $2, limit_disk_gib = $3 \
             WHERE id = $4"
        };
        let result = sqlx::query(query)
            .bind(limits.cores.map(to_db))
            .bind(limits.memory_mib.map(to_db))
            .bind(limits.disk_gib.map(to_db))
            .bind(id)
            .execute(&self.pool)
            .await?;
        changed(
            &result,
            StoreError::NotFound(if table == "users" { "user" } else { "group" }),
        )
    }

    /// Removes a group; its members keep their accounts.
    pub async fn delete_group(&self, group: GroupId) -> Result<(), StoreError> {
        let result = sqlx::query("DELETE FROM groups WHERE id = $1")
            .bind(group.to_string())
            .execute(&self.pool)
            .await?;
        changed(&result, StoreError::NotFound("group"))
    }

    /// Adds `user` to `group`; adding a member again changes nothing.
    pub async fn add_group_member(&self, group: GroupId, user: UserId) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO group_members (group_id, user_id) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(group.to_string())
        .bind(user.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes `user` from `group`. Returns whether they were a member.
    pub async fn remove_group_member(
        &self,
        group: GroupId,
        user: UserId,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
            .bind(group.to_string())
            .bind(user.to_string())
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// The names of `user`'s groups, sorted.
    pub async fn groups_of(&self, user: UserId) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT groups.name FROM groups JOIN group_members \
             ON group_members.group_id = groups.id WHERE group_members.user_id = $1 \
             ORDER BY groups.name",
        )
        .bind(user.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("name").map_err(StoreError::from))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use porthole_core::Role;

    use super::*;
    use crate::testing::store;
    use crate::users::tests::user;

    const DEFAULTS: Limits = Limits {
        cores: 4,
        memory_mib: 4096,
        disk_gib: 20,
    };

    #[tokio::test]
    async fn limits_resolve_through_the_users_groups() {
        let (store, _dir) = store().await;
        let alice = user("alice", Role::Member);
        store.insert_user(&alice).await.unwrap();
        assert_eq!(store.limits(alice.id, DEFAULTS).await.unwrap(), DEFAULTS);
        let group = GroupRecord {
            id: GroupId::random(),
            name: "lab".into(),
            limits: LimitOverrides {
                cores: Some(16),
                ..Default::default()
            },
            members: vec![],
            created_at: 1,
        };
        store.insert_group(&group).await.unwrap();
        store.add_group_member(group.id, alice.id).await.unwrap();
        store.add_group_member(group.id, alice.id).await.unwrap();
        assert_eq!(store.limits(alice.id, DEFAULTS).await.unwrap().cores, 16);
        assert_eq!(store.groups_of(alice.id).await.unwrap(), vec!["lab"]);
        assert_eq!(store.groups().await.unwrap()[0].members, vec!["alice"]);
        store
            .set_user_limits(
                alice.id,
                LimitOverrides {
                    cores: Some(1),
                    disk_gib: Some(50),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let limits = store.limits(alice.id, DEFAULTS).await.unwrap();
        assert_eq!(
            (limits.cores, limits.memory_mib, limits.disk_gib),
            (1, 4096, 50)
        );
        store.delete_group(group.id).await.unwrap();
        assert!(store.groups_of(alice.id).await.unwrap().is_empty());
        assert!(matches!(
            store
                .insert_group(&GroupRecord {
                    id: GroupId::random(),
                    ..group.clone()
                })
                .await,
            Ok(())
        ));
        assert!(matches!(
            store
                .insert_group(&GroupRecord {
                    id: GroupId::random(),
                    ..group
                })
                .await,
            Err(StoreError::Taken { field: "name" })
        ));
    }

    #[test]
    fn starting_and_creating_vms_count_as_running() {
        assert!(counts_as_running("creating", Some("vm.create")));
        assert!(counts_as_running("paused", None));
        assert!(counts_as_running("stopped", Some("vm.start")));
        assert!(!counts_as_running("stopped", None));
        assert!(!counts_as_running("deleting", Some("vm.delete")));
    }
}
