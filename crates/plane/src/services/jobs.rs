//! Job workers: claim queued jobs, carry them out against the VM's node, and record the
//! outcome.
//!
//! Every job kind is safe to run again, because a worker can die mid-job and the job is then
//! claimed again when its lease runs out (at once after a restart of the embedded plane):
//! - `vm.create` re-runs its steps, each of which the driver makes idempotent; after
//!   [`MAX_ATTEMPTS`] interrupted runs it rolls back instead, removing every file and row;
//! - power actions ask the driver for the same end state again;
//! - `vm.delete` removes whatever is left.
//!
//! A job always finishes by recording the VM's state as the node reports it, so the row
//! never claims something the hypervisor does not show.

use std::sync::Arc;
use std::time::Duration;

use porthole_api::Job;
use porthole_core::driver::{BootMedia, DirectBoot, Driver, DriverError, Progress, VmDefinition};
use porthole_core::{JobId, JobKind, VmId, VmState};
use porthole_store::StoreError;
use porthole_store::jobs::{JobOutcome, JobRecord, VmOutcome};
use porthole_store::vms::VmRecord;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::app::{App, AppState};
use crate::error::{ApiError, chain};
use crate::services::caller::Caller;
use crate::services::vms::{
    CreateParams, ShutdownParams, SnapshotParams, boot_order, job_to_wire, visible_vm,
};

/// How long a claimed job stays a worker's without renewal.
pub const LEASE: Duration = Duration::from_secs(30);
/// How many jobs one plane runs at once.
pub const MAX_CONCURRENT_JOBS: usize = 16;
/// How many times an interrupted create is resumed before it is rolled back.
pub const MAX_ATTEMPTS: u64 = 3;
/// How often workers look for claimable jobs without being woken.
const POLL: Duration = Duration::from_secs(1);

/// Lease times are about worker liveness, so they follow the system clock even when tests
/// move the plane's business clock.
fn lease_now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn lease_until() -> i64 {
    lease_now() + i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX)
}

/// Job `id`, if the caller may see it: members see only jobs they asked for.
pub async fn visible(app: &App, caller: &Caller, id: &str) -> Result<Job, ApiError> {
    let missing = || ApiError::NotFound(format!("no job with id {id} is visible to you"));
    let job_id: JobId = id.parse().map_err(|_| missing())?;
    match app.store.job(job_id).await? {
        Some(job) if caller.is_admin() || job.requested_by == caller.user.id => {
            Ok(job_to_wire(&job))
        }
        _ => Err(missing()),
    }
}

/// The latest `limit` jobs, newest first: the caller's, or everyone's for an admin.
pub async fn recent(app: &App, caller: &Caller, limit: u32) -> Result<Vec<Job>, ApiError> {
    let user = (!caller.is_admin()).then_some(caller.user.id);
    let jobs = app.store.recent_jobs(user, limit).await?;
    Ok(jobs.iter().map(job_to_wire).collect())
}

/// The latest `limit` jobs of VM `id`, if the caller may see it.
pub async fn recent_for_vm(
    app: &App,
    caller: &Caller,
    id: VmId,
    limit: u32,
) -> Result<Vec<Job>, ApiError> {
    let vm = visible_vm(app, caller, id).await?;
    let jobs = app.store.recent_vm_jobs(vm.id, limit).await?;
    Ok(jobs.iter().map(job_to_wire).collect())
}

/// Runs jobs until `shutdown` is cancelled.
pub async fn run_workers(app: AppState, shutdown: CancellationToken) {
    let owner = format!("plane-{}", uuid::Uuid::new_v4());
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_JOBS));
    loop {
        while let Ok(slot) = Arc::clone(&slots).try_acquire_owned() {
            match app
                .store
                .claim_job(&owner, lease_now(), lease_until())
                .await
            {
                Ok(Some(job)) => {
                    let app = app.clone();
                    let owner = owner.clone();
                    tokio::spawn(async move {
                        run_job(&app, &owner, job).await;
                        drop(slot);
                        app.job_queued.notify_one();
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %chain(&e), "cannot claim jobs");
                    break;
                }
            }
        }
        tokio::select! {
            () = app.job_queued.notified() => {}
            () = tokio::time::sleep(POLL) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

async fn run_job(app: &AppState, owner: &str, job: JobRecord) {
    tracing::info!(job = %job.id, kind = %job.kind, attempt = job.attempts, "job started");
    let renewal = {
        let app = app.clone();
        let (owner, id) = (owner.to_owned(), job.id);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE / 3).await;
                match app.store.renew_lease(id, &owner, lease_until()).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(job = %id, "lost the lease on a running job");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(job = %id, error = %chain(&e), "cannot renew a job lease");
                    }
                }
            }
        })
    };
    let progress = JobProgress::start(app.clone(), &job, owner);
    let (outcome, vm_outcome) = execute(app, &job, &progress).await;
    progress.finish().await;
    renewal.abort();
    match app
        .store
        .finish_job(&job, owner, &outcome, vm_outcome, app.clock.now_millis())
        .await
    {
        Ok(()) => match &outcome {
            JobOutcome::Succeeded => {
                tracing::info!(job = %job.id, kind = %job.kind, "job succeeded");
            }
            JobOutcome::Failed(why) => {
                tracing::warn!(job = %job.id, kind = %job.kind, error = %why, "job failed");
            }
        },
        Err(StoreError::Stale(_)) => {
            tracing::warn!(job = %job.id, "another worker took this job over; its result stands");
        }
        Err(e) => {
            tracing::error!(job = %job.id, error = %chain(&e), "cannot record a job's outcome");
        }
    }
}

