//! `/nodes/{node}/qemu`: the VM list, creating a VM, and a VM's lifecycle: `status/current`,
//! the power actions under `status/` (each a task that drives the backend), `clone`, `resize`
//! and destroy. The config endpoints live in `qemu_config`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::ApiResult;
use super::checks::{check, check_vm, find_vm, node_exists};
use super::qemu_config::{is_config_key, validate_config_value};
use super::request::{Params, allow, flag, parse_bool, parse_vmid, require};
use crate::auth::Identity;
use crate::backend::PowerState;
use crate::error::ApiError;
use crate::state::{Sim, Vm, is_disk_key, parse_size};

/// Asks the backend for each VM's power state, so guests that died are seen stopped.
pub(super) async fn refresh(sim: &Sim, ids: &[u32]) {
    for &id in ids {
        if let Ok(state) = sim.backend.status(id).await {
            let mut st = sim.lock();
            if let Some(vm) = st.vms.get_mut(&id)
                && vm.status != PowerState::Stopped
                && state == PowerState::Stopped
            {
                vm.status = PowerState::Stopped;
                vm.started_at = None;
            }
        }
    }
}

fn status_word(s: PowerState) -> &'static str {
    if s == PowerState::Stopped {
        "stopped"
    } else {
        "running"
    }
}

pub(super) fn vm_summary(vm: &Vm, now: i64) -> Map<String, Value> {
    let running = vm.status != PowerState::Stopped;
    let maxmem = vm.memory_mib() << 20;
    let mut m = Map::new();
    m.insert("name".into(), json!(vm.name()));
    m.insert("status".into(), json!(status_word(vm.status)));
    m.insert("maxmem".into(), json!(maxmem));
    m.insert("mem".into(), json!(if running { maxmem / 3 } else { 0 }));
    m.insert("maxdisk".into(), json!(vm.disk_bytes()));
    m.insert("disk".into(), json!(0));
    m.insert("cpu".into(), json!(if running { 0.0123 } else { 0.0 }));
    m.insert(
        "uptime".into(),
        json!(vm.started_at.map_or(0, |t| (now - t).max(0))),
    );
    m.insert("netin".into(), json!(0));
    m.insert("netout".into(), json!(0));
    m.insert("diskread".into(), json!(0));
    m.insert("diskwrite".into(), json!(0));
    if vm.template {
        m.insert("template".into(), json!(1));
    }
    m
}

/// A VM as `/cluster/resources` lists it, and as a pool lists its members.
pub(super) fn vm_resource(vm: &Vm, now: i64) -> Map<String, Value> {
    let mut m = vm_summary(vm, now);
    m.insert("id".into(), json!(format!("qemu/{}", vm.vmid)));
    m.insert("type".into(), json!("qemu"));
    m.insert("vmid".into(), json!(vm.vmid));
    m.insert("node".into(), json!(vm.node));
    m.insert("maxcpu".into(), json!(vm.cpus()));
    m
}

/// Starts task `kind` on VM `vmid` for the caller; answers with its UPID.
pub(super) fn vm_task<F>(
    sim: &Arc<Sim>,
    who: &Identity,
    node: &str,
    kind: &str,
    vmid: u32,
    work: F,
) -> ApiResult
where
    F: Future<Output = Result<(), String>> + Send + 'static,
{
    Ok(json!(sim.spawn_task(
        node,
        kind,
        &vmid.to_string(),
        &who.authid(),
        work
    )))
}

pub(super) async fn list_qemu(sim: &Sim, who: &Identity, node: &str) -> ApiResult {
    node_exists(sim, node)?;
    let ids: Vec<u32> = sim
        .lock()
        .vms
        .values()
        .filter(|v| v.node == node)
        .map(|v| v.vmid)
        .collect();
    refresh(sim, &ids).await;
    let now = sim.clock.now();
    let st = sim.lock();
    let out = st
        .vms
        .values()
        .filter(|v| {
            v.node == node
                && st.access.has(
                    who,
                    &format!("/vms/{}", v.vmid),
                    v.pool.as_deref(),
                    "VM.Audit",
                )
        })
        .map(|vm| {
            let mut m = vm_summary(vm, now);
            // A variant real servers send: vmid as a string in this list.
            m.insert("vmid".into(), json!(vm.vmid.to_string()));
            m.insert("cpus".into(), json!(vm.cpus()));
            Value::Object(m)
        })
        .collect();
    Ok(Value::Array(out))
}

