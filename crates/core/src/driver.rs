//! The boundary between porthole and a hypervisor.
//!
//! A [`Driver`] runs VMs on one node. The plane decides *whether* an action may happen (state
//! machine, ownership, quotas); the driver only carries it out. Drivers must make every
//! operation idempotent, because a job interrupted by a crash is run again: creating a VM that
//! is already fully created, starting one that runs, or deleting one that is gone all succeed.
//!
//! Optional capabilities have default bodies that return [`DriverError::Unsupported`], so a
//! backend implements only what its hypervisor can do.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::cloud_init::CloudInit;
use crate::ids::{IsoId, TemplateId, VmId};
use crate::node::{Capabilities, NodeKind};
use crate::snapshot::{Snapshot, SnapshotName};
use crate::spec::{Resources, SpecError, VmName};

/// What the hypervisor says about a VM's process.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    /// The guest executes.
    Running,
    /// A process exists but its CPUs are halted.
    Paused,
    /// No process.
    Stopped,
}

/// A disk image format the drivers understand.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskFormat {
    /// QEMU copy-on-write.
    Qcow2,
    /// A plain byte-for-byte image.
    Raw,
}

impl DiskFormat {
    /// The format's name as qemu-img spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
        }
    }

    /// Parses [`DiskFormat::as_str`] back.
    pub fn parse(s: &str) -> Option<DiskFormat> {
        match s {
            "qcow2" => Some(DiskFormat::Qcow2),
            "raw" => Some(DiskFormat::Raw),
            _ => None,
        }
    }
}

/// Everything a driver needs to bring a VM into existence. The driver keeps what it needs
/// of it, so later calls take only the VM's id.
///
/// Fields added after the first release have defaults, so definitions stored by older
/// versions still load: no cloud-init data, no extra CD-ROM, and the boot order
/// [`BootMedia::default_boot_order`] gives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredDefinition")]
pub struct VmDefinition {
    /// The VM's id, stable for its whole life.
    pub id: VmId,
    /// Its name, also used as the guest's hostname.
    pub name: VmName,
    /// Cores, memory and disk size.
    pub resources: Resources,
    /// What it boots from.
    pub boot: BootMedia,
    /// First-boot configuration handed to the guest (a NoCloud seed for cloud-init), for VMs
    /// made from cloud images. Validate it with [`CloudInit::validate`].
    pub cloud_init: Option<CloudInit>,
    /// The owner's username; nodes that group VMs by user (a Proxmox pool) use it.
    pub owner: Option<String>,
    /// The ISO in the VM's CD-ROM drive, such as an installer for a VM made from a
    /// template. For a [`BootMedia::Iso`] VM, `None` leaves its installer ISO in the drive.
    pub cdrom: Option<IsoId>,
    /// Whether the disk or the CD-ROM boots first; see [`BootOrder`].
    pub boot_order: BootOrder,
}

/// [`VmDefinition`] as stored, where later fields may be missing and images may still be
/// named by the plane's paths, as versions before image identities stored them.
#[derive(Deserialize)]
struct StoredDefinition {
    id: VmId,
    name: VmName,
    resources: Resources,
    boot: StoredBootMedia,
    #[serde(default)]
    cloud_init: Option<CloudInit>,
    /// An ISO id, or the plane's path of one (`…/isos/ID.iso`).
    #[serde(default)]
    cdrom: Option<String>,
    #[serde(default)]
    boot_order: Option<BootOrder>,
    #[serde(default)]
    owner: Option<String>,
}

impl From<StoredDefinition> for VmDefinition {
    fn from(stored: StoredDefinition) -> Self {
        let boot = BootMedia::from(stored.boot);
        let boot_order = stored
            .boot_order
            .unwrap_or_else(|| boot.default_boot_order());
        VmDefinition {
            id: stored.id,
            name: stored.name,
            resources: stored.resources,
            boot,
            cloud_init: stored.cloud_init,
            cdrom: stored.cdrom.as_deref().and_then(iso_id_of),
            boot_order,
            owner: stored.owner,
        }
    }
}