async fn execute(
    app: &App,
    job: &JobRecord,
    progress: &JobProgress,
) -> (JobOutcome, Option<VmOutcome>) {
    let failed = |why: String| (JobOutcome::Failed(why), None);
    let Some(vm_id) = job.vm_id else {
        return failed("the job names no VM".into());
    };
    let vm = match app.store.vm(vm_id).await {
        Ok(Some(vm)) => vm,
        Ok(None) => return failed("the VM no longer exists".into()),
        Err(e) => return failed(chain(&e)),
    };
    let driver = match app.nodes.get(&vm.node) {
        Ok(driver) => driver,
        Err(e) => return failed(e.to_string()),
    };
    match job.kind {
        JobKind::CreateVm => create(app, job, &vm, driver.as_ref(), progress).await,
        JobKind::DeleteVm => {
            progress.update(0.1, "stopping the VM and removing its files");
            match driver.delete(vm.id).await {
                Ok(()) => (JobOutcome::Succeeded, Some(VmOutcome::Remove)),
                Err(e) => {
                    let settled = observe(driver.as_ref(), &vm).await;
                    (
                        JobOutcome::Failed(chain(&e)),
                        Some(VmOutcome::Settle(settled)),
                    )
                }
            }
        }
        kind => {
            let result = power(driver.as_ref(), &vm, kind, &job.params, progress).await;
            let settled = observe(driver.as_ref(), &vm).await;
            let outcome = match result {
                Ok(()) => JobOutcome::Succeeded,
                Err(why) => JobOutcome::Failed(why),
            };
            (outcome, Some(VmOutcome::Settle(settled)))
        }
    }
}

async fn power(
    driver: &dyn Driver,
    vm: &VmRecord,
    kind: JobKind,
    params: &str,
    progress: &JobProgress,
) -> Result<(), String> {
    let result = match kind {
        JobKind::StartVm => {
            // The row is the source of truth: a start pushes what the node can apply.
            let can = driver.capabilities();
            if can.resize {
                progress.update(0.2, "applying the VM's resources");
                driver
                    .resize(vm.id, vm.resources)
                    .await
                    .map_err(|e| chain(&e))?;
            }
            if can.boot_media {
                driver
                    .set_boot_media(vm.id, vm.cdrom_iso_id, boot_order(vm))
                    .await
                    .map_err(|e| chain(&e))?;
            }
            progress.update(0.5, "starting");
            driver.start(vm.id).await
        }
        JobKind::StopVm => driver.stop(vm.id).await,
        JobKind::ShutdownVm => {
            let params: ShutdownParams =
                serde_json::from_str(params).map_err(|e| format!("bad job parameters: {e}"))?;
            progress.update(0.1, "waiting for the guest to power off");
            driver
                .shutdown(vm.id, Duration::from_secs(params.timeout_secs))
                .await
        }
        JobKind::ResetVm => driver.reset(vm.id).await,
        JobKind::SuspendVm => driver.suspend(vm.id).await,
        JobKind::ResumeVm => driver.resume(vm.id).await,
        JobKind::SnapshotVm | JobKind::RollbackVm | JobKind::DeleteSnapshot => {
            let params: SnapshotParams =
                serde_json::from_str(params).map_err(|e| format!("bad job parameters: {e}"))?;
            let name = &params.name;
            match kind {
                JobKind::SnapshotVm => {
                    progress.update(0.1, &format!("taking snapshot {name}"));
                    driver.snapshot_create(vm.id, name).await
                }
                JobKind::RollbackVm => {
                    progress.update(0.1, &format!("rolling back to {name}"));
                    driver.snapshot_rollback(vm.id, name).await
                }
                _ => {
                    progress.update(0.1, &format!("deleting snapshot {name}"));
                    driver.snapshot_delete(vm.id, name).await
                }
            }
        }
        JobKind::CreateVm | JobKind::DeleteVm => unreachable!("handled by execute"),
    };
    result.map_err(|e| chain(&e))
}

