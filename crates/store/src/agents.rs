//! Agent nodes: their one-time join tokens and the certificates the plane's CA signed.

use sqlx::Row;

use crate::nodes::NodeRecord;
use crate::{Millis, Store, StoreError, changed};

/// Why a join token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRefusal {
    /// No node is waiting for this token.
    Unknown,
    /// The token bought a certificate already.
    Used,
    /// The token's time ran out.
    Expired,
}

/// A certificate the plane's CA signed for an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCertificate {
    /// Its serial number, hex.
    pub serial: String,
    /// The node it names.
    pub node: String,
    /// When it was signed.
    pub issued_at: Millis,
    /// When it expires.
    pub not_after: Millis,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Millis>,
}

impl Store {
    /// Adds agent node `node`, waiting to join with the token hashed as `token_hash` until
    /// `expires_at`. A name that exists already is [`StoreError::Taken`].
    pub async fn insert_agent_node(
        &self,
        node: &NodeRecord,
        token_hash: &str,
        expires_at: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        crate::nodes::insert_node_row(&mut tx, node).await?;
        sqlx::query(
            "INSERT INTO agent_joins (node, token_hash, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (node) DO UPDATE SET token_hash = $2, expires_at = $3, used_at = NULL",
        )
        .bind(&node.name)
        .bind(token_hash)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the join token of agent node `node`, which has not joined yet;
    /// [`StoreError::NotFound`] if there is no such node waiting.
    pub async fn replace_join_token(
        &self,
        node: &str,
        token_hash: &str,
        expires_at: Millis,
    ) -> Result<(), StoreError> {
        let result = sqlx::query(
            "UPDATE agent_joins SET token_hash = $2, expires_at = $3 \
             WHERE node = $1 AND used_at IS NULL",
        )
        .bind(node)
        .bind(token_hash)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        changed(&result, StoreError::NotFound("agent node waiting to join"))
    }

    /// Spends node `node`'s join token `token_hash` on `certificate` and records where the
    /// agent listens, all at once; or says why the token is refused and changes nothing.
    pub async fn redeem_join_token(
        &self,
        node: &str,
        token_hash: &str,
        now: Millis,
        certificate: &AgentCertificate,
        url: &str,
    ) -> Result<Result<(), JoinRefusal>, StoreError> {
        let mut tx = self.begin_write().await?;
        let spent = sqlx::query(
            "UPDATE agent_joins SET used_at = $3 \
             WHERE node = $1 AND token_hash = $2 AND used_at IS NULL AND expires_at > $3",
        )
        .bind(node)
        .bind(token_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if spent.rows_affected() != 1 {
            let row =
                sqlx::query("SELECT used_at FROM agent_joins WHERE node = $1 AND token_hash = $2")
                    .bind(node)
                    .bind(token_hash)
                    .fetch_optional(&mut *tx)
                    .await?;
            let refusal = match row {
                None => JoinRefusal::Unknown,
                Some(row) if row.try_get::<Option<i64>, _>("used_at")?.is_some() => {
                    JoinRefusal::Used
                }
                Some(_) => JoinRefusal::Expired,
            };
            return Ok(Err(refusal));
        }
        insert_certificate(&mut tx, certificate).await?;
        sqlx::query("UPDATE nodes SET url = $2 WHERE name = $1")
            .bind(node)
            .bind(url)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Records a renewed certificate of a node that still exists.
    pub async fn insert_agent_certificate(
        &self,
        certificate: &AgentCertificate,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT 1 FROM nodes WHERE name = $1 AND kind = 'agent'")
            .bind(&certificate.node)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound("node"));
        }
        insert_certificate(&mut tx, certificate).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The certificate with `serial`, if the CA signed one.
    pub async fn agent_certificate(
        &self,
        serial: &str,
    ) -> Result<Option<AgentCertificate>, StoreError> {
        let row = sqlx::query(
            "SELECT serial, node, issued_at, not_after, revoked_at FROM agent_certificates \
             WHERE serial = $1",
        )
        .bind(serial)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(AgentCertificate {
                serial: row.try_get("serial")?,
                node: row.try_get("node")?,
                issued_at: row.try_get("issued_at")?,
                not_after: row.try_get("not_after")?,
                revoked_at: row.try_get("revoked_at")?,
            })
        })
        .transpose()
    }

