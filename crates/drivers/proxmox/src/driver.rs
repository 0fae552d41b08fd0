//! porthole's `Driver` for a Proxmox VE cluster, on top of [`Client`].
//!
//! - A porthole VM is a PVE VM tagged `porthole-<uuid>`: the tag, found through
//!   `/cluster/resources`, maps porthole's id to PVE's node and VMID, so nothing else has to
//!   remember the mapping and a VM moved between PVE nodes is still found.
//! - Create clones a PVE template VM (`BootMedia::NodeTemplate`, its VMID) onto the node with
//!   the most free memory (Proxstar's rule) unless one is pinned: a linked clone on the
//!   template's own node, a full clone elsewhere. The VM goes into a pool named after its
//!   owner, made on first use.
//! - Every change is a PVE task, followed to its end; `OK` and `WARNINGS: n` succeed.
//! - Consoles are opened through PVE's proxies ([`crate::console`]) and handed to the
//!   gateway as a connected stream: the PVE ticket and VNC password stay in porthole.

use std::time::Duration;

use async_trait::async_trait;
use porthole_core::driver::{
    BootMedia, ConsoleEndpoint, ConsoleKind, Driver, DriverError, PowerState, Progress,
    VmDefinition,
};
use porthole_core::node::{Capabilities, ImageHome, NodeKind};
use porthole_core::{Resources, VmId};

use crate::client::{Client, TaskWait};
use crate::console;
use crate::error::Error;
use crate::task::{TaskOutcome, Upid};
use crate::types::{
    CloneRequest, ClusterVm, CreatePoolRequest, NodeState, PowerAction, QemuConfigUpdate,
    VmRunState,
};

/// How long any one PVE task may take before the driver gives up on it.
const TASK_TIMEOUT: Duration = Duration::from_secs(600);

/// The tag that marks a PVE VM as porthole's VM `id`.
pub fn tag(id: VmId) -> String {
    format!("porthole-{id}")
}

/// Where a porthole VM lives in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Located {
    node: String,
    vmid: u32,
}

/// Drives VMs on one Proxmox VE cluster.
#[derive(Debug, Clone)]
pub struct ProxmoxDriver {
    client: Client,
    pinned_node: Option<String>,
}

impl ProxmoxDriver {
    /// A driver over `client`, placing new VMs on `pinned_node` if given, else on the node
    /// with the most free memory.
    pub fn new(client: Client, pinned_node: Option<String>) -> Self {
        Self {
            client,
            pinned_node,
        }
    }

    /// The PVE node and VMID of porthole's VM `id`, if the cluster has it.
    async fn locate(&self, id: VmId) -> Result<Option<Located>, DriverError> {
        let tag = tag(id);
        let vms = self
            .client
            .cluster_vms()
            .await
            .map_err(|e| failed("find the VM", e))?;
        Ok(vms
            .into_iter()
            .find(|vm| {
                vm.tags
                    .as_deref()
                    .is_some_and(|tags| tags.split([';', ',', ' ']).any(|t| t == tag))
            })
            .map(|vm| Located {
                node: vm.node,
                vmid: vm.vmid,
            }))
    }

    async fn require(&self, id: VmId) -> Result<Located, DriverError> {
        self.locate(id).await?.ok_or(DriverError::NotFound(id))
    }

    /// Follows `upid` to its end.
    async fn finish(&self, operation: &'static str, upid: Upid) -> Result<(), DriverError> {
        let wait = TaskWait {
            interval: Duration::from_millis(250),
            timeout: TASK_TIMEOUT,
        };
        match self.client.wait_task(&upid, wait).await {
            Ok(TaskOutcome::Ok | TaskOutcome::Warnings(_)) => Ok(()),
            Ok(TaskOutcome::Failed(message)) => Err(DriverError::failed(operation, message)),
            Err(e) => Err(failed(operation, e)),
        }
    }

    async fn power(
        &self,
        at: &Located,
        action: PowerAction,
        operation: &'static str,
    ) -> Result<(), DriverError> {
        let upid = self
            .client
            .power(&at.node, at.vmid, action)
            .await
            .map_err(|e| failed(operation, e))?;
        self.finish(operation, upid).await
    }