pub(super) async fn status_current(sim: &Sim, who: &Identity, node: &str, vmid: u32) -> ApiResult {
    find_vm(sim, node, vmid)?;
    check_vm(sim, who, vmid, "VM.Audit")?;
    refresh(sim, &[vmid]).await;
    let vm = find_vm(sim, node, vmid)?;
    let mut m = vm_summary(&vm, sim.clock.now());
    m.insert("vmid".into(), json!(vmid));
    m.insert("cpus".into(), json!(vm.cpus()));
    let qmp = match vm.status {
        PowerState::Stopped => "stopped",
        PowerState::Running => "running",
        PowerState::Paused => "paused",
    };
    m.insert("qmpstatus".into(), json!(qmp));
    m.insert("ha".into(), json!({"managed": 0}));
    if vm.status != PowerState::Stopped {
        m.insert("pid".into(), json!(40_000 + vmid));
        m.insert("running-qemu".into(), json!("9.0.2"));
        m.insert("running-machine".into(), json!("pc-i440fx-9.0+pve0"));
    }
    Ok(Value::Object(m))
}

fn set_status(sim: &Sim, vmid: u32, status: PowerState) {
    let now = sim.clock.now();
    let mut st = sim.lock();
    if let Some(vm) = st.vms.get_mut(&vmid) {
        if vm.status == PowerState::Stopped && status != PowerState::Stopped {
            vm.started_at = Some(now);
        }
        if status == PowerState::Stopped {
            vm.started_at = None;
        }
        vm.status = status;
    }
}