/// The ISO an old definition names by the plane's path (`…/isos/ID.iso`), or a new one by id.
fn iso_id_of(stored: &str) -> Option<IsoId> {
    let name = stored.rsplit('/').next().unwrap_or(stored);
    name.strip_suffix(".iso").unwrap_or(name).parse().ok()
}

/// Which of a VM's boot devices the firmware tries first. If the first has nothing bootable
/// (a blank disk, an empty drive), the firmware goes on to the other.
///
/// A template with a kernel for direct boot ignores it: the kernel always boots first.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BootOrder {
    /// The main disk, then the CD-ROM.
    #[default]
    Disk,
    /// The CD-ROM, then the main disk.
    Cdrom,
}

/// What a VM boots from, with every image named by its identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", from = "StoredBootMedia")]
pub enum BootMedia {
    /// A copy-on-write clone of a template's base disk, optionally booted directly from the
    /// template's kernel and initrd.
    Template {
        /// The template.
        id: TemplateId,
        /// Its base disk's format.
        format: DiskFormat,
        /// Its kernel boots the VM directly, if it has one.
        direct_boot: Option<DirectBoot>,
    },
    /// A blank disk, with an installer ISO in the CD-ROM drive.
    Iso {
        /// The ISO.
        id: IsoId,
    },
    /// A clone of a template the node itself keeps, named in the node's own terms: a
    /// Proxmox template VM's id, for example. Only nodes of that kind can use it.
    NodeTemplate {
        /// The node's name for the template.
        reference: String,
    },
}

/// How a template with a kernel boots: the kernel, with its initrd if it has one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectBoot {
    /// Whether the template has an initrd.
    pub initrd: bool,
    /// The kernel command line.
    pub cmdline: Option<String>,
}

/// [`BootMedia`] as stored: versions before image identities named the plane's files.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum StoredBootMedia {
    Template {
        id: TemplateId,
        format: DiskFormat,
        #[serde(default)]
        direct_boot: Option<DirectBoot>,
        /// Before identities: the kernel's path, if it boots directly.
        #[serde(default)]
        kernel: Option<PathBuf>,
        #[serde(default)]
        initrd: Option<PathBuf>,
        #[serde(default)]
        cmdline: Option<String>,
    },
    Iso {
        id: IsoId,
    },
    NodeTemplate {
        reference: String,
    },
}

impl From<StoredBootMedia> for BootMedia {
    fn from(stored: StoredBootMedia) -> Self {
        match stored {
            StoredBootMedia::Template {
                id,
                format,
                direct_boot,
                kernel,
                initrd,
                cmdline,
            } => BootMedia::Template {
                id,
                format,
                direct_boot: direct_boot.or_else(|| {
                    kernel.map(|_| DirectBoot {
                        initrd: initrd.is_some(),
                        cmdline,
                    })
                }),
            },
            StoredBootMedia::Iso { id } => BootMedia::Iso { id },
            StoredBootMedia::NodeTemplate { reference } => BootMedia::NodeTemplate { reference },
        }
    }
}

impl BootMedia {
    /// The boot order a VM made from these media starts with: the CD-ROM for an installer
    /// ISO, the disk for a template.
    pub fn default_boot_order(&self) -> BootOrder {
        match self {
            BootMedia::Template { .. } | BootMedia::NodeTemplate { .. } => BootOrder::Disk,
            BootMedia::Iso { .. } => BootOrder::Cdrom,
        }
    }
}

/// Which console of a VM.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleKind {
    /// The graphical screen, over RFB.
    Vnc,
    /// The first serial port, as a byte stream.
    Serial,
}

/// How the gateway reaches a console stream.
pub enum ConsoleEndpoint {
    /// A stream socket on this host.
    Unix {
        /// The socket's path.
        path: PathBuf,
        /// The secret the stream's server asks for (a VNC password), if any. Never shown to
        /// users.
        password: Option<String>,
    },
    /// A TCP stream, for consoles that are not porthole VMs.
    Tcp {
        /// `host:port`, as an admin registered it.
        address: String,
        /// The secret the stream's server asks for, if any.
        password: Option<String>,
    },
    /// A console the node shares among any number of viewers, such as QEMU's serial port,
    /// which accepts one client.
    Shared(Arc<dyn SharedConsole>),
    /// A stream the driver has already connected, such as a Proxmox console it reached over
    /// `vncwebsocket` and relays through a socket pair. Dropping it closes the console.
    Piped(PipedConsole),
}

