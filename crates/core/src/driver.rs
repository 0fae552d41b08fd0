//! The boundary between porthole and a hypervisor.
//!
//! A [`Driver`] runs VMs on one node. The plane decides *whether* an action may happen (state
//! machine, ownership, quotas); the driver only carries it out. Drivers must make every
//! operation idempotent, because a job interrupted by a crash is run again: creating a VM that
//! is already fully created, starting one that runs, or deleting one that is gone all succeed.
//!
//! Optional capabilities have default bodies that return [`DriverError::Unsupported`], so a
//! backend implements only what its hypervisor can do.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::ids::{IsoId, TemplateId, VmId};
use crate::spec::{Resources, VmName};

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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmDefinition {
    /// The VM's id, stable for its whole life.
    pub id: VmId,
    /// Its name, also used as the guest's hostname.
    pub name: VmName,
    /// Cores, memory and disk size.
    pub resources: Resources,
    /// What it boots from.
    pub boot: BootMedia,
}

/// What a VM boots from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BootMedia {
    /// A copy-on-write clone of a template's base disk, optionally booted directly from a
    /// kernel and initrd.
    Template {
        /// The template.
        id: TemplateId,
        /// Its base disk image, which the VM's disk is layered on and never writes to.
        disk: PathBuf,
        /// The base disk's format.
        format: DiskFormat,
        /// A kernel for direct boot.
        kernel: Option<PathBuf>,
        /// An initrd for direct boot.
        initrd: Option<PathBuf>,
        /// The kernel command line for direct boot.
        cmdline: Option<String>,
    },
    /// A blank disk, with an installer ISO in the CD-ROM drive.
    Iso {
        /// The ISO.
        id: IsoId,
        /// The ISO image file.
        path: PathBuf,
    },
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
#[derive(Clone)]
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

/// Why a driver operation failed.
///
/// Messages follow one convention: they say what failed, and the cause is reachable through
/// [`std::error::Error::source`], never repeated in the message. Retry guidance: `Timeout`
/// and `Unreachable` may succeed when retried; the others will fail the same way again.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The node's backend cannot do this at all.
    #[error("{0} is not supported by this node")]
    Unsupported(&'static str),
    /// The driver has no VM with this id.
    #[error("VM {0} does not exist on this node")]
    NotFound(VmId),
    /// A disk or ISO image is unusable.
    #[error("unusable image: {0}")]
    BadImage(String),
    /// The hypervisor refused or failed an operation.
    #[error("{operation} failed: {message}")]
    Hypervisor {
        /// What was attempted, e.g. "start".
        operation: &'static str,
        /// What the hypervisor said.
        message: String,
    },
    /// An operation did not finish in time.
    #[error("{operation} did not finish within {seconds} s")]
    Timeout {
        /// What was attempted.
        operation: &'static str,
        /// How long was waited.
        seconds: u64,
    },
    /// The node cannot be reached.
    #[error("node unreachable: {0}")]
    Unreachable(String),
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

impl DriverError {
    /// An [`DriverError::Io`] with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        DriverError::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether trying the same call again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            DriverError::Timeout { .. } | DriverError::Unreachable(_)
        )
    }
}

/// Runs VMs on one node. See the module docs for the idempotency contract.
#[async_trait]
pub trait Driver: Send + Sync + fmt::Debug {
    /// The backend's name, e.g. `qemu`.
    fn kind(&self) -> &'static str;

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
        Err(DriverError::Unsupported("resize"))
    }

    /// Where the gateway connects to reach the VM's console.
    async fn console(&self, vm: VmId, kind: ConsoleKind) -> Result<ConsoleEndpoint, DriverError> {
        let _ = (vm, kind);
        Err(DriverError::Unsupported("consoles"))
    }

    /// Tells the guest its serial console is now `cols` x `rows` characters.
    async fn resize_console(&self, vm: VmId, cols: u16, rows: u16) -> Result<(), DriverError> {
        let _ = (vm, cols, rows);
        Err(DriverError::Unsupported("console resizing"))
    }

    /// The most recent output of the VM's serial console.
    async fn console_output(&self, vm: VmId) -> Result<Vec<u8>, DriverError> {
        let _ = vm;
        Err(DriverError::Unsupported("serial console output"))
    }
}