async fn create(
    app: &App,
    job: &JobRecord,
    vm: &VmRecord,
    driver: &dyn Driver,
    progress: &JobProgress,
) -> (JobOutcome, Option<VmOutcome>) {
    let attempt = async {
        if job.attempts > MAX_ATTEMPTS {
            return Err(format!("interrupted {} times", job.attempts - 1));
        }
        progress.update(0.05, "preparing");
        let mut def = definition(app, vm).await.map_err(|e| e.to_string())?;
        let params: CreateParams =
            serde_json::from_str(&job.params).map_err(|e| format!("bad job parameters: {e}"))?;
        def.cloud_init = params.cloud_init;
        driver
            .create(
                &def,
                &Scaled {
                    inner: progress,
                    from: 0.05,
                    to: 0.6,
                },
            )
            .await
            .map_err(|e| chain(&e))?;
        progress.update(0.6, "starting the VM");
        driver.start(vm.id).await.map_err(|e| chain(&e))?;
        progress.update(0.95, "started");
        Ok(())
    }
    .await;
    match attempt {
        Ok(()) => (
            JobOutcome::Succeeded,
            Some(VmOutcome::Settle(observe(driver, vm).await)),
        ),
        Err(why) => {
            tracing::warn!(vm = %vm.name, error = %why, "create failed; rolling back");
            if let Err(e) = driver.delete(vm.id).await {
                // The row stays so the leftovers are visible and can be deleted.
                let why = format!("{why}; rolling back failed too: {}", chain(&e));
                return (
                    JobOutcome::Failed(why),
                    Some(VmOutcome::Settle(VmState::Stopped)),
                );
            }
            (
                JobOutcome::Failed(format!("{why}; the VM was rolled back")),
                Some(VmOutcome::Remove),
            )
        }
    }
}

/// The driver's view of a VM row: its resources, and its boot media by identity.
async fn definition(app: &App, vm: &VmRecord) -> Result<VmDefinition, ApiError> {
    let boot = match (vm.template_id, vm.iso_id) {
        (Some(id), _) => {
            let template = app
                .store
                .template(id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("template {id} is gone")))?;
            match template.on_node {
                Some(kept) => BootMedia::NodeTemplate {
                    reference: kept.reference,
                },
                None => BootMedia::Template {
                    id,
                    format: template.disk_format,
                    direct_boot: template.kernel_sha256.as_ref().map(|_| DirectBoot {
                        initrd: template.initrd_sha256.is_some(),
                        cmdline: template.cmdline,
                    }),
                },
            }
        }
        (None, Some(id)) => BootMedia::Iso { id },
        (None, None) => {
            return Err(ApiError::internal(anyhow::anyhow!(
                "VM {} has no boot media",
                vm.id
            )));
        }
    };
    Ok(VmDefinition {
        id: vm.id,
        name: vm.name.clone(),
        resources: vm.resources,
        // An installer ISO boots first, a template's disk otherwise (as before boot orders).
        boot_order: boot_order(vm),
        boot,
        cloud_init: None,
        cdrom: vm.cdrom_iso_id,
        owner: Some(vm.owner.clone()),
    })
}

/// The VM's state as its node reports it now.
async fn observe(driver: &dyn Driver, vm: &VmRecord) -> VmState {
    match driver.status(vm.id).await {
        Ok(power) => power.into(),
        Err(DriverError::NotFound(_)) => VmState::Stopped,
        Err(e) => {
            tracing::warn!(vm = %vm.name, error = %chain(&e), "cannot read VM status");
            VmState::Unknown
        }
    }
}

/// Records a job's progress in the store, keeping only the latest value while a write is
/// in flight, so a chatty driver never slows down.
struct JobProgress {
    latest: watch::Sender<Option<(f32, String)>>,
    writer: tokio::task::JoinHandle<()>,
}

impl JobProgress {
    fn start(app: AppState, job: &JobRecord, owner: &str) -> Self {
        let (latest, mut changes) = watch::channel(None::<(f32, String)>);
        let (id, owner) = (job.id, owner.to_owned());
        let writer = tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let Some((fraction, step)) = changes.borrow_and_update().clone() else {
                    continue;
                };
                if let Err(e) = app
                    .store
                    .set_job_progress(id, &owner, f64::from(fraction), &step)
                    .await
                {
                    tracing::warn!(job = %id, error = %chain(&e), "cannot record job progress");
                }
            }
        });
        Self { latest, writer }
    }

    async fn finish(self) {
        drop(self.latest);
        let _ = self.writer.await;
    }
}

impl Progress for JobProgress {
    fn update(&self, fraction: f32, step: &str) {
        self.latest.send_replace(Some((fraction, step.to_owned())));
    }
}

/// Maps a driver's 0..1 progress into a slice of the job's.
struct Scaled<'a> {
    inner: &'a dyn Progress,
    from: f32,
    to: f32,
}

impl Progress for Scaled<'_> {
    fn update(&self, fraction: f32, step: &str) {
        self.inner.update(
            self.from + (self.to - self.from) * fraction.clamp(0.0, 1.0),
            step,
        );
    }
}