/// The gateway's end of a console stream a driver connected (see [`ConsoleEndpoint::Piped`]).
pub struct PipedConsole {
    /// Raw console bytes both ways.
    pub stream: tokio::net::UnixStream,
    /// The VNC password the far end asks for, if any. Never shown to users.
    pub password: Option<String>,
    /// Where terminal size changes go, for consoles that carry them in-band.
    pub resize: Option<tokio::sync::mpsc::Sender<(u16, u16)>>,
}

impl fmt::Debug for PipedConsole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipedConsole")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("resize", &self.resize.is_some())
            .finish()
    }
}

impl fmt::Debug for ConsoleEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |p: &Option<String>| p.as_ref().map(|_| "<redacted>");
        match self {
            ConsoleEndpoint::Unix { path, password } => f
                .debug_struct("Unix")
                .field("path", path)
                .field("password", &redacted(password))
                .finish(),
            ConsoleEndpoint::Tcp { address, password } => f
                .debug_struct("Tcp")
                .field("address", address)
                .field("password", &redacted(password))
                .finish(),
            ConsoleEndpoint::Shared(_) => f.write_str("Shared"),
            ConsoleEndpoint::Piped(piped) => piped.fmt(f),
        }
    }
}

/// A byte-stream console shared by many viewers: output is broadcast to all of them, input
/// from any of them goes to the one device.
#[async_trait]
pub trait SharedConsole: Send + Sync {
    /// The recent output and a live feed of everything after it, with no byte lost or
    /// repeated between the two.
    fn attach(&self) -> (Vec<u8>, broadcast::Receiver<Bytes>);

    /// Sends `bytes` to the device.
    async fn write(&self, bytes: &[u8]) -> std::io::Result<()>;

    /// Whether the device is still there.
    fn is_open(&self) -> bool;
}

/// Where a long driver operation reports how far it got.
pub trait Progress: Send + Sync {
    /// `fraction` runs from 0.0 to 1.0 across the whole operation; `step` says what is
    /// happening now, for a person to read.
    fn update(&self, fraction: f32, step: &str);
}

/// A [`Progress`] that nobody watches.
#[derive(Debug, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn update(&self, _fraction: f32, _step: &str) {}
}

/// The name of an operation, a capability or a field in a [`DriverError`]: usually a
/// literal, owned when it came over the wire.
pub type Name = Cow<'static, str>;

/// What caused a failure, as the hypervisor's or transport's own error type.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a driver operation failed.
///
/// Messages follow one convention: they say what failed, and the cause is reachable through
/// [`std::error::Error::source`], never repeated in the message. Retry guidance: `Timeout`
/// and `Unreachable` may succeed when retried; the others will fail the same way again.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The node's backend cannot do this at all. The plane asks [`Driver::capabilities`]
    /// first, so users meet this only through a driver that misreports them.
    #[error("{0} is not supported by this node")]
    Unsupported(Name),
    /// The driver has no VM with this id.
    #[error("VM {0} does not exist on this node")]
    NotFound(VmId),
    /// A disk or ISO image is unusable.
    #[error("unusable image: {0}")]
    BadImage(String),
    /// The hypervisor refused or failed an operation.
    #[error("{operation} failed")]
    Hypervisor {
        /// What was attempted, e.g. "start".
        operation: Name,
        /// What the hypervisor (or the process, protocol or API in between) reported.
        #[source]
        cause: Cause,
    },
    /// An operation did not finish in time.
    #[error("{operation} did not finish within {seconds} s")]
    Timeout {
        /// What was attempted.
        operation: Name,
        /// How long was waited.
        seconds: u64,
    },
    /// The node cannot be reached.
    #[error("node unreachable: {0}")]
    Unreachable(String),
    /// A definition or argument broke a rule; the [`SpecError`] names the field.
    #[error("invalid request: {0}")]
    Invalid(SpecError),
    /// The request conflicts with the VM as it is now, e.g. a snapshot name that is taken.
    #[error("{operation} refused: {reason}")]
    Conflict {
        /// What was attempted, e.g. "snapshot rollback".
        operation: Name,
        /// Why, and what to do instead.
        reason: String,
    },
    /// The VM has no snapshot with this name.
    #[error("VM {vm} has no snapshot named {name:?}")]
    SnapshotNotFound {
        /// The VM.
        vm: VmId,
        /// The name asked for.
        name: String,
    },
    /// A local file operation failed.
    #[error("{context}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// A cause that is only a message: what a remote side said, or a rule a driver checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Reported(pub String);

