//! VM operations as users ask for them.
//!
//! Every request is checked completely (fields, ownership, template, state) before anything
//! is written, and what is written is one transaction: the VM row and its job together, or
//! the VM taken for a job together with that job. Nothing touches a hypervisor here; jobs do
//! that (see [`crate::services::jobs`]).

use porthole_api::{CreateVmRequest, CreateVmResponse, Job, UpdateVmRequest, Vm};
use porthole_core::spec::gib_to_hold;
use porthole_core::{Action, JobId, JobKind, Resources, VmId, VmName, VmState};
use porthole_store::jobs::{JobRecord, NewJob};
use porthole_store::vms::VmRecord;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::error::ApiError;
use crate::extract::Caller;
use crate::services::auth::from_millis;

/// Parameters of a shutdown job.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ShutdownParams {
    /// Seconds the guest gets to power off before the plug is pulled.
    pub timeout_secs: u64,
}

/// A VM as the API shows it.
pub fn vm_to_wire(vm: &VmRecord) -> Vm {
    Vm {
        id: vm.id,
        name: vm.name.to_string(),
        node: vm.node.clone(),
        state: vm.state,
        cores: vm.resources.cores,
        memory_mib: vm.resources.memory_mib,
        disk_gib: vm.resources.disk_gib,
        owner: vm.owner.clone(),
        expires_at: vm.expires_at.map(from_millis),
        template: vm.template_name.clone(),
        iso: vm.iso_name.clone(),
        job: vm.job_id,
        created_at: from_millis(vm.created_at),
    }
}

/// A job as the API shows it.
pub fn job_to_wire(job: &JobRecord) -> Job {
    Job {
        id: job.id,
        kind: job.kind,
        state: job.state,
        progress: job.progress,
        step: job.step.clone(),
        error: job.error.clone(),
        vm: job.vm_id,
        created_at: from_millis(job.created_at),
        finished_at: job.finished_at.map(from_millis),
    }
}

/// Parses a VM id from a URL path. Anything that is not an id cannot name a VM.
pub fn parse_vm_id(text: &str) -> Result<VmId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::NotFound(format!("no VM has the id {text:?}")))
}

/// The VM `id`, if the caller may see it. Another user's VM is reported as missing, so ids
/// cannot be probed.
pub async fn visible_vm(app: &App, caller: &Caller, id: VmId) -> Result<VmRecord, ApiError> {
    match app.store.vm(id).await? {
        Some(vm) if caller.is_admin() || vm.owner_id == caller.user.id => Ok(vm),
        _ => Err(ApiError::NotFound(format!(
            "no VM with id {id} is visible to you"
        ))),
    }
}

/// The caller's VMs; every VM for an admin.
pub async fn list(app: &App, caller: &Caller) -> Result<Vec<Vm>, ApiError> {
    let owner = (!caller.is_admin()).then_some(caller.user.id);
    Ok(app.store.vms(owner).await?.iter().map(vm_to_wire).collect())
}

/// Validates `request`, then records the VM and queues the job that creates and boots it.
pub async fn create(
    app: &App,
    caller: &Caller,
    request: CreateVmRequest,
) -> Result<CreateVmResponse, ApiError> {
    let name = VmName::parse(&request.name)?;
    let resources = Resources {
        cores: request.cores,
        memory_mib: request.memory_mib,
        disk_gib: request.disk_gib,
    };
    resources.validate()?;
    if request
        .ssh_keys
        .as_ref()
        .is_some_and(|keys| !keys.is_empty())
    {
        return Err(ApiError::invalid(
            "ssh_keys",
            "key injection needs cloud-init, which this version does not do yet; leave ssh_keys out",
        ));
    }
    let (template_id, iso_id) = match (&request.template, &request.iso) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "iso",
                "give either a template or an iso, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "template",
                "give a template (or an iso) to boot from",
            ));
        }
        (Some(template), None) => {
            let template = app.store.template_by_name(template).await?.ok_or_else(|| {
                ApiError::invalid(
                    "template",
                    format!("no template named {template:?}; see GET /api/v1/templates"),
                )
            })?;
            if resources.disk_bytes() < template.virtual_size {
                return Err(ApiError::invalid(
                    "disk_gib",
                    format!(
                        "must be at least {} to hold template {:?} ({} bytes)",
                        gib_to_hold(template.virtual_size),
                        template.name,
                        template.virtual_size
                    ),
                ));
            }
            (Some(template.id), None)
        }
        (None, Some(iso)) => {
            let iso = app.store.iso_by_name(iso).await?.ok_or_else(|| {
                ApiError::invalid("iso", format!("no ISO named {iso:?}; see GET /api/v1/isos"))
            })?;
            (None, Some(iso.id))
        }
    };
    let now = app.clock.now_millis();
    let id = VmId::random();
    let job = NewJob {
        id: JobId::random(),
        kind: JobKind::CreateVm,
        vm_id: Some(id),
        requested_by: caller.user.id,
        params: "{}".into(),
        created_at: now,
    };
    let record = VmRecord {
        id,
        name,
        owner_id: caller.user.id,
        owner: caller.user.username.clone(),
        node: app.nodes.place().to_owned(),
        state: VmState::Creating,
        resources,
        template_id,
        iso_id,
        template_name: request.template,
        iso_name: request.iso,
        job_id: Some(job.id),
        created_at: now,
        updated_at: now,
        expires_at: None,
    };
    app.store
        .insert_vm_with_job(&record, &job)
        .await
        .map_err(|e| match ApiError::from(e) {
            ApiError::Conflict { field: Some(f), .. } if f == "name" => ApiError::conflict(
                Some("name"),
                format!(
                    "name: a VM called {:?} exists already; choose another",
                    record.name.as_str()
                ),
            ),
            other => other,
        })?;
    app.job_queued.notify_one();
    tracing::info!(vm = %record.name, id = %id, owner = %record.owner, "VM create queued");
    let job = queued_job(app, job.id).await?;
    Ok(CreateVmResponse {
        vm: vm_to_wire(&record),
        job,
    })
}

