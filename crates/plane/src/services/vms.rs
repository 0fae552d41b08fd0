//! VM operations as users ask for them.
//!
//! Every request is checked completely (fields, ownership, template, state) before anything
//! is written, and what is written is one transaction: the VM row and its job together, or
//! the VM taken for a job together with that job. Nothing touches a hypervisor here; jobs do
//! that (see [`crate::services::jobs`]).

use porthole_api::{
    CreateVmRequest, CreateVmResponse, GuestLogin, Job, UpdateVmRequest, Vm, VmSnapshot,
};
use porthole_core::spec::gib_to_hold;
use porthole_core::{Action, JobId, JobKind, Resources, Usage, UserId, VmId, VmName, VmState};
use porthole_core::{BootOrder, CloudInit, SnapshotName};
use porthole_store::jobs::{JobRecord, NewJob};
use porthole_store::quotas::QuotaRequest;
use porthole_store::vms::VmRecord;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::clock::from_millis;
use crate::error::ApiError;
use crate::services::audit::{self, Target};
use crate::services::caller::Caller;
use crate::services::placement;
use crate::services::ssh_keys;
use crate::services::tokens::random_password;

/// Parameters of a shutdown job.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ShutdownParams {
    /// Seconds the guest gets to power off before the plug is pulled.
    pub timeout_secs: u64,
}

/// Parameters of a snapshot, rollback or snapshot-delete job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotParams {
    /// The snapshot.
    pub name: SnapshotName,
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
        expiry_exempt: vm.expiry_exempt,
        cdrom: vm.cdrom_iso_name.clone(),
        boot_order: boot_order(vm),
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

/// VM `id` as the API shows it, if the caller may see it.
pub async fn show(app: &App, caller: &Caller, id: VmId) -> Result<Vm, ApiError> {
    Ok(vm_to_wire(&visible_vm(app, caller, id).await?))
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
    let detail = format!(
        "from={} cores={} memory_mib={} disk_gib={}",
        request
            .template
            .as_deref()
            .or(request.iso.as_deref())
            .unwrap_or("-"),
        request.cores,
        request.memory_mib,
        request.disk_gib
    );
    let name = request.name.clone();
    let result = create_vm(app, caller, request).await;
    let target = match &result {
        Ok(created) => Target::new("vm", created.vm.id, &created.vm.name),
        Err(_) => Target::named("vm", name),
    };
    audit::recorded(
        app,
        caller.into(),
        "vm.create",
        Some(target),
        Some(detail),
        result,
    )
    .await
}

async fn create_vm(
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
    let mut node = None;
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
            let template = app
                .store
                .template_by_name(template)
                .await?
                .filter(|t| t.approved || caller.is_admin())
                .ok_or_else(|| {
                    ApiError::invalid(
                        "template",
                        format!(
                            "no {}template named {template:?}; see GET /api/v1/templates",
                            approved_word(caller)
                        ),
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
            node = template.on_node.map(|kept| kept.node);
            (Some(template.id), None)
        }
        (None, Some(iso)) => (None, Some(usable_iso(app, caller, iso, "iso").await?)),
    };
    let node = match (node, request.node.clone()) {
        (_, Some(_)) if !caller.is_admin() => {
            return Err(ApiError::Forbidden(
                "node: only admins choose a VM's node; leave it out".into(),
            ));
        }
        (Some(kept), Some(pinned)) if kept != pinned => {
            return Err(ApiError::invalid(
                "node",
                format!("the template lives on node {kept:?}, so VMs made from it go there"),
            ));
        }
        (Some(kept), _) => kept,
        (None, Some(pinned)) => {
            placement::check_pinned(app, &pinned)?;
            pinned
        }
        (None, None) => placement::choose(app, resources).await?,
    };
    let guest = match template_id {
        Some(_) => Some(guest_setup(app, caller, &name, &request).await?),
        None if request.ssh_keys.as_ref().is_some_and(|k| !k.is_empty())
            || request.guest_user.is_some() =>
        {
            return Err(ApiError::invalid(
                "ssh_keys",
                "an ISO install sets up its own users; ssh_keys and guest_user need a template",
            ));
        }
        None => None,
    };
    let params = CreateParams {
        cloud_init: guest.as_ref().map(|(ci, _)| ci.clone()),
    };
    let now = app.clock.now_millis();
    let lifetime = i64::try_from(app.config.portal.vm_lifetime.as_millis()).unwrap_or(i64::MAX);
    let id = VmId::random();
    let job = NewJob {
        id: JobId::random(),
        kind: JobKind::CreateVm,
        vm_id: Some(id),
        requested_by: caller.user.id,
        params: serde_json::to_string(&params).map_err(ApiError::internal)?,
        created_at: now,
    };
    let record = VmRecord {
        id,
        name,
        owner_id: caller.user.id,
        owner: caller.user.username.clone(),
        node,
        state: VmState::Creating,
        resources,
        template_id,
        iso_id,
        template_name: request.template,
        iso_name: request.iso,
        job_id: Some(job.id),
        created_at: now,
        updated_at: now,
        expires_at: Some(now.saturating_add(lifetime)),
        expiry_exempt: false,
        cdrom_iso_id: None,
        cdrom_iso_name: None,
        boot_order: None,
    };
    let mut extra = Usage::default();
    extra.add(resources, true);
    app.store
        .insert_vm_with_job(&record, &job, Some(&quota(app, caller.user.id, extra)))
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
        guest_login: guest.map(|(_, login)| login),
    })
}