pub(super) fn power(
    sim: &Arc<Sim>,
    who: &Identity,
    node: &str,
    vmid: u32,
    action: &str,
    params: &Params,
) -> ApiResult {
    let vm = find_vm(sim, node, vmid)?;
    let (kind, known): (&str, &[&str]) = match action {
        "start" => (
            "qmstart",
            &[
                "skiplock",
                "stateuri",
                "migratedfrom",
                "migration_type",
                "migration_network",
                "machine",
                "timeout",
                "force-cpu",
                "targetstorage",
            ],
        ),
        "stop" => (
            "qmstop",
            &[
                "skiplock",
                "timeout",
                "keepActive",
                "migratedfrom",
                "overrule-shutdown",
            ],
        ),
        "shutdown" => (
            "qmshutdown",
            &["skiplock", "timeout", "forceStop", "keepActive"],
        ),
        "reset" => ("qmreset", &["skiplock"]),
        "suspend" => ("qmsuspend", &["skiplock", "todisk", "statestorage"]),
        "resume" => ("qmresume", &["skiplock", "nocheck"]),
        other => {
            return Err(ApiError::not_implemented(
                "POST",
                &format!("/nodes/{node}/qemu/{vmid}/status/{other}"),
            ));
        }
    };
    allow(params, known)?;
    check_vm(sim, who, vmid, "VM.PowerMgmt")?;
    match (action, vm.status) {
        ("start", PowerState::Running | PowerState::Paused) => {
            return Err(ApiError::internal(format!("VM {vmid} already running")));
        }
        ("shutdown" | "reset" | "suspend", PowerState::Stopped)
        | ("resume", PowerState::Stopped) => {
            return Err(ApiError::internal(format!("VM {vmid} not running")));
        }
        _ => {}
    }
    if vm.template && action == "start" {
        return Err(ApiError::internal(
            "you can't start a vm if it's a template",
        ));
    }
    let backend = Arc::clone(&sim.backend);
    let s = Arc::clone(sim);
    let action = action.to_owned();
    let work = async move {
        let result = match action.as_str() {
            "start" => backend.start(vmid).await.map(|()| PowerState::Running),
            "stop" | "shutdown" => backend.stop(vmid).await.map(|()| PowerState::Stopped),
            "reset" => match backend.stop(vmid).await {
                Ok(()) => backend.start(vmid).await.map(|()| PowerState::Running),
                Err(e) => Err(e),
            },
            "suspend" => backend.suspend(vmid).await.map(|()| PowerState::Paused),
            _ => backend.resume(vmid).await.map(|()| PowerState::Running),
        };
        match result {
            Ok(state) => {
                set_status(&s, vmid, state);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    };
    vm_task(sim, who, node, kind, vmid, work)
}

const CREATE_EXTRA: &[&str] = &[
    "vmid",
    "node",
    "pool",
    "start",
    "storage",
    "archive",
    "force",
    "unique",
    "live-restore",
];

pub(super) fn create_vm(sim: &Arc<Sim>, who: &Identity, node: &str, params: &Params) -> ApiResult {
    node_exists(sim, node)?;
    let vmid = parse_vmid(require(params, "vmid")?)?;
    let mut config = BTreeMap::new();
    for (k, v) in params {
        if CREATE_EXTRA.contains(&k.as_str()) {
            continue;
        }
        if !is_config_key(k) {
            return Err(ApiError::param(
                k,
                "property is not defined in schema and the schema does not allow additional properties",
            ));
        }
        config.insert(k.clone(), validate_config_value(k, v)?);
    }
    let pool = params.get("pool").cloned();
    check_allocate(sim, who, pool.as_deref(), vmid)?;
    for (k, v) in &config {
        if is_disk_key(k) && !v.contains("media=cdrom") {
            let storage = v.split(':').next().unwrap_or("local");
            check(
                sim,
                who,
                &format!("/storage/{storage}"),
                None,
                "Datastore.AllocateSpace",
            )?;
        }
    }
    let start = flag(params, "start")?;
    config
        .entry("memory".into())
        .or_insert_with(|| "512".into());
    config.entry("cores".into()).or_insert_with(|| "1".into());
    config.entry("sockets".into()).or_insert_with(|| "1".into());
    config
        .entry("smbios1".into())
        .or_insert_with(|| format!("uuid=00000000-0000-4000-8000-{vmid:012}"));
    let vm = Vm {
        vmid,
        node: node.to_owned(),
        pool,
        config,
        status: PowerState::Stopped,
        started_at: None,
        template: false,
    };
    insert_vm(sim, &vm)?;
    let backend = Arc::clone(&sim.backend);
    let s = Arc::clone(sim);
    let spec = vm.spec();
    let work = async move {
        backend
            .create(vmid, &spec)
            .await
            .map_err(|e| e.to_string())?;
        if start {
            backend.start(vmid).await.map_err(|e| e.to_string())?;
            set_status(&s, vmid, PowerState::Running);
        }
        Ok(())
    };
    vm_task(sim, who, node, "qmcreate", vmid, work)
}

/// Checks `VM.Allocate` for a new VM `vmid`: on its pool, which must exist, else on
/// `/vms/{vmid}`.
fn check_allocate(
    sim: &Sim,
    who: &Identity,
    pool: Option<&str>,
    vmid: u32,
) -> Result<(), ApiError> {
    match pool {
        Some(p) => {
            if !sim.lock().pools.contains_key(p) {
                return Err(ApiError::internal(format!("pool '{p}' does not exist")));
            }
            check(sim, who, &format!("/pool/{p}"), None, "VM.Allocate")
        }
        None => check(sim, who, &format!("/vms/{vmid}"), None, "VM.Allocate"),
    }
}

fn insert_vm(sim: &Sim, vm: &Vm) -> Result<(), ApiError> {
    let mut st = sim.lock();
    if let Some(existing) = st.vms.get(&vm.vmid) {
        return Err(ApiError::internal(format!(
            "unable to create VM {} - VM {} already exists on node '{}'",
            vm.vmid, vm.vmid, existing.node
        )));
    }
    st.vms.insert(vm.vmid, vm.clone());
    Ok(())
}

pub(super) fn clone_vm(
    sim: &Arc<Sim>,
    who: &Identity,
    node: &str,
    vmid: u32,
    params: &Params,
) -> ApiResult {
    allow(
        params,
        &[
            "newid",
            "name",
            "full",
            "pool",
            "target",
            "description",
            "storage",
            "format",
            "snapname",
            "bwlimit",
        ],
    )?;
    let src = find_vm(sim, node, vmid)?;
    let newid = parse_vmid(require(params, "newid")?)?;
    check_vm(sim, who, vmid, "VM.Clone")?;
    let pool = params.get("pool").cloned();
    check_allocate(sim, who, pool.as_deref(), newid)?;
    let target = params
        .get("target")
        .cloned()
        .unwrap_or_else(|| node.to_owned());
    node_exists(sim, &target)
        .map_err(|_| ApiError::param("target", format!("no such cluster node '{target}'")))?;
    let full = match params.get("full") {
        Some(v) => parse_bool("full", v)?,
        None => !src.template,
    };
    if !full && !src.template {
        return Err(ApiError::internal(
            "Linked clone feature is not supported for drive 'scsi0'",
        ));
    }
    if params.contains_key("storage") && !full {
        return Err(ApiError::param(
            "storage",
            "option is only allowed for full clones",
        ));
    }
    if let Some(name) = params.get("name") {
        validate_config_value("name", name)?;
    }
    let mut config = src.config.clone();
    config.insert(
        "name".into(),
        params
            .get("name")
            .cloned()
            .unwrap_or_else(|| format!("Copy-of-VM-{}", src.name())),
    );
    if let Some(d) = params.get("description") {
        config.insert("description".into(), d.clone());
    }
    for v in config
        .iter_mut()
        .filter(|(k, _)| is_disk_key(k))
        .map(|(_, v)| v)
    {
        *v = v.replace(&format!("vm-{vmid}-"), &format!("vm-{newid}-"));
    }
    let vm = Vm {
        vmid: newid,
        node: target,
        pool,
        config,
        status: PowerState::Stopped,
        started_at: None,
        template: false,
    };
    insert_vm(sim, &vm)?;
    let backend = Arc::clone(&sim.backend);
    let spec = vm.spec();
    let work = async move {
        backend
            .create(newid, &spec)
            .await
            .map_err(|e| e.to_string())
    };
    vm_task(sim, who, node, "qmclone", vmid, work)
}

pub(super) fn destroy_vm(
    sim: &Arc<Sim>,
    who: &Identity,
    node: &str,
    vmid: u32,
    params: &Params,
) -> ApiResult {
    allow(params, &["purge", "skiplock", "destroy-unreferenced-disks"])?;
    let vm = find_vm(sim, node, vmid)?;
    check_vm(sim, who, vmid, "VM.Allocate")?;
    if vm.status != PowerState::Stopped {
        return Err(ApiError::internal(format!(
            "VM {vmid} is running - destroy failed"
        )));
    }
    sim.lock().vms.remove(&vmid);
    let backend = Arc::clone(&sim.backend);
    let work = async move { backend.destroy(vmid).await.map_err(|e| e.to_string()) };
    vm_task(sim, who, node, "qmdestroy", vmid, work)
}

/// `PUT /nodes/{node}/qemu/{vmid}/resize`: grows a disk to `size` (`32G`) or by it
/// (`+4G`); shrinking is refused, as on PVE. Answers with the task's UPID (PVE 8 and later).
pub(super) fn resize_disk(
    sim: &Arc<Sim>,
    who: &Identity,
    node: &str,
    vmid: u32,
    params: &Params,
) -> ApiResult {
    allow(params, &["disk", "size", "digest", "skiplock"])?;
    find_vm(sim, node, vmid)?;
    check_vm(sim, who, vmid, "VM.Config.Disk")?;
    let disk = params
        .get("disk")
        .ok_or_else(|| ApiError::param("disk", "property is missing and it is not optional"))?;
    let size = params
        .get("size")
        .ok_or_else(|| ApiError::param("size", "property is missing and it is not optional"))?;
    let (relative, amount) = match size.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, size.as_str()),
    };
    let valid = amount.trim_end_matches(['K', 'M', 'G', 'T']);
    if valid.is_empty() || !valid.chars().all(|c| c.is_ascii_digit()) {
        return Err(ApiError::param(
            "size",
            "value does not match the regex pattern",
        ));
    }
    let mut st = sim.lock();
    let vm = st.vms.get_mut(&vmid).ok_or_else(|| {
        ApiError::internal(format!(
            "Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"
        ))
    })?;
    let value = vm
        .config
        .get(disk.as_str())
        .filter(|v| !v.contains("media=cdrom"))
        .cloned()
        .ok_or_else(|| ApiError::param("disk", format!("disk '{disk}' does not exist")))?;
    let current = value
        .split(',')
        .find_map(|p| p.strip_prefix("size="))
        .map(parse_size)
        .unwrap_or(0);
    let wanted = if relative {
        current + parse_size(amount)
    } else {
        parse_size(amount)
    };
    if wanted < current {
        return Err(ApiError::internal("shrinking disks is not supported"));
    }
    let resized: Vec<String> = value
        .split(',')
        .filter(|p| !p.starts_with("size="))
        .map(str::to_owned)
        .chain([format!("size={}G", wanted.div_ceil(1 << 30))])
        .collect();
    vm.config.insert(disk.clone(), resized.join(","));
    drop(st);
    vm_task(sim, who, node, "resize", vmid, async { Ok(()) })
}