impl From<SpecError> for DriverError {
    fn from(error: SpecError) -> Self {
        DriverError::Invalid(error)
    }
}

impl DriverError {
    /// An [`DriverError::Io`] with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        DriverError::Io {
            context: context.into(),
            source,
        }
    }

    /// A [`DriverError::Hypervisor`]: `operation` failed because of `cause`.
    pub fn hypervisor(
        operation: impl Into<Name>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        DriverError::Hypervisor {
            operation: operation.into(),
            cause: Box::new(cause),
        }
    }

    /// A [`DriverError::Hypervisor`] whose cause is only a message.
    pub fn failed(operation: impl Into<Name>, message: impl Into<String>) -> Self {
        Self::hypervisor(operation, Reported(message.into()))
    }

    /// Whether trying the same call again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            DriverError::Timeout { .. } | DriverError::Unreachable(_)
        )
    }
}

/// How much a node can host, before overcommit.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// CPU threads.
    pub cores: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Space for VM disks in GiB.
    pub disk_gib: u64,
}

/// A driver as [`Any`](std::any::Any), so the plane can reach a kind's own type (an agent
/// node's heartbeats) from the one registry of `Arc<dyn Driver>`.
pub trait AsAny: std::any::Any + Send + Sync {
    /// This driver as `Arc<dyn Any>`, for [`Arc::downcast`].
    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync>;
}

impl<T: std::any::Any + Send + Sync> AsAny for T {
    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

/// Runs VMs on one node. See the module docs for the idempotency contract.
#[async_trait]
pub trait Driver: AsAny + fmt::Debug {
    /// The kind of node it drives.
    fn kind(&self) -> NodeKind;

    /// What it can do beyond the lifecycle; the plane decides from this, and never calls an
    /// optional method the capabilities leave out.
    fn capabilities(&self) -> Capabilities;

    /// What the node can host, for placement among nodes whose VMs come from the plane's
    /// images ([`ImageHome::Plane`](crate::node::ImageHome::Plane)); `None` when it cannot
    /// say now (an agent that does not answer).
    fn capacity(&self) -> Option<Capacity> {
        None
    }

    /// Why the node is known to be unreachable right now, so callers can fail at once
    /// instead of waiting for a timeout; `None` when it is believed to answer.
    fn unavailable(&self) -> Option<String> {
        None
    }

    /// Prepares the VM's disk and configuration. Does not start it.
    async fn create(&self, def: &VmDefinition, progress: &dyn Progress) -> Result<(), DriverError>;

    /// Powers the VM on. Succeeds at once if it already runs.
    async fn start(&self, vm: VmId) -> Result<(), DriverError>;

    /// Pulls the plug. Succeeds at once if it is already stopped.
    async fn stop(&self, vm: VmId) -> Result<(), DriverError>;

    /// Presses the ACPI power button and waits up to `timeout` for the guest to power off,
    /// then pulls the plug.
    async fn shutdown(&self, vm: VmId, timeout: Duration) -> Result<(), DriverError>;

    /// Presses the reset button.
    async fn reset(&self, vm: VmId) -> Result<(), DriverError>;

    /// Halts the guest's CPUs.
    async fn suspend(&self, vm: VmId) -> Result<(), DriverError>;

    /// Continues a suspended guest.
    async fn resume(&self, vm: VmId) -> Result<(), DriverError>;

