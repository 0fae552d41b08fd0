//! The audit log: one row per action that changed state or was refused, kept with the
//! names as they were, so a record outlives the user or VM it names.

use porthole_core::{AuditId, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Millis, Store, StoreError, id_column, optional_id_column};

/// How an audited action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It was done (or, for jobs, queued).
    Ok,
    /// It was refused: not allowed, over a limit, a bad password.
    Denied,
    /// It was allowed but failed.
    Failed,
}

impl Outcome {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ok" => Some(Outcome::Ok),
            "denied" => Some(Outcome::Denied),
            "failed" => Some(Outcome::Failed),
            _ => None,
        }
    }
}

/// One audited action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// The record's id.
    pub id: AuditId,
    /// When it happened.
    pub at: Millis,
    /// Who did it, if it was a known user.
    pub actor_id: Option<UserId>,
    /// Their name as given: a username, `porthole` for the plane itself.
    pub actor: String,
    /// What was done, e.g. `vm.create`, `user.limits`, `login`.
    pub action: String,
    /// The kind of thing acted on, e.g. `vm`, `user`.
    pub target_kind: Option<String>,
    /// Its id.
    pub target_id: Option<String>,
    /// Its name at the time.
    pub target_name: Option<String>,
    /// Where the request came from.
    pub remote_addr: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// Anything else worth knowing: the new values, the reason for a refusal.
    pub detail: Option<String>,
}

impl AuditRecord {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        let outcome: String = row.try_get("outcome")?;
        Ok(Self {
            id: id_column(row, "id")?,
            at: row.try_get("at")?,
            actor_id: optional_id_column(row, "actor_id")?,
            actor: row.try_get("actor")?,
            action: row.try_get("action")?,
            target_kind: row.try_get("target_kind")?,
            target_id: row.try_get("target_id")?,
            target_name: row.try_get("target_name")?,
            remote_addr: row.try_get("remote_addr")?,
            outcome: Outcome::parse(&outcome)
                .ok_or_else(|| StoreError::Corrupt(format!("outcome = {outcome:?}")))?,
            detail: row.try_get("detail")?,
        })
    }
}

impl Store {
    /// Appends `record` to the log.
    pub async fn insert_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (id, at, actor_id, actor, action, target_kind, target_id, \
             target_name, remote_addr, outcome, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(record.id.to_string())
        .bind(record.at)
        .bind(record.actor_id.map(|id| id.to_string()))
        .bind(&record.actor)
        .bind(&record.action)
        .bind(&record.target_kind)
        .bind(&record.target_id)
        .bind(&record.target_name)
        .bind(&record.remote_addr)
        .bind(record.outcome.as_str())
        .bind(&record.detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest `limit` records before `before` (all, if `None`), newest first; only
    /// `actor`'s when given.
    pub async fn audit_log(
        &self,
        before: Option<Millis>,
        actor: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        sqlx::query(
            "SELECT id, at, actor_id, actor, action, target_kind, target_id, target_name, \
             remote_addr, outcome, detail FROM audit_log \
             WHERE at < $1 AND ($2 IS NULL OR actor = $2) ORDER BY at DESC, id LIMIT $3",
        )
        .bind(before.unwrap_or(Millis::MAX))
        .bind(actor)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(AuditRecord::from_row)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::store;

    fn record(at: Millis, actor: &str, outcome: Outcome) -> AuditRecord {
        AuditRecord {
            id: AuditId::random(),
            at,
            actor_id: None,
            actor: actor.into(),
            action: "vm.create".into(),
            target_kind: Some("vm".into()),
            target_id: None,
            target_name: Some("web1".into()),
            remote_addr: Some("127.0.0.1".into()),
            outcome,
            detail: None,
        }
    }

    #[tokio::test]
    async fn records_come_back_newest_first_and_filtered() {
        let (store, _dir) = store().await;
        for (at, actor, outcome) in [
            (1, "alice", Outcome::Ok),
            (2, "bob", Outcome::Denied),
            (3, "alice", Outcome::Failed),
        ] {
            store
                .insert_audit(&record(at, actor, outcome))
                .await
                .unwrap();
        }
        let all = store.audit_log(None, None, 10).await.unwrap();
        assert_eq!(all.iter().map(|r| r.at).collect::<Vec<_>>(), vec![3, 2, 1]);
        assert_eq!(all[1].outcome, Outcome::Denied);
        let alice = store.audit_log(None, Some("alice"), 10).await.unwrap();
        assert_eq!(alice.len(), 2);
        let page = store.audit_log(Some(3), None, 1).await.unwrap();
        assert_eq!(page[0].at, 2);
    }
}