    /// What PVE says about the VM at `at`.
    async fn power_state(&self, at: &Located) -> Result<PowerState, DriverError> {
        let status = self
            .client
            .qemu_status(&at.node, at.vmid)
            .await
            .map_err(|e| failed("read the status", e))?;
        Ok(match status.status {
            VmRunState::Running if status.is_paused() => PowerState::Paused,
            VmRunState::Running => PowerState::Running,
            _ => PowerState::Stopped,
        })
    }

    /// Stops the VM at `at`, unless it is stopped.
    async fn stop_at(&self, at: &Located) -> Result<(), DriverError> {
        if self.power_state(at).await? == PowerState::Stopped {
            return Ok(());
        }
        self.power(at, PowerAction::Stop, "stop").await
    }

    /// The node new VMs go to.
    async fn placement(&self) -> Result<String, DriverError> {
        if let Some(node) = &self.pinned_node {
            return Ok(node.clone());
        }
        let nodes = self
            .client
            .nodes()
            .await
            .map_err(|e| failed("list nodes", e))?;
        nodes
            .into_iter()
            .filter(|n| n.status == NodeState::Online)
            .max_by_key(|n| n.free_memory().unwrap_or(0))
            .map(|n| n.node)
            .ok_or_else(|| DriverError::Unreachable("no Proxmox node is online".into()))
    }

    /// Grows the VM's boot disk to `gib` if it is smaller; PVE never shrinks disks.
    async fn grow_disk(&self, at: &Located, gib: u64) -> Result<(), DriverError> {
        let config = self
            .client
            .qemu_config(&at.node, at.vmid)
            .await
            .map_err(|e| failed("read the config", e))?;
        let Some((disk, value)) = [("scsi0", &config.scsi0), ("virtio0", &config.virtio0)]
            .into_iter()
            .find_map(|(key, value)| value.as_ref().map(|v| (key, v)))
        else {
            return Err(DriverError::failed(
                "grow the disk",
                "the VM has neither scsi0 nor virtio0",
            ));
        };
        let current = value
            .split(',')
            .find_map(|p| p.strip_prefix("size="))
            .map_or(0, size_bytes);
        if current >= gib << 30 {
            return Ok(());
        }
        let task = self
            .client
            .resize_disk(&at.node, at.vmid, disk, gib)
            .await
            .map_err(|e| failed("grow the disk", e))?;
        match task {
            Some(upid) => self.finish("grow the disk", upid).await,
            None => Ok(()),
        }
    }

    /// The template VM whose VMID is `reference`.
    async fn template(&self, reference: &str) -> Result<ClusterVm, DriverError> {
        let vmid: u32 = reference
            .parse()
            .map_err(|_| DriverError::BadImage(format!("{reference:?} is not a Proxmox VMID")))?;
        self.client
            .cluster_vms()
            .await
            .map_err(|e| failed("find the template", e))?
            .into_iter()
            .find(|vm| vm.vmid == vmid && vm.template)
            .ok_or_else(|| {
                DriverError::BadImage(format!(
                    "VMID {vmid} is not a template VM on this Proxmox cluster"
                ))
            })
    }

    /// Makes sure pool `pool` exists.
    async fn ensure_pool(&self, pool: &str) -> Result<(), DriverError> {
        let pools = self
            .client
            .pools()
            .await
            .map_err(|e| failed("list pools", e))?;
        if pools.iter().any(|p| p.poolid == pool) {
            return Ok(());
        }
        let request = CreatePoolRequest {
            poolid: pool.to_owned(),
            comment: Some("porthole: VMs of this user".into()),
        };
        match self.client.create_pool(&request).await {
            Ok(()) => Ok(()),
            // Made by someone else meanwhile.
            Err(e) if e.to_string().contains("already exists") => Ok(()),
            Err(e) => Err(failed("create the pool", e)),
        }
    }
}