    /// Stops the VM if needed and removes every file it had. Succeeds if it is already gone.
    async fn delete(&self, vm: VmId) -> Result<(), DriverError>;

    /// What the hypervisor says about the VM now.
    async fn status(&self, vm: VmId) -> Result<PowerState, DriverError>;

    /// Every VM this node knows, with its power state.
    async fn inventory(&self) -> Result<Vec<(VmId, PowerState)>, DriverError>;

    /// Applies new resources: the disk grows now, cores and memory at the next start.
    async fn resize(&self, vm: VmId, resources: Resources) -> Result<(), DriverError> {
        let _ = (vm, resources);
        Err(DriverError::Unsupported(Cow::Borrowed("resize")))
    }

    /// Checks that the node keeps a template it calls `reference` (see
    /// [`BootMedia::NodeTemplate`]) and returns its disk size in bytes.
    async fn node_template(&self, reference: &str) -> Result<u64, DriverError> {
        let _ = reference;
        Err(DriverError::Unsupported(Cow::Borrowed(
            "templates kept by the node",
        )))
    }

    /// Where the gateway connects to reach the VM's console.
    async fn console(&self, vm: VmId, kind: ConsoleKind) -> Result<ConsoleEndpoint, DriverError> {
        let _ = (vm, kind);
        Err(DriverError::Unsupported(Cow::Borrowed("consoles")))
    }

    /// Tells the guest its serial console is now `cols` x `rows` characters.
    async fn resize_console(&self, vm: VmId, cols: u16, rows: u16) -> Result<(), DriverError> {
        let _ = (vm, cols, rows);
        Err(DriverError::Unsupported(Cow::Borrowed("console resizing")))
    }

    /// The most recent output of the VM's serial console.
    async fn console_output(&self, vm: VmId) -> Result<Vec<u8>, DriverError> {
        let _ = vm;
        Err(DriverError::Unsupported(Cow::Borrowed(
            "serial console output",
        )))
    }

    /// Changes the VM's CD-ROM (`None` empties it; see [`VmDefinition::cdrom`]) and boot
    /// order. Takes effect at the next start, whether the VM runs now or not.
    async fn set_boot_media(
        &self,
        vm: VmId,
        cdrom: Option<IsoId>,
        order: BootOrder,
    ) -> Result<(), DriverError> {
        let _ = (vm, cdrom, order);
        Err(DriverError::Unsupported(Cow::Borrowed(
            "changing boot media",
        )))
    }

    /// Takes a snapshot of the VM's main disk; of a running (or suspended) VM, with its
    /// memory and device state too. A name that is taken is a [`DriverError::Conflict`].
    async fn snapshot_create(&self, vm: VmId, name: &SnapshotName) -> Result<(), DriverError> {
        let _ = (vm, name);
        Err(DriverError::Unsupported(Cow::Borrowed("snapshots")))
    }

    /// The VM's snapshots, oldest first.
    async fn snapshots(&self, vm: VmId) -> Result<Vec<Snapshot>, DriverError> {
        let _ = vm;
        Err(DriverError::Unsupported(Cow::Borrowed("snapshots")))
    }

    /// Puts the VM back to snapshot `name`. A running VM resumes from the snapshot's memory,
    /// so it must [include it](Snapshot::includes_ram), else this is a
    /// [`DriverError::Conflict`] and the caller stops the VM first; a stopped VM gets the
    /// snapshot's disk and boots from it at the next start.
    async fn snapshot_rollback(&self, vm: VmId, name: &SnapshotName) -> Result<(), DriverError> {
        let _ = (vm, name);
        Err(DriverError::Unsupported(Cow::Borrowed("snapshots")))
    }

