//! Nodes an admin added: how to reach them, with their secret sealed by the plane.

use porthole_core::NodeKind;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::taken_as;
use crate::{Millis, Store, StoreError, changed};

/// A node as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Its unique name; VMs refer to it.
    pub name: String,
    /// The kind of node; its settings are read as this kind's only.
    pub kind: NodeKind,
    /// The API's URL.
    pub url: String,
    /// Non-secret settings as JSON; the plane defines them.
    pub settings: String,
    /// The sealed password or token.
    pub secret_sealed: String,
    /// When it was added.
    pub created_at: Millis,
}

impl std::fmt::Debug for NodeRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeRecord")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl NodeRecord {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Self {
            name: row.try_get("name")?,
            kind: {
                let kind: String = row.try_get("kind")?;
                NodeKind::parse(&kind)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown node kind {kind:?}")))?
            },
            url: row.try_get("url")?,
            settings: row.try_get("settings")?,
            secret_sealed: row.try_get("secret_sealed")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// Inserts `node`'s row in `tx`; a name that exists already is [`StoreError::Taken`].
pub(crate) async fn insert_node_row(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    node: &NodeRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO nodes (name, kind, url, settings, secret_sealed, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&node.name)
    .bind(node.kind.as_str())
    .bind(&node.url)
    .bind(&node.settings)
    .bind(&node.secret_sealed)
    .bind(node.created_at)
    .execute(&mut **tx)
    .await
    .map_err(taken_as("name"))?;
    Ok(())
}

impl Store {
    /// Adds a node. A name that exists already is [`StoreError::Taken`].
    pub async fn insert_node(&self, node: &NodeRecord) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        insert_node_row(&mut tx, node).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every node, by name.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        sqlx::query(
            "SELECT name, kind, url, settings, secret_sealed, created_at FROM nodes ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(NodeRecord::from_row)
        .collect()
    }

    /// Removes node `name` if no VM and no template refers to it, revoking its certificates
    /// as of `now`; [`StoreError::InUse`] otherwise. With `forget_vms`, its VMs' rows go
    /// with it (templates still refuse), and their names are returned.
    pub async fn delete_node(
        &self,
        name: &str,
        now: Millis,
        forget_vms: bool,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.begin_write().await?;
        let forgotten: Vec<String> = if forget_vms {
            let names = sqlx::query("SELECT name FROM vms WHERE node = $1 ORDER BY name")
                .bind(name)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| row.try_get("name"))
                .collect::<Result<_, _>>()?;
            sqlx::query("DELETE FROM vms WHERE node = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            names
        } else {
            Vec::new()
        };
        let used: i64 = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM vms WHERE node = $1) \
                  + (SELECT COUNT(*) FROM templates WHERE node = $1) AS n",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if used > 0 {
            return Err(StoreError::InUse("node"));
        }
        let result = sqlx::query("DELETE FROM nodes WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        changed(&result, StoreError::NotFound("node"))?;
        // An agent's certificates die with its node, and its join token with them.
        sqlx::query(
            "UPDATE agent_certificates SET revoked_at = $2 WHERE node = $1 AND revoked_at IS NULL",
        )
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM agent_joins WHERE node = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(forgotten)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::store;

    fn node(name: &str) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            kind: NodeKind::Proxmox,
            url: "https://pve.example:8006".into(),
            settings: "{}".into(),
            secret_sealed: "sealed".into(),
            created_at: 1,
        }
    }

    #[tokio::test]
    async fn nodes_are_added_listed_and_removed_once() {
        let (store, _dir) = store().await;
        store.insert_node(&node("pve")).await.unwrap();
        assert!(matches!(
            store.insert_node(&node("pve")).await,
            Err(StoreError::Taken { field: "name" })
        ));
        assert_eq!(store.nodes().await.unwrap(), [node("pve")]);
        assert!(!format!("{:?}", node("pve")).contains("sealed"));
        store.delete_node("pve", 5, false).await.unwrap();
        assert!(matches!(
            store.delete_node("pve", 5, false).await,
            Err(StoreError::NotFound("node"))
        ));
    }
}