/// A PVE size (`32G`, `512M`, bytes without a suffix) in bytes.
fn size_bytes(size: &str) -> u64 {
    let (digits, shift) = match size.as_bytes().last() {
        Some(b'K') => (&size[..size.len() - 1], 10),
        Some(b'M') => (&size[..size.len() - 1], 20),
        Some(b'G') => (&size[..size.len() - 1], 30),
        Some(b'T') => (&size[..size.len() - 1], 40),
        _ => (size, 0),
    };
    digits.parse::<u64>().map_or(0, |n| n << shift)
}

/// What a Proxmox node can do: its VMs are clones of its own template VMs; PVE grows disks
/// while they run; snapshots, CD-ROM changes and the serial log are not offered through
/// porthole yet.
pub const CAPABILITIES: Capabilities = Capabilities {
    images: ImageHome::Node,
    resize: true,
    live_disk_growth: true,
    snapshots: false,
    boot_media: false,
    consoles: &[ConsoleKind::Vnc, ConsoleKind::Serial],
    console_output: false,
};

/// A PVE failure as a driver error: unreachable and timed-out calls keep their retry
/// meaning; anything else is the hypervisor's refusal.
fn failed(operation: &'static str, error: Error) -> DriverError {
    match error {
        Error::Connect { .. } | Error::Transport { .. } => {
            DriverError::Unreachable(error.to_string())
        }
        Error::TaskTimeout { .. } => DriverError::Timeout {
            operation: operation.into(),
            seconds: TASK_TIMEOUT.as_secs(),
        },
        other => DriverError::hypervisor(operation, other),
    }
}