    /// Deletes snapshot `name`, running or not.
    async fn snapshot_delete(&self, vm: VmId, name: &SnapshotName) -> Result<(), DriverError> {
        let _ = (vm, name);
        Err(DriverError::Unsupported(Cow::Borrowed("snapshots")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `vm.json` written before cloud-init, CD-ROMs and boot orders existed.
    fn stored(boot: &str) -> String {
        format!(
            r#"{{"id": "9b2c3a1e-8a8e-4a36-9d1f-2b1c1c1d1e1f", "name": "old",
                "resources": {{"cores": 1, "memory_mib": 256, "disk_gib": 1}}, "boot": {boot}}}"#
        )
    }

    #[test]
    fn old_definitions_load_with_the_media_default_boot_order() {
        let template = stored(
            r#"{"kind": "template", "id": "0b2c3a1e-8a8e-4a36-9d1f-2b1c1c1d1e1f",
                "disk": "/t/disk", "format": "qcow2", "kernel": null, "initrd": null,
                "cmdline": null}"#,
        );
        let def: VmDefinition = serde_json::from_str(&template).unwrap();
        assert_eq!(def.boot_order, BootOrder::Disk);
        assert_eq!((def.cloud_init, def.cdrom), (None, None));

        let iso = stored(
            r#"{"kind": "iso", "id": "1b2c3a1e-8a8e-4a36-9d1f-2b1c1c1d1e1f", "path": "/i.iso"}"#,
        );
        let def: VmDefinition = serde_json::from_str(&iso).unwrap();
        assert_eq!(def.boot_order, BootOrder::Cdrom);

        // What is stored explicitly wins, and a round trip keeps everything.
        let mut def = def;
        def.boot_order = BootOrder::Disk;
        def.cdrom = Some(IsoId::random());
        def.cloud_init = Some(CloudInit {
            hostname: "h".into(),
            user: "u".into(),
            password_hash: String::new(),
            ssh_keys: vec!["k".into()],
        });
        let text = serde_json::to_string(&def).unwrap();
        assert!(text.contains(r#""boot_order":"disk""#), "{text}");
        assert_eq!(serde_json::from_str::<VmDefinition>(&text).unwrap(), def);
    }

    #[test]
    fn old_definitions_naming_the_plane_s_files_load_as_identities() {
        let iso = "2b2c3a1e-8a8e-4a36-9d1f-2b1c1c1d1e1f";
        let text = stored(
            r#"{"kind": "template", "id": "0b2c3a1e-8a8e-4a36-9d1f-2b1c1c1d1e1f",
                "disk": "/d/templates/0b2c3a1e-8a8e-4a36-9d1f-2b1c1c1d1e1f/disk",
                "format": "raw", "kernel": "/d/t/vmlinuz", "initrd": null,
                "cmdline": "console=ttyS0"}"#,
        )
        .replace(
            r#""boot": "#,
            &format!(r#""cdrom": "/d/isos/{iso}.iso", "boot": "#),
        );
        let def: VmDefinition = serde_json::from_str(&text).unwrap();
        assert_eq!(
            def.boot,
            BootMedia::Template {
                id: "0b2c3a1e-8a8e-4a36-9d1f-2b1c1c1d1e1f".parse().unwrap(),
                format: DiskFormat::Raw,
                direct_boot: Some(DirectBoot {
                    initrd: false,
                    cmdline: Some("console=ttyS0".into()),
                }),
            }
        );
        assert_eq!(def.cdrom, Some(iso.parse().unwrap()));
        // Written again, it names only identities, and reads back the same.
        let text = serde_json::to_string(&def).unwrap();
        assert!(!text.contains("/d/"), "{text}");
        assert_eq!(serde_json::from_str::<VmDefinition>(&text).unwrap(), def);
    }

    #[test]
    fn new_errors_say_what_to_do() {
        let err = DriverError::from(SpecError::new("snapshot", "bad"));
        assert_eq!(err.to_string(), "invalid request: snapshot: bad");
        assert!(!err.is_retryable());
        let err = DriverError::SnapshotNotFound {
            vm: VmId::random(),
            name: "x".into(),
        };
        assert!(err.to_string().ends_with("has no snapshot named \"x\""));
        // A cause is kept as itself, not flattened into the message.
        let io = std::io::Error::other("qemu exited");
        let err = DriverError::hypervisor("start", io);
        assert_eq!(err.to_string(), "start failed");
        assert_eq!(crate::error_chain(&err), "start failed: qemu exited");
    }
}