/// The ISO called `name`, if the caller may use it (admins: any; members: approved ones);
/// `field` is blamed otherwise.
async fn usable_iso(
    app: &App,
    caller: &Caller,
    name: &str,
    field: &'static str,
) -> Result<porthole_core::IsoId, ApiError> {
    app.store
        .iso_by_name(name)
        .await?
        .filter(|i| i.approved || caller.is_admin())
        .map(|i| i.id)
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                format!(
                    "no {}ISO named {name:?}; see GET /api/v1/isos",
                    approved_word(caller)
                ),
            )
        })
}

/// "approved " for members, who may use only approved images; nothing for admins.
fn approved_word(caller: &Caller) -> &'static str {
    if caller.is_admin() { "" } else { "approved " }
}

/// Parameters of a create job.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CreateParams {
    /// What cloud-init sets up in the guest, for template VMs.
    #[serde(default)]
    pub cloud_init: Option<CloudInit>,
}

/// The cloud-init setup of a new template VM: the requested user (or the owner's name), a
/// fresh random password (only its SHA-512 crypt hash is kept), and the request's keys plus
/// those on the owner's profile.
async fn guest_setup(
    app: &App,
    caller: &Caller,
    name: &VmName,
    request: &CreateVmRequest,
) -> Result<(CloudInit, GuestLogin), ApiError> {
    let user = match &request.guest_user {
        Some(user) => user.clone(),
        None if CloudInit::is_valid_user(&caller.user.username) => caller.user.username.clone(),
        None => "porthole".to_owned(),
    };
    let mut keys: Vec<String> = Vec::new();
    for key in request.ssh_keys.iter().flatten() {
        keys.push(ssh_keys::parse(key, "ssh_keys")?.line);
    }
    for key in app.store.ssh_keys(caller.user.id).await? {
        if !keys.contains(&key.public_key) {
            keys.push(key.public_key);
        }
    }
    let password = random_password();
    let hash = tokio::task::spawn_blocking({
        let password = password.clone();
        move || crypt_sha512(&password)
    })
    .await
    .map_err(ApiError::internal)??;
    let cloud_init = CloudInit {
        hostname: name.to_string(),
        user: user.clone(),
        password_hash: hash,
        ssh_keys: keys,
    };
    cloud_init.validate().map_err(|e| match e.field.as_ref() {
        "cloud_init.user" => ApiError::invalid("guest_user", e.problem),
        "cloud_init.ssh_keys" => ApiError::invalid("ssh_keys", e.problem),
        _ => ApiError::Invalid(e),
    })?;
    let login = GuestLogin {
        user,
        password,
        ssh_keys: cloud_init.ssh_keys.len(),
    };
    Ok((cloud_init, login))
}

/// The SHA-512 crypt hash of `password` with a random 16-character salt, as crypt(3) reads
/// it.
fn crypt_sha512(password: &str) -> Result<String, ApiError> {
    use sha_crypt::{PasswordHasher, ShaCrypt};
    let mut salt = [0u8; 12];
    rand::fill(&mut salt);
    ShaCrypt::SHA512
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| ApiError::internal(anyhow::anyhow!("hashing the guest password: {e}")))
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
    let result = queue_action(app, caller, id, action).await;
    audited(app, caller, id, &format!("vm.{action}"), &result, None).await;
    result
}