#[async_trait]
impl Driver for ProxmoxDriver {
    fn kind(&self) -> NodeKind {
        NodeKind::Proxmox
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn create(&self, def: &VmDefinition, progress: &dyn Progress) -> Result<(), DriverError> {
        let BootMedia::NodeTemplate { reference } = &def.boot else {
            return Err(DriverError::BadImage(
                "a Proxmox node clones its own template VMs; give the template's VMID".into(),
            ));
        };
        // A create is re-run after a crash: a VM already tagged is this one.
        if self.locate(def.id).await?.is_some() {
            return Ok(());
        }
        progress.update(0.05, "finding the template");
        let source = self.template(reference).await?;
        let template = source.vmid;
        let target = self.placement().await?;
        let pool = def.owner.clone();
        if let Some(pool) = &pool {
            self.ensure_pool(pool).await?;
        }
        progress.update(0.1, &format!("cloning template {template} onto {target}"));
        let (vmid, upid) = self
            .client
            .with_fresh_vmid(5, |vmid| {
                let mut request = CloneRequest::new(vmid);
                request.name = Some(def.name.to_string());
                request.pool = pool.clone();
                // A linked clone needs the template's node; elsewhere, copy the disks.
                request.full = Some(target != source.node);
                if target != source.node {
                    request.target = Some(target.clone());
                }
                let client = self.client.clone();
                let node = source.node.clone();
                async move {
                    client
                        .clone_qemu(&node, template, &request)
                        .await
                        .map(|u| (vmid, u))
                }
            })
            .await
            .map_err(|e| failed("clone", e))?;
        self.finish("clone", upid).await?;
        progress.update(0.7, "applying cores, memory and the porthole tag");
        let mut update = QemuConfigUpdate {
            cores: Some(def.resources.cores),
            memory: Some(def.resources.memory_mib),
            tags: Some(tag(def.id)),
            description: Some(format!("porthole VM {} ({})", def.name, def.id)),
            ..QemuConfigUpdate::default()
        };
        // The template's cloud-init drive gets the user, password hash and keys.
        if let Some(guest) = &def.cloud_init {
            update.ciuser = Some(guest.user.clone());
            update.cipassword =
                (!guest.password_hash.is_empty()).then(|| guest.password_hash.clone());
            update.sshkeys = (!guest.ssh_keys.is_empty())
                .then(|| QemuConfigUpdate::encode_ssh_keys(&guest.ssh_keys));
        }
        self.client
            .set_qemu_config(&target, vmid, &update)
            .await
            .map_err(|e| failed("configure", e))?;
        progress.update(0.85, "growing the disk");
        let at = Located { node: target, vmid };
        self.grow_disk(&at, def.resources.disk_gib).await
    }

    async fn start(&self, vm: VmId) -> Result<(), DriverError> {
        let at = self.require(vm).await?;
        if self.power_state(&at).await? == PowerState::Running {
            return Ok(());
        }
        self.power(&at, PowerAction::Start, "start").await
    }

    async fn stop(&self, vm: VmId) -> Result<(), DriverError> {
        self.stop_at(&self.require(vm).await?).await
    }

    async fn shutdown(&self, vm: VmId, timeout: Duration) -> Result<(), DriverError> {
        let at = self.require(vm).await?;
        if self.power_state(&at).await? == PowerState::Stopped {
            return Ok(());
        }
        let asked =
            tokio::time::timeout(timeout, self.power(&at, PowerAction::Shutdown, "shutdown")).await;
        if !matches!(asked, Ok(Ok(()))) || self.power_state(&at).await? != PowerState::Stopped {
            tracing::info!(%vm, "guest ignored ACPI shutdown; stopping it");
            return self.power(&at, PowerAction::Stop, "stop").await;
        }
        Ok(())
    }

    async fn reset(&self, vm: VmId) -> Result<(), DriverError> {
        self.power(&self.require(vm).await?, PowerAction::Reset, "reset")
            .await
    }

    async fn suspend(&self, vm: VmId) -> Result<(), DriverError> {
        self.power(&self.require(vm).await?, PowerAction::Suspend, "suspend")
            .await
    }

    async fn resume(&self, vm: VmId) -> Result<(), DriverError> {
        self.power(&self.require(vm).await?, PowerAction::Resume, "resume")
            .await
    }

    async fn delete(&self, vm: VmId) -> Result<(), DriverError> {
        let Some(at) = self.locate(vm).await? else {
            return Ok(());
        };
        self.stop_at(&at).await?;
        let upid = self
            .client
            .delete_qemu(&at.node, at.vmid)
            .await
            .map_err(|e| failed("delete", e))?;
        self.finish("delete", upid).await
    }

    async fn status(&self, vm: VmId) -> Result<PowerState, DriverError> {
        self.power_state(&self.require(vm).await?).await
    }

    async fn inventory(&self) -> Result<Vec<(VmId, PowerState)>, DriverError> {
        let vms = self
            .client
            .cluster_vms()
            .await
            .map_err(|e| failed("list VMs", e))?;
        let mut out = Vec::new();
        for vm in vms {
            let id = vm.tags.as_deref().and_then(|tags| {
                tags.split([';', ',', ' '])
                    .find_map(|t| t.strip_prefix("porthole-")?.parse::<VmId>().ok())
            });
            if let Some(id) = id {
                let power = match vm.status {
                    VmRunState::Running => PowerState::Running,
                    _ => PowerState::Stopped,
                };
                out.push((id, power));
            }
        }
        Ok(out)
    }

    async fn resize(&self, vm: VmId, resources: Resources) -> Result<(), DriverError> {
        let at = self.require(vm).await?;
        let update = QemuConfigUpdate {
            cores: Some(resources.cores),
            memory: Some(resources.memory_mib),
            ..QemuConfigUpdate::default()
        };
        self.client
            .set_qemu_config(&at.node, at.vmid, &update)
            .await
            .map_err(|e| failed("resize", e))?;
        self.grow_disk(&at, resources.disk_gib).await
    }

    async fn node_template(&self, reference: &str) -> Result<u64, DriverError> {
        Ok(self.template(reference).await?.maxdisk.unwrap_or(0))
    }

    async fn console(&self, vm: VmId, kind: ConsoleKind) -> Result<ConsoleEndpoint, DriverError> {
        let at = self.require(vm).await?;
        let piped = console::open(&self.client, &at.node, at.vmid, kind)
            .await
            .map_err(|e| failed("open the console", e))?;
        Ok(ConsoleEndpoint::Piped(piped))
    }
}
