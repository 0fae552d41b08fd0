//! The durable job queue.
//!
//! 1. A job is inserted `queued` in the same transaction as the change that asked for it
//!    (a new VM row, or a VM taken for an action), so a crash can never leave one without
//!    the other.
//! 2. A worker claims the oldest claimable job by setting its lease. A `running` job whose
//!    lease ran out belongs to a dead worker and is claimable again; its `attempts` count
//!    grows each time.
//! 3. The worker reports progress and renews the lease while it works.
//! 4. Finishing is one transaction: the job's outcome, and the VM's new state (or its
//!    removal), guarded by the worker's lease and the VM's `job_id`.

use porthole_core::{JobId, JobKind, JobState, UserId, VmId, VmState};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::quotas::{QuotaRequest, admit_in};
use crate::vms::{VmRecord, insert_vm};
use crate::{Millis, Store, StoreError, count_column, enum_column, id_column, optional_id_column};

/// A job as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRecord {
    /// The job's id.
    pub id: JobId,
    /// What it does.
    pub kind: JobKind,
    /// The VM it acts on.
    pub vm_id: Option<VmId>,
    /// Who asked for it.
    pub requested_by: UserId,
    /// Where it is.
    pub state: JobState,
    /// From 0.0 to 1.0.
    pub progress: f64,
    /// What it is doing now, for people.
    pub step: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Kind-specific parameters, as JSON.
    pub params: String,
    /// How many times a worker has claimed it.
    pub attempts: u64,
    /// When it was queued.
    pub created_at: Millis,
    /// When a worker first claimed it.
    pub started_at: Option<Millis>,
    /// When it finished.
    pub finished_at: Option<Millis>,
}

macro_rules! job_columns {
    () => {
        "id, kind, vm_id, requested_by, state, progress, step, error, params, attempts, \
         created_at, started_at, finished_at"
    };
}

impl JobRecord {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: id_column(row, "id")?,
            kind: enum_column(row, "kind", JobKind::parse)?,
            vm_id: optional_id_column(row, "vm_id")?,
            requested_by: id_column(row, "requested_by")?,
            state: enum_column(row, "state", JobState::parse)?,
            progress: row.try_get("progress")?,
            step: row.try_get("step")?,
            error: row.try_get("error")?,
            params: row.try_get("params")?,
            attempts: count_column(row, "attempts")?,
            created_at: row.try_get("created_at")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
        })
    }
}

/// A job to queue.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// The job's id.
    pub id: JobId,
    /// What it does.
    pub kind: JobKind,
    /// The VM it acts on.
    pub vm_id: Option<VmId>,
    /// Who asked for it.
    pub requested_by: UserId,
    /// Kind-specific parameters, as JSON.
    pub params: String,
    /// When it was asked for.
    pub created_at: Millis,
}

/// What finishing a job does to its VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmOutcome {
    /// Release the VM in this state.
    Settle(VmState),
    /// The VM no longer exists: remove its row.
    Remove,
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// It did what it promised.
    Succeeded,
    /// It failed, for this reason, and everything it did was undone.
    Failed(String),
}