/// Records `action` on VM `id` in the audit log, naming the VM if the caller may see it.
async fn audited<T>(
    app: &App,
    caller: &Caller,
    id: VmId,
    action: &str,
    result: &Result<T, ApiError>,
    detail: Option<String>,
) {
    let name = match visible_vm(app, caller, id).await {
        Ok(vm) => vm.name.to_string(),
        Err(_) => String::new(),
    };
    audit::record(
        app,
        caller.into(),
        action,
        Some(Target::new("vm", id, name)),
        result,
        detail,
    )
    .await;
}

async fn queue_action(
    app: &App,
    caller: &Caller,
    id: VmId,
    action: Action,
) -> Result<Job, ApiError> {
    let vm = visible_vm(app, caller, id).await?;
    let job = queue_job(app, &vm, action, caller.user.id).await?;
    tracing::info!(vm = %vm.name, %action, by = %caller.user.username, "VM action queued");
    Ok(job)
}

/// Queues the job that carries out `action` on `vm` for `requested_by`, if no job holds the
/// VM, its state allows the action, and (for a start) its owner's quota admits it.
pub async fn queue_job(
    app: &App,
    vm: &VmRecord,
    action: Action,
    requested_by: UserId,
) -> Result<Job, ApiError> {
    let params = match action {
        Action::Shutdown => serde_json::to_string(&ShutdownParams {
            timeout_secs: app.config.shutdown_timeout.as_secs(),
        })
        .map_err(ApiError::internal)?,
        _ => "{}".into(),
    };
    queue_job_with(app, vm, action, requested_by, params).await
}

/// [`queue_job`] with the job's parameters.
async fn queue_job_with(
    app: &App,
    vm: &VmRecord,
    action: Action,
    requested_by: UserId,
    params: String,
) -> Result<Job, ApiError> {
    app.nodes.get_online(&vm.node)?;
    refuse_if_busy(vm)?;
    let after = vm.state.after(action)?;
    let kind = JobKind::for_action(action)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("{action} has no job kind")))?;
    // Only delete shows while its job runs; other actions show the state they start from.
    let holding = if action == Action::Delete {
        after
    } else {
        vm.state
    };
    let job = NewJob {
        id: JobId::random(),
        kind,
        vm_id: Some(vm.id),
        requested_by,
        params,
        created_at: app.clock.now_millis(),
    };
    // A start makes the VM's cores and memory count; nothing else adds to usage.
    let quota = (action == Action::Start).then(|| {
        let mut extra = Usage::default();
        extra.add(
            Resources {
                disk_gib: 0,
                ..vm.resources
            },
            true,
        );
        quota(app, vm.owner_id, extra)
    });
    app.store
        .queue_vm_job(vm.id, vm.state, holding, &job, quota.as_ref())
        .await?;
    app.job_queued.notify_one();
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
    let detail = serde_json::to_string(&request).ok();
    let result = update_vm(app, caller, id, request).await;
    audited(app, caller, id, "vm.update", &result, detail).await;
    result
}