    /// The serials of node `node`'s unrevoked certificates that are valid at `now`.
    pub async fn agent_serials(&self, node: &str, now: Millis) -> Result<Vec<String>, StoreError> {
        sqlx::query(
            "SELECT serial FROM agent_certificates \
             WHERE node = $1 AND revoked_at IS NULL AND not_after > $2 ORDER BY issued_at",
        )
        .bind(node)
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| Ok(row.try_get("serial")?))
        .collect()
    }

    /// Records where agent node `node` listens now.
    pub async fn set_node_url(&self, node: &str, url: &str) -> Result<(), StoreError> {
        let result = sqlx::query("UPDATE nodes SET url = $2 WHERE name = $1")
            .bind(node)
            .bind(url)
            .execute(&self.pool)
            .await?;
        changed(&result, StoreError::NotFound("node"))
    }

    /// When node `node`'s unspent join token expires, if it has one.
    pub async fn pending_join(&self, node: &str) -> Result<Option<Millis>, StoreError> {
        let row =
            sqlx::query("SELECT expires_at FROM agent_joins WHERE node = $1 AND used_at IS NULL")
                .bind(node)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|row| row.try_get("expires_at")).transpose()?)
    }
}

async fn insert_certificate(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    certificate: &AgentCertificate,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO agent_certificates (serial, node, issued_at, not_after) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(&certificate.serial)
    .bind(&certificate.node)
    .bind(certificate.issued_at)
    .bind(certificate.not_after)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::store;

    fn agent(name: &str) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            kind: porthole_core::NodeKind::Agent,
            url: String::new(),
            settings: "{}".into(),
            secret_sealed: String::new(),
            created_at: 1,
        }
    }

    fn certificate(serial: &str, node: &str) -> AgentCertificate {
        AgentCertificate {
            serial: serial.into(),
            node: node.into(),
            issued_at: 10,
            not_after: 1_000,
            revoked_at: None,
        }
    }

    #[tokio::test]
    async fn a_join_token_buys_one_certificate_before_it_expires() {
        let (store, _dir) = store().await;
        store
            .insert_agent_node(&agent("a"), "h1", 100)
            .await
            .unwrap();
        let redeem = |hash: &'static str, now, serial: &'static str| {
            let store = store.clone();
            async move {
                store
                    .redeem_join_token("a", hash, now, &certificate(serial, "a"), "https://a:1")
                    .await
                    .unwrap()
            }
        };
        assert_eq!(redeem("wrong", 50, "s0").await, Err(JoinRefusal::Unknown));
        assert_eq!(redeem("h1", 100, "s0").await, Err(JoinRefusal::Expired));
        store.replace_join_token("a", "h2", 200).await.unwrap();
        assert_eq!(redeem("h1", 50, "s0").await, Err(JoinRefusal::Unknown));
        assert_eq!(redeem("h2", 150, "s1").await, Ok(()));
        assert_eq!(redeem("h2", 151, "s2").await, Err(JoinRefusal::Used));
        assert!(store.agent_certificate("s2").await.unwrap().is_none());
        assert_eq!(store.agent_serials("a", 500).await.unwrap(), vec!["s1"]);
        assert_eq!(store.nodes().await.unwrap()[0].url, "https://a:1");
        // A joined node's token cannot be replaced.
        assert!(store.replace_join_token("a", "h3", 300).await.is_err());

        store
            .insert_agent_certificate(&certificate("s3", "a"))
            .await
            .unwrap();
        assert_eq!(store.agent_serials("a", 500).await.unwrap().len(), 2);
        assert!(store.agent_serials("a", 1_000).await.unwrap().is_empty());
        // Removing the node revokes every certificate it had.
        store.delete_node("a", 600, false).await.unwrap();
        assert!(
            store
                .agent_certificate("s1")
                .await
                .unwrap()
                .unwrap()
                .revoked_at
                .is_some()
        );
        assert!(store.agent_serials("a", 500).await.unwrap().is_empty());
        assert!(
            store
                .insert_agent_certificate(&certificate("s4", "a"))
                .await
                .is_err()
        );
    }
}