async fn insert_job(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    job: &NewJob,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO jobs (id, kind, vm_id, requested_by, state, params, created_at) \
         VALUES ($1, $2, $3, $4, 'queued', $5, $6)",
    )
    .bind(job.id.to_string())
    .bind(job.kind.as_str())
    .bind(job.vm_id.map(|v| v.to_string()))
    .bind(job.requested_by.to_string())
    .bind(&job.params)
    .bind(job.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Inserts a new VM (whose `job_id` must be `job.id`) and its create job, atomically,
    /// if `quota` admits it.
    pub async fn insert_vm_with_job(
        &self,
        vm: &VmRecord,
        job: &NewJob,
        quota: Option<&QuotaRequest>,
    ) -> Result<(), StoreError> {
        debug_assert_eq!(vm.job_id, Some(job.id));
        let mut tx = self.begin_write().await?;
        if let Some(quota) = quota {
            admit_in(&mut tx, quota).await?;
        }
        insert_vm(&mut tx, vm).await?;
        insert_job(&mut tx, job).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes VM `vm` for `job`, atomically: only if no job holds it and its state is still
    /// `seen`, and if `quota` admits what the job adds. `holding_state` is what the VM shows
    /// while the job runs, e.g. `deleting`. Fails with [`StoreError::Stale`] if the VM moved
    /// on.
    pub async fn queue_vm_job(
        &self,
        vm: VmId,
        seen: VmState,
        holding_state: VmState,
        job: &NewJob,
        quota: Option<&QuotaRequest>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        if let Some(quota) = quota {
            admit_in(&mut tx, quota).await?;
        }
        let taken = sqlx::query(
            "UPDATE vms SET job_id = $1, state = $2, updated_at = $3 \
             WHERE id = $4 AND state = $5 AND job_id IS NULL",
        )
        .bind(job.id.to_string())
        .bind(holding_state.as_str())
        .bind(job.created_at)
        .bind(vm.to_string())
        .bind(seen.as_str())
        .execute(&mut *tx)
        .await?;
        if taken.rows_affected() == 0 {
            return Err(StoreError::Stale("VM"));
        }
        insert_job(&mut tx, job).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Claims the oldest job that is queued or whose worker's lease ran out, for `owner`
    /// until `lease_until`.
    pub async fn claim_job(
        &self,
        owner: &str,
        now: Millis,
        lease_until: Millis,
    ) -> Result<Option<JobRecord>, StoreError> {
        sqlx::query(concat!(
            "UPDATE jobs SET state = 'running', lease_owner = $1, lease_until = $2, \
             attempts = attempts + 1, started_at = COALESCE(started_at, $3) \
             WHERE id = (SELECT id FROM jobs \
                         WHERE state = 'queued' OR (state = 'running' AND lease_until < $3) \
                         ORDER BY created_at, id LIMIT 1) \
             RETURNING ",
            job_columns!()
        ))
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(JobRecord::from_row)
        .transpose()
    }

    /// Extends `owner`'s lease on `job`. Returns false if the lease was lost to another
    /// worker, which must then stop working on the job.
    pub async fn renew_lease(
        &self,
        job: JobId,
        owner: &str,
        lease_until: Millis,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE jobs SET lease_until = $1 \
             WHERE id = $2 AND lease_owner = $3 AND state = 'running'",
        )
        .bind(lease_until)
        .bind(job.to_string())
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Lets every running job be claimed again at once. Only for a store that a single
    /// process owns (embedded SQLite): at its start, no other worker can be alive.
    pub async fn expire_all_leases(&self) -> Result<u64, StoreError> {
        let result = sqlx::query("UPDATE jobs SET lease_until = 0 WHERE state = 'running'")
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    /// Records how far `owner`'s `job` got.
    pub async fn set_job_progress(
        &self,
        job: JobId,
        owner: &str,
        progress: f64,
        step: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE jobs SET progress = $1, step = $2 \
             WHERE id = $3 AND lease_owner = $4 AND state = 'running'",
        )
        .bind(progress.clamp(0.0, 1.0))
        .bind(step)
        .bind(job.to_string())
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Finishes `owner`'s `job` and applies `vm_outcome` to its VM, atomically. Fails with
    /// [`StoreError::Stale`] if the lease was lost, in which case nothing changes.
    pub async fn finish_job(
        &self,
        job: &JobRecord,
        owner: &str,
        outcome: &JobOutcome,
        vm_outcome: Option<VmOutcome>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let (state, error) = match outcome {
            JobOutcome::Succeeded => (JobState::Succeeded, None),
            JobOutcome::Failed(why) => (JobState::Failed, Some(why.as_str())),
        };
        let mut tx = self.begin_write().await?;
        let finished = sqlx::query(
            "UPDATE jobs SET state = $1, error = $2, finished_at = $3, lease_owner = NULL, \
             lease_until = NULL, progress = CASE WHEN $1 = 'succeeded' THEN 1.0 ELSE progress END \
             WHERE id = $4 AND lease_owner = $5 AND state = 'running'",
        )
        .bind(state.as_str())
        .bind(error)
        .bind(now)
        .bind(job.id.to_string())
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        if finished.rows_affected() == 0 {
            return Err(StoreError::Stale("job lease"));
        }
        if let (Some(vm), Some(vm_outcome)) = (job.vm_id, vm_outcome) {
            let query = match vm_outcome {
                VmOutcome::Settle(vm_state) => sqlx::query(
                    "UPDATE vms SET state = $1, job_id = NULL, updated_at = $2 \
                     WHERE id = $3 AND job_id = $4",
                )
                .bind(vm_state.as_str())
                .bind(now),
                VmOutcome::Remove => sqlx::query("DELETE FROM vms WHERE id = $1 AND job_id = $2"),
            };
            query
                .bind(vm.to_string())
                .bind(job.id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The job with `id`, if any.
    pub async fn job(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(JobRecord::from_row)
        .transpose()
    }

    /// VM `vm`'s most recent jobs, newest first.
    pub async fn recent_vm_jobs(&self, vm: VmId, limit: u32) -> Result<Vec<JobRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE vm_id = $1 ORDER BY created_at DESC, id LIMIT $2"
        ))
        .bind(vm.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(JobRecord::from_row)
        .collect()
    }

    /// The most recent jobs, newest first, optionally only those `requested_by` one user.
    pub async fn recent_jobs(
        &self,
        requested_by: Option<UserId>,
        limit: u32,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let rows = match requested_by {
            Some(user) => {
                sqlx::query(concat!(
                    "SELECT ",
                    job_columns!(),
                    " FROM jobs WHERE requested_by = $1 ORDER BY created_at DESC, id LIMIT $2"
                ))
                .bind(user.to_string())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(concat!(
                    "SELECT ",
                    job_columns!(),
                    " FROM jobs ORDER BY created_at DESC, id LIMIT $1"
                ))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(JobRecord::from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::store;
    use crate::users::UserRecord;
    use porthole_core::{Resources, Role, VmName};

    async fn owner(store: &Store) -> UserRecord {
        let user = crate::users::tests::user("alice", Role::Member);
        store.insert_user(&user).await.unwrap();
        user
    }

    fn new_job(kind: JobKind, vm: VmId, user: UserId, at: Millis) -> NewJob {
        NewJob {
            id: JobId::random(),
            kind,
            vm_id: Some(vm),
            requested_by: user,
            params: "{}".into(),
            created_at: at,
        }
    }

    async fn new_vm(store: &Store, owner: &UserRecord, name: &str) -> (VmRecord, NewJob) {
        let id = VmId::random();
        let job = new_job(JobKind::CreateVm, id, owner.id, 10);
        let mut iso = crate::images::IsoRecord {
            id: porthole_core::IsoId::random(),
            name: format!("iso-{name}"),
            file_size: 1,
            sha256: String::new(),
            created_at: 0,
            approved: true,
        };
        iso.sha256 = "00".repeat(32);
        store.insert_iso(&iso).await.unwrap();
        let vm = VmRecord {
            id,
            name: VmName::parse(name).unwrap(),
            owner_id: owner.id,
            owner: owner.username.clone(),
            node: "local".into(),
            state: VmState::Creating,
            resources: Resources {
                cores: 1,
                memory_mib: 256,
                disk_gib: 1,
            },
            template_id: None,
            iso_id: Some(iso.id),
            template_name: None,
            iso_name: Some(iso.name.clone()),
            job_id: Some(job.id),
            created_at: 10,
            updated_at: 10,
            expires_at: None,
            expiry_exempt: false,
            cdrom_iso_id: None,
            cdrom_iso_name: None,
            boot_order: None,
        };
        store.insert_vm_with_job(&vm, &job, None).await.unwrap();
        (vm, job)
    }

    #[tokio::test]
    async fn a_job_is_claimed_once_and_its_finish_releases_the_vm() {
        let (store, _dir) = store().await;
        let alice = owner(&store).await;
        let (vm, job) = new_vm(&store, &alice, "web").await;
        assert_eq!(store.vm(vm.id).await.unwrap().unwrap(), vm);

        let claimed = store.claim_job("w1", 100, 200).await.unwrap().unwrap();
        assert_eq!(
            (claimed.id, claimed.state, claimed.attempts),
            (job.id, JobState::Running, 1)
        );
        assert_eq!(
            store.claim_job("w2", 150, 250).await.unwrap(),
            None,
            "lease still held"
        );

        store
            .set_job_progress(job.id, "w1", 0.5, "booting")
            .await
            .unwrap();
        store
            .finish_job(
                &claimed,
                "w1",
                &JobOutcome::Succeeded,
                Some(VmOutcome::Settle(VmState::Running)),
                160,
            )
            .await
            .unwrap();
        let done = store.job(job.id).await.unwrap().unwrap();
        assert_eq!(
            (done.state, done.progress, done.finished_at),
            (JobState::Succeeded, 1.0, Some(160))
        );
        let vm = store.vm(vm.id).await.unwrap().unwrap();
        assert_eq!((vm.state, vm.job_id), (VmState::Running, None));
    }

    #[tokio::test]
    async fn an_expired_lease_is_claimed_again_and_the_old_worker_cannot_finish() {
        let (store, _dir) = store().await;
        let alice = owner(&store).await;
        let (vm, _) = new_vm(&store, &alice, "web").await;
        let first = store.claim_job("dead", 100, 200).await.unwrap().unwrap();
        let second = store.claim_job("alive", 201, 300).await.unwrap().unwrap();
        assert_eq!((second.id, second.attempts), (first.id, 2));
        assert!(!store.renew_lease(first.id, "dead", 400).await.unwrap());
        let stale = store
            .finish_job(
                &first,
                "dead",
                &JobOutcome::Failed("x".into()),
                Some(VmOutcome::Remove),
                210,
            )
            .await;
        assert!(matches!(stale, Err(StoreError::Stale(_))));
        assert!(
            store.vm(vm.id).await.unwrap().is_some(),
            "stale worker removed the VM"
        );
        store
            .finish_job(
                &second,
                "alive",
                &JobOutcome::Failed("rolled back".into()),
                Some(VmOutcome::Remove),
                220,
            )
            .await
            .unwrap();
        assert!(store.vm(vm.id).await.unwrap().is_none());
        assert_eq!(
            store.job(first.id).await.unwrap().unwrap().error.as_deref(),
            Some("rolled back")
        );
    }

    #[tokio::test]
    async fn a_held_vm_refuses_a_second_job_and_a_moved_vm_is_stale() {
        let (store, _dir) = store().await;
        let alice = owner(&store).await;
        let (vm, _) = new_vm(&store, &alice, "web").await;
        let start = new_job(JobKind::StartVm, vm.id, alice.id, 20);
        let err = store
            .queue_vm_job(vm.id, VmState::Creating, VmState::Creating, &start, None)
            .await;
        assert!(
            matches!(err, Err(StoreError::Stale(_))),
            "create job still holds the VM"
        );

        let create = store.claim_job("w", 30, 40).await.unwrap().unwrap();
        store
            .finish_job(
                &create,
                "w",
                &JobOutcome::Succeeded,
                Some(VmOutcome::Settle(VmState::Stopped)),
                35,
            )
            .await
            .unwrap();
        assert!(matches!(
            store
                .queue_vm_job(vm.id, VmState::Running, VmState::Running, &start, None)
                .await,
            Err(StoreError::Stale(_))
        ));
        store
            .queue_vm_job(vm.id, VmState::Stopped, VmState::Stopped, &start, None)
            .await
            .unwrap();
        assert_eq!(
            store.vm(vm.id).await.unwrap().unwrap().job_id,
            Some(start.id)
        );
        // The reconciler may not overwrite a VM a job holds.
        assert!(
            !store
                .record_vm_state(vm.id, VmState::Stopped, VmState::Running, 50)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn vm_names_are_unique_and_a_failed_insert_leaves_no_job() {
        let (store, _dir) = store().await;
        let alice = owner(&store).await;
        let (vm, _) = new_vm(&store, &alice, "web").await;
        let id = VmId::random();
        let job = new_job(JobKind::CreateVm, id, alice.id, 11);
        let dup = VmRecord {
            id,
            job_id: Some(job.id),
            ..vm
        };
        assert!(matches!(
            store.insert_vm_with_job(&dup, &job, None).await,
            Err(StoreError::Taken { field: "name" })
        ));
        assert_eq!(store.job(job.id).await.unwrap(), None);
        assert_eq!(store.recent_jobs(None, 10).await.unwrap().len(), 1);
    }
}
