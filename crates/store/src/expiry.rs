//! Records of the expiry scheduler: which notices were sent for which expiry date, and
//! which periodic runs happened. Claiming is an insert that succeeds only once, so two
//! sweeps (or a sweep after a restart) can never send the same notice twice.

use porthole_core::VmId;
use sqlx::Row;

use crate::{Millis, Store, StoreError};

/// What became of a notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeState {
    /// Taken by a sweep, which is sending it.
    Claimed,
    /// Delivered to the mail server.
    Sent,
    /// Not sent on purpose: a later notice of the same series was due as well.
    Skipped,
    /// Not sent: the owner has no email address (or no mail server is configured).
    NoAddress,
}

impl NoticeState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeState::Claimed => "claimed",
            NoticeState::Sent => "sent",
            NoticeState::Skipped => "skipped",
            NoticeState::NoAddress => "no_address",
        }
    }
}

/// One recorded notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoticeRecord {
    /// Its kind, e.g. `reminder-7`, `expired`, `deleted`.
    pub kind: String,
    /// The expiry date it belongs to.
    pub expires_at: Millis,
    /// What became of it.
    pub state: String,
    /// When.
    pub at: Millis,
}

impl Store {
    /// Claims notice `kind` of VM `vm`'s expiry at `expires_at`, in `state`. Returns false if
    /// it was claimed before.
    pub async fn claim_notice(
        &self,
        vm: VmId,
        expires_at: Millis,
        kind: &str,
        state: NoticeState,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO expiry_notices (vm_id, expires_at, kind, state, at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(vm.to_string())
        .bind(expires_at)
        .bind(kind)
        .bind(state.as_str())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Records what became of a claimed notice.
    pub async fn settle_notice(
        &self,
        vm: VmId,
        expires_at: Millis,
        kind: &str,
        state: NoticeState,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE expiry_notices SET state = $1 WHERE vm_id = $2 AND expires_at = $3 AND kind = $4",
        )
        .bind(state.as_str())
        .bind(vm.to_string())
        .bind(expires_at)
        .bind(kind)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives a claimed notice up, so the next sweep tries again (the mail server failed).
    pub async fn release_notice(
        &self,
        vm: VmId,
        expires_at: Millis,
        kind: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM expiry_notices WHERE vm_id = $1 AND expires_at = $2 AND kind = $3 \
             AND state = 'claimed'",
        )
        .bind(vm.to_string())
        .bind(expires_at)
        .bind(kind)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every notice recorded for `vm`, oldest first.
    pub async fn notices(&self, vm: VmId) -> Result<Vec<NoticeRecord>, StoreError> {
        sqlx::query(
            "SELECT kind, expires_at, state, at FROM expiry_notices WHERE vm_id = $1 \
             ORDER BY at, kind",
        )
        .bind(vm.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(NoticeRecord {
                kind: row.try_get("kind")?,
                expires_at: row.try_get("expires_at")?,
                state: row.try_get("state")?,
                at: row.try_get("at")?,
            })
        })
        .collect()
    }

    /// Claims periodic run `name` for `period` (e.g. a date). Returns false if it was claimed
    /// before.
    pub async fn claim_run(
        &self,
        name: &str,
        period: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO scheduled_runs (name, period, state, at) VALUES ($1, $2, 'claimed', $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(period)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Marks run `name` for `period` done, or gives it up so it is tried again.
    pub async fn settle_run(&self, name: &str, period: &str, done: bool) -> Result<(), StoreError> {
        let query = if done {
            "UPDATE scheduled_runs SET state = 'done' WHERE name = $1 AND period = $2"
        } else {
            "DELETE FROM scheduled_runs WHERE name = $1 AND period = $2 AND state = 'claimed'"
        };
        sqlx::query(query)
            .bind(name)
            .bind(period)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::store;

    #[tokio::test]
    async fn a_notice_is_claimed_once_per_expiry_date() {
        let (store, _dir) = store().await;
        let vm = VmId::random();
        assert!(
            store
                .claim_notice(vm, 100, "reminder-7", NoticeState::Claimed, 1)
                .await
                .unwrap()
        );
        assert!(
            !store
                .claim_notice(vm, 100, "reminder-7", NoticeState::Claimed, 2)
                .await
                .unwrap()
        );
        // A renewal moves the expiry date: a new series.
        assert!(
            store
                .claim_notice(vm, 200, "reminder-7", NoticeState::Claimed, 3)
                .await
                .unwrap()
        );
        store
            .settle_notice(vm, 100, "reminder-7", NoticeState::Sent)
            .await
            .unwrap();
        store.release_notice(vm, 200, "reminder-7").await.unwrap();
        let notices = store.notices(vm).await.unwrap();
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].state, "sent");
        // A sent notice cannot be released.
        store.release_notice(vm, 100, "reminder-7").await.unwrap();
        assert_eq!(store.notices(vm).await.unwrap().len(), 1);

        assert!(store.claim_run("summary", "2026-11-23", 1).await.unwrap());
        assert!(!store.claim_run("summary", "2026-11-23", 2).await.unwrap());
        store
            .settle_run("summary", "2026-11-23", false)
            .await
            .unwrap();
        assert!(store.claim_run("summary", "2026-11-23", 3).await.unwrap());
    }
}