/// Parses a power action's name from a URL.
pub fn parse_action(name: &str) -> Result<Action, ApiError> {
    Ok(match name {
        "start" => Action::Start,
        "stop" => Action::Stop,
        "shutdown" => Action::Shutdown,
        "reset" => Action::Reset,
        "suspend" => Action::Suspend,
        "resume" => Action::Resume,
        other => {
            return Err(ApiError::NotFound(format!(
                "unknown action {other:?}; use start, stop, shutdown, reset, suspend or resume"
            )));
        }
    })
}

/// Queues the job that carries out `action` on VM `id`, if its state allows it now.
pub async fn act(app: &App, caller: &Caller, id: VmId, action: Action) -> Result<Job, ApiError> {
    let vm = visible_vm(app, caller, id).await?;
    refuse_if_busy(&vm)?;
    let after = vm.state.after(action)?;
    let kind = JobKind::for_action(action)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("{action} has no job kind")))?;
    // Only delete shows while its job runs; other actions show the state they start from.
    let holding = if action == Action::Delete {
        after
    } else {
        vm.state
    };
    let params = match action {
        Action::Shutdown => serde_json::to_string(&ShutdownParams {
            timeout_secs: app.config.shutdown_timeout.as_secs(),
        })
        .map_err(ApiError::internal)?,
        _ => "{}".into(),
    };
    let job = NewJob {
        id: JobId::random(),
        kind,
        vm_id: Some(vm.id),
        requested_by: caller.user.id,
        params,
        created_at: app.clock.now_millis(),
    };
    app.store
        .queue_vm_job(vm.id, vm.state, holding, &job)
        .await?;
    app.job_queued.notify_one();
    tracing::info!(vm = %vm.name, %action, by = %caller.user.username, "VM action queued");
    queued_job(app, job.id).await
}

/// Changes a VM's resources. Cores and memory need the VM stopped and take effect at its
/// next start; the disk grows at once, even while the guest runs.
pub async fn update(
    app: &App,
    caller: &Caller,
    id: VmId,
    request: UpdateVmRequest,
) -> Result<Vm, ApiError> {
    let vm = visible_vm(app, caller, id).await?;
    if request.cores.is_none() && request.memory_mib.is_none() && request.disk_gib.is_none() {
        return Err(ApiError::invalid(
            "cores",
            "give at least one of cores, memory_mib and disk_gib",
        ));
    }
    let old = vm.resources;
    let new = Resources {
        cores: request.cores.unwrap_or(old.cores),
        memory_mib: request.memory_mib.unwrap_or(old.memory_mib),
        disk_gib: request.disk_gib.unwrap_or(old.disk_gib),
    };
    new.validate()?;
    if new.disk_gib < old.disk_gib {
        return Err(ApiError::invalid(
            "disk_gib",
            format!("disks can only grow; this one has {} GiB", old.disk_gib),
        ));
    }
    refuse_if_busy(&vm)?;
    if (new.cores, new.memory_mib) != (old.cores, old.memory_mib) {
        vm.state.after(Action::Reconfigure)?;
    }
    if new.disk_gib != old.disk_gib {
        vm.state.after(Action::GrowDisk)?;
    }
    if new == old {
        return Ok(vm_to_wire(&vm));
    }
    let now = app.clock.now_millis();
    // The row is the source of truth: every start pushes it to the node, so only a disk that
    // grows needs the node now.
    app.store
        .update_vm_resources(vm.id, vm.state, new, now)
        .await?;
    if new.disk_gib > old.disk_gib {
        let driver = app.nodes.get(&vm.node)?;
        if let Err(e) = driver.resize(vm.id, new).await {
            let reverted = Resources {
                disk_gib: old.disk_gib,
                ..new
            };
            app.store
                .update_vm_resources(vm.id, vm.state, reverted, now)
                .await?;
            return Err(e.into());
        }
    }
    tracing::info!(vm = %vm.name, cores = new.cores, memory_mib = new.memory_mib, disk_gib = new.disk_gib, "VM resources changed");
    let updated = app
        .store
        .vm(vm.id)
        .await?
        .ok_or_else(|| ApiError::NotFound("VM not found".into()))?;
    Ok(vm_to_wire(&updated))
}

/// The recent output of the VM's serial console.
pub async fn console_output(app: &App, caller: &Caller, id: VmId) -> Result<Vec<u8>, ApiError> {
    let vm = visible_vm(app, caller, id).await?;
    if vm.state == VmState::Creating {
        return Ok(Vec::new());
    }
    let driver = app.nodes.get(&vm.node)?;
    Ok(driver.console_output(vm.id).await?)
}

fn refuse_if_busy(vm: &VmRecord) -> Result<(), ApiError> {
    match vm.job_id {
        Some(job) if vm.state != VmState::Creating && vm.state != VmState::Deleting => {
            Err(ApiError::conflict(
                None,
                format!(
                    "VM {} is busy with job {job}; wait for it to finish",
                    vm.name
                ),
            ))
        }
        _ => Ok(()),
    }
}

async fn queued_job(app: &App, id: JobId) -> Result<Job, ApiError> {
    let job = app
        .store
        .job(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("job {id} not found")))?;
    Ok(job_to_wire(&job))
}