async fn update_vm(
    app: &App,
    caller: &Caller,
    id: VmId,
    request: UpdateVmRequest,
) -> Result<Vm, ApiError> {
    let vm = visible_vm(app, caller, id).await?;
    if request.cores.is_none()
        && request.memory_mib.is_none()
        && request.disk_gib.is_none()
        && request.expiry_exempt.is_none()
        && request.cdrom.is_none()
        && request.boot_order.is_none()
    {
        return Err(ApiError::invalid(
            "cores",
            "give at least one of cores, memory_mib, disk_gib, expiry_exempt, cdrom and boot_order",
        ));
    }
    let cdrom = match request.cdrom.as_deref() {
        None => vm.cdrom_iso_id,
        Some("") => None,
        Some(name) => Some(usable_iso(app, caller, name, "cdrom").await?),
    };
    let order = request.boot_order.or(vm.boot_order);
    if order == Some(BootOrder::Cdrom) && cdrom.is_none() && vm.iso_id.is_none() {
        return Err(ApiError::invalid(
            "boot_order",
            "cdrom needs an ISO in the drive; set cdrom too",
        ));
    }
    if request.expiry_exempt.is_some() && !caller.is_admin() {
        return Err(ApiError::Forbidden(
            "expiry_exempt: only admins exempt VMs from expiry; renew it instead".into(),
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
    let can = app.nodes.get(&vm.node)?.capabilities();
    if new != old && !can.resize {
        return Err(ApiError::unsupported("resizing"));
    }
    if new.disk_gib != old.disk_gib && vm.state != VmState::Stopped && !can.live_disk_growth {
        return Err(ApiError::unsupported("growing the disk of a VM that runs"));
    }
    if (cdrom, order) != (vm.cdrom_iso_id, vm.boot_order) && !can.boot_media {
        return Err(ApiError::unsupported("changing boot media"));
    }
    if new != old {
        change_resources(app, &vm, new).await?;
    }
    if (cdrom, order) != (vm.cdrom_iso_id, vm.boot_order) {
        // Like cores and memory, the media take effect at the next start, which pushes
        // the row to the node.
        app.store
            .set_vm_media(vm.id, cdrom, order, app.clock.now_millis())
            .await?;
        tracing::info!(vm = %vm.name, "VM boot media changed");
    }
    if let Some(exempt) = request.expiry_exempt {
        app.store
            .set_vm_exempt(vm.id, exempt, app.clock.now_millis())
            .await?;
        tracing::info!(vm = %vm.name, exempt, by = %caller.user.username, "VM expiry exemption set");
    }
    reread(app, vm.id).await
}

/// Applies validated new resources to `vm`, within its owner's limits.
async fn change_resources(app: &App, vm: &VmRecord, new: Resources) -> Result<(), ApiError> {
    let old = vm.resources;
    // Cores and memory count once the VM starts (checked then, against everything else that
    // runs); here they must at least fit the limits on their own.
    let owner_is_admin = app
        .store
        .user_by_name(&vm.owner)
        .await?
        .is_some_and(|owner| owner.role == porthole_core::Role::Admin);
    let limits = app
        .store
        .limits(vm.owner_id, app.config.portal.default_limits)
        .await?;
    if !owner_is_admin {
        limits.admit(
            Usage::default(),
            Usage {
                cores: u64::from(new.cores),
                memory_mib: new.memory_mib,
                disk_gib: 0,
            },
        )?;
    }
    let extra = Usage {
        disk_gib: new.disk_gib - old.disk_gib,
        ..Usage::default()
    };
    let now = app.clock.now_millis();
    // The row is the source of truth: every start pushes it to the node, so only a disk that
    // grows needs the node now.
    app.store
        .update_vm_resources(
            vm.id,
            vm.state,
            new,
            now,
            Some(&quota(app, vm.owner_id, extra)),
        )
        .await?;
    if new.disk_gib > old.disk_gib {
        let driver = app.nodes.get(&vm.node)?;
        if let Err(e) = driver.resize(vm.id, new).await {
            let reverted = Resources {
                disk_gib: old.disk_gib,
                ..new
            };
            app.store
                .update_vm_resources(vm.id, vm.state, reverted, now, None)
                .await?;
            return Err(e.into());
        }
    }
    tracing::info!(vm = %vm.name, cores = new.cores, memory_mib = new.memory_mib, disk_gib = new.disk_gib, "VM resources changed");
    Ok(())
}

/// What boots `vm` first: its chosen order, or its media's default.
pub fn boot_order(vm: &VmRecord) -> BootOrder {
    vm.boot_order.unwrap_or(if vm.iso_id.is_some() {
        BootOrder::Cdrom
    } else {
        BootOrder::Disk
    })
}

/// The snapshots of VM `id`.
pub async fn snapshots(app: &App, caller: &Caller, id: VmId) -> Result<Vec<VmSnapshot>, ApiError> {
    snapshots_of(app, &visible_vm(app, caller, id).await?).await
}

/// The snapshots `vm`'s node reports.
pub async fn snapshots_of(app: &App, vm: &VmRecord) -> Result<Vec<VmSnapshot>, ApiError> {
    if matches!(vm.state, VmState::Creating | VmState::Deleting) {
        return Ok(Vec::new());
    }
    let driver = app.nodes.get(&vm.node)?;
    if !driver.capabilities().snapshots {
        return Err(ApiError::unsupported("snapshots"));
    }
    Ok(driver
        .snapshots(vm.id)
        .await?
        .into_iter()
        .map(|s| VmSnapshot {
            includes_memory: s.vm_state_size > 0,
            name: s.name,
            created_at: s.created_at,
        })
        .collect())
}

/// Queues a snapshot job: take (`Action::Snapshot`), roll back to, or delete snapshot
/// `name` of VM `id`.
pub async fn snapshot_job(
    app: &App,
    caller: &Caller,
    id: VmId,
    action: Action,
    name: &str,
) -> Result<Job, ApiError> {
    let result = queue_snapshot_job(app, caller, id, action, name).await;
    let audit_action = match action {
        Action::Snapshot => "vm.snapshot",
        Action::Rollback => "vm.rollback",
        _ => "vm.delete_snapshot",
    };
    audited(
        app,
        caller,
        id,
        audit_action,
        &result,
        Some(name.to_owned()),
    )
    .await;
    result
}

async fn queue_snapshot_job(
    app: &App,
    caller: &Caller,
    id: VmId,
    action: Action,
    name: &str,
) -> Result<Job, ApiError> {
    let field = if action == Action::Snapshot {
        "name"
    } else {
        "snapshot"
    };
    let name = SnapshotName::parse(name).map_err(|e| ApiError::invalid(field, e.problem))?;
    let vm = visible_vm(app, caller, id).await?;
    vm.state.after(action)?;
    let existing = snapshots_of(app, &vm).await?;
    let exists = existing.iter().any(|s| s.name == name.as_str());
    match action {
        Action::Snapshot if exists => {
            return Err(ApiError::conflict(
                Some("name"),
                format!(
                    "name: {} has a snapshot called {name:?} already",
                    vm.name,
                    name = name.as_str()
                ),
            ));
        }
        Action::Rollback | Action::DeleteSnapshot if !exists => {
            return Err(ApiError::NotFound(format!(
                "{} has no snapshot called {:?}",
                vm.name,
                name.as_str()
            )));
        }
        Action::Rollback => {
            let with_memory = existing
                .iter()
                .any(|s| s.name == name.as_str() && s.includes_memory);
            if vm.state == VmState::Running && !with_memory {
                return Err(ApiError::conflict(
                    None,
                    format!(
                        "snapshot {:?} holds no memory, so a running VM cannot go back to it; stop {} first",
                        name.as_str(),
                        vm.name
                    ),
                ));
            }
        }
        _ => {}
    }
    let params = serde_json::to_string(&SnapshotParams { name }).map_err(ApiError::internal)?;
    queue_job_with(app, &vm, action, caller.user.id, params).await
}

/// Pushes VM `id`'s expiry to a full lifetime from now.
pub async fn renew(app: &App, caller: &Caller, id: VmId) -> Result<Vm, ApiError> {
    let result = renew_vm(app, caller, id).await;
    let detail = result
        .as_ref()
        .ok()
        .and_then(|vm| vm.expires_at)
        .map(|at| format!("expires_at={}", at.to_rfc3339()));
    audited(app, caller, id, "vm.renew", &result, detail).await;
    result
}

async fn renew_vm(app: &App, caller: &Caller, id: VmId) -> Result<Vm, ApiError> {
    let vm = visible_vm(app, caller, id).await?;
    if vm.state == VmState::Deleting {
        return Err(ApiError::conflict(
            None,
            format!("VM {} is being deleted", vm.name),
        ));
    }
    let now = app.clock.now_millis();
    let lifetime = i64::try_from(app.config.portal.vm_lifetime.as_millis()).unwrap_or(i64::MAX);
    app.store
        .set_vm_expiry(vm.id, now.saturating_add(lifetime), now)
        .await?;
    tracing::info!(vm = %vm.name, by = %caller.user.username, "VM renewed");
    reread(app, vm.id).await
}

/// VM `id` as it is stored now.
async fn reread(app: &App, id: VmId) -> Result<Vm, ApiError> {
    let vm = app
        .store
        .vm(id)
        .await?
        .ok_or_else(|| ApiError::NotFound("VM not found".into()))?;
    Ok(vm_to_wire(&vm))
}

/// The recent output of the VM's serial console.
pub async fn console_output(app: &App, caller: &Caller, id: VmId) -> Result<Vec<u8>, ApiError> {
    let vm = visible_vm(app, caller, id).await?;
    if vm.state == VmState::Creating {
        return Ok(Vec::new());
    }
    let driver = app.nodes.get(&vm.node)?;
    if !driver.capabilities().console_output {
        return Err(ApiError::unsupported("serial console output"));
    }
    Ok(driver.console_output(vm.id).await?)
}

/// The quota check for a write that adds `extra` to `owner`'s usage.
fn quota(app: &App, owner: UserId, extra: Usage) -> QuotaRequest {
    QuotaRequest {
        user: owner,
        defaults: app.config.portal.default_limits,
        extra,
    }
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
