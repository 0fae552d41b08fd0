//! Typed request and response bodies of the PVE endpoints this client speaks.
//!
//! Shapes follow pve-docs `api-viewer/apidata.js`. Responses are decoded leniently (see
//! [`crate::lenient`]): numbers may be strings, flags may be `0`/`1`, optional fields may
//! be missing, and unknown fields are ignored because every PVE release adds some.
//! Request bodies are form-encoded with only the fields that are set; flags go out as
//! `1`/`0`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::auth::Secret;
use crate::lenient;
use crate::task::Upid;

/// `GET /version`.
#[derive(Debug, Clone, Deserialize)]
pub struct VersionInfo {
    /// The full version, `8.2.4`.
    #[serde(deserialize_with = "lenient_string")]
    pub version: String,
    /// The release, `8.2`.
    #[serde(deserialize_with = "lenient_string")]
    pub release: String,
    /// The git commit of pve-manager.
    #[serde(default)]
    pub repoid: Option<String>,
}

fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    lenient::opt_string_lenient(d)?.ok_or_else(|| serde::de::Error::custom("null string"))
}

/// `POST /access/ticket` request.
#[derive(Serialize)]
pub(crate) struct LoginRequest<'a> {
    pub username: &'a str,
    pub password: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realm: Option<&'a str>,
}

/// `POST /access/ticket` response.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct LoginResponse {
    pub username: String,
    #[serde(default)]
    pub ticket: Option<Secret>,
    #[serde(default, rename = "CSRFPreventionToken")]
    pub csrf_token: Option<Secret>,
    #[serde(default, rename = "NeedTFA", deserialize_with = "lenient::flag")]
    pub need_tfa: bool,
}

/// Whether a VM runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmRunState {
    /// Running (or paused: see `qmpstatus`).
    Running,
    /// Stopped.
    Stopped,
    /// Anything a future PVE reports.
    #[serde(other)]
    Unknown,
}

/// One entry of `GET /cluster/resources?type=vm` (QEMU VMs and LXC containers).
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterVm {
    /// `qemu/100` or `lxc/101`.
    pub id: String,
    /// `qemu` or `lxc`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The VMID.
    #[serde(deserialize_with = "lenient::u32_lenient")]
    pub vmid: u32,
    /// The node that holds it.
    pub node: String,
    /// Its name.
    #[serde(default)]
    pub name: Option<String>,
    /// Running or stopped.
    #[serde(default = "unknown_state")]
    pub status: VmRunState,
    /// The pool it belongs to.
    #[serde(default)]
    pub pool: Option<String>,
    /// Whether it is a template.
    #[serde(default, deserialize_with = "lenient::flag")]
    pub template: bool,
    /// `;`-separated tags.
    #[serde(default)]
    pub tags: Option<String>,
    /// A lock (`clone`, `backup`, `migrate`…) if one is held.
    #[serde(default)]
    pub lock: Option<String>,
    /// CPU load, 0.0 to `maxcpu`.
    #[serde(default, deserialize_with = "lenient::opt_f64_lenient")]
    pub cpu: Option<f64>,
    /// Number of vCPUs.
    #[serde(default, deserialize_with = "lenient::opt_f64_lenient")]
    pub maxcpu: Option<f64>,
    /// Memory in use, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64_lenient")]
    pub mem: Option<u64>,
    /// Memory configured, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64_lenient")]
    pub maxmem: Option<u64>,
    /// Disk size, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64_lenient")]
    pub maxdisk: Option<u64>,
    /// Seconds since start; missing for stopped VMs.
    #[serde(default, deserialize_with = "lenient::opt_u64_lenient")]
    pub uptime: Option<u64>,
}

impl ClusterVm {
    /// Whether this is a QEMU VM (not a container).
    #[must_use]
    pub fn is_qemu(&self) -> bool {
        self.kind == "qemu"
    }
}

fn unknown_state() -> VmRunState {
    VmRunState::Unknown
}

/// Whether a node is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// In the cluster and answering.
    Online,
    /// Known but down.
    Offline,
    /// Anything else.
    #[serde(other)]
    Unknown,
}

/// One entry of `GET /nodes`.
#[derive(Debug, Clone, Deserialize)]
pub struct NodeSummary {
    /// Node name.
    pub node: String,
    /// Online or not.
    pub status: NodeState,
    /// CPU load.
    #[serde(default, deserialize_with = "lenient::opt_f64_lenient")]
    pub cpu: Option<f64>,
    /// CPU count.
    #[serde(default, deserialize_with = "lenient::opt_u32_lenient")]
    pub maxcpu: Option<u32>,
    /// Memory in use, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64_lenient")]
    pub mem: Option<u64>,
    /// Memory installed, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64_lenient")]
    pub maxmem: Option<u64>,
    /// Seconds since boot.
    #[serde(default, deserialize_with = "lenient::opt_u64_lenient")]
    pub uptime: Option<u64>,
    /// SHA-256 fingerprint of the node's certificate, as PVE shows it.
    #[serde(default)]
    pub ssl_fingerprint: Option<String>,
}

impl NodeSummary {
    /// Free memory in bytes, if the node reports its memory (Proxstar places VMs on the
    /// node with the most).
    #[must_use]
    pub fn free_memory(&self) -> Option<u64> {
        Some(self.maxmem?.saturating_sub(self.mem.unwrap_or(0)))
    }
}

/// One entry of `GET /nodes/{node}/qemu`, and `GET .../status/current`.
#[derive(Debug, Clone, Deserialize)]
pub struct QemuStatus {
    /// The VMID.
    #[serde(deserialize_with = "lenient::u32_lenient")]
    pub vmid: u32,
    /// Running or stopped.
    pub status: VmRunState,
    /// QEMU's own state (`running`, `paused`, `prelaunch`…), from status/current.
    #[serde(default)]
    pub qmpstatus: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// vCPUs.
    #[serde(default, deserialize_with = "lenient::opt_f64_lenient")]
    pub cpus: Option<f64>,
    /// CPU load.
    #[serde(default, deserialize_with = "lenient::opt_f64_lenient")]
    pub cpu: Option<f64>,
    /// Memory in use, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64_lenient")]
    pub mem: Option<u64>,
    /// Memory configured, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64_lenient")]
    pub maxmem: Option<u64>,
    /// Disk size, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64_lenient")]
    pub maxdisk: Option<u64>,
    /// Seconds since start; missing or 0 when stopped.
    #[serde(default, deserialize_with = "lenient::opt_u64_lenient")]
    pub uptime: Option<u64>,
    /// QEMU's pid while running.
    #[serde(default, deserialize_with = "lenient::opt_u32_lenient")]
    pub pid: Option<u32>,
    /// A held lock.
    #[serde(default)]
    pub lock: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Option<String>,
    /// Whether it is a template.
    #[serde(default, deserialize_with = "lenient::flag")]
    pub template: bool,
}

impl QemuStatus {
    /// Whether QEMU runs but the guest is paused (suspended).
    #[must_use]
    pub fn is_paused(&self) -> bool {
        self.status == VmRunState::Running && self.qmpstatus.as_deref() == Some("paused")
    }
}

/// `GET /nodes/{node}/qemu/{vmid}/config`: the subset porthole reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct QemuConfig {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Cores per socket.
    #[serde(default, deserialize_with = "lenient::opt_u32_lenient")]
    pub cores: Option<u32>,
    /// Sockets.
    #[serde(default, deserialize_with = "lenient::opt_u32_lenient")]
    pub sockets: Option<u32>,
    /// Memory in MiB (a number, a string, or PVE 8.1's `current=N`).
    #[serde(default, deserialize_with = "lenient::opt_u64_lenient")]
    pub memory: Option<u64>,
    /// The CD-ROM drive, e.g. `local:iso/debian.iso,media=cdrom`.
    #[serde(default)]
    pub ide2: Option<String>,
    /// Boot order, e.g. `order=scsi0;ide2;net0`.
    #[serde(default)]
    pub boot: Option<String>,
    /// First NIC, e.g. `virtio=BC:24:11:00:00:01,bridge=vmbr0`.
    #[serde(default)]
    pub net0: Option<String>,
    /// First SCSI disk, e.g. `local-lvm:vm-100-disk-0,size=32G`.
    #[serde(default)]
    pub scsi0: Option<String>,
    /// First VirtIO disk.
    #[serde(default)]
    pub virtio0: Option<String>,
    /// Notes.
    #[serde(default)]
    pub description: Option<String>,
    /// `;`-separated tags.
    #[serde(default)]
    pub tags: Option<String>,
    /// SHA-1 of the config file, for optimistic concurrency on updates.
    #[serde(default)]
    pub digest: Option<String>,
    /// Whether it is a template.
    #[serde(default, deserialize_with = "lenient::flag")]
    pub template: bool,
}

/// `PUT`/`POST /nodes/{node}/qemu/{vmid}/config`: fields to change, the rest stay.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QemuConfigUpdate {
    /// New name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Cores per socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    /// Sockets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sockets: Option<u32>,
    /// Memory, MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// CD-ROM, see [`cdrom`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ide2: Option<String>,
    /// Boot order, see [`boot_order`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot: Option<String>,
    /// First NIC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net0: Option<String>,
    /// Notes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `;`-separated tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<String>,
    /// Cloud-init: the user to create.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ciuser: Option<String>,
    /// Cloud-init: that user's password, preferably a crypt hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cipassword: Option<String>,
    /// Cloud-init: `authorized_keys` lines, percent-encoded as PVE requires
    /// ([`QemuConfigUpdate::encode_ssh_keys`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sshkeys: Option<String>,
    /// Comma-separated keys to remove from the config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete: Option<String>,
    /// Refuse the change if the config's digest differs (someone else changed it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl QemuConfigUpdate {
    /// `keys` as the `sshkeys` value: one per line, percent-encoded (PVE decodes it with
    /// `uri_unescape` and checks each line).
    #[must_use]
    pub fn encode_ssh_keys(keys: &[String]) -> String {
        let mut out = String::new();
        for byte in keys.join("\n").bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                out.push(char::from(byte));
            } else {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
        out
    }
}

/// `POST /nodes/{node}/qemu/{vmid}/clone`.
#[derive(Debug, Clone, Serialize)]
pub struct CloneRequest {
    /// The new VM's id.
    pub newid: u32,
    /// The new VM's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A full copy (`true`) or a linked clone of a template (`false`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "lenient::opt_flag_as_int"
    )]
    pub full: Option<bool>,
    /// Add the new VM to this pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Create it on this node (the source must be on shared storage).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Storage for a full clone's disks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// Notes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl CloneRequest {
    /// A clone to `newid` with every option left to PVE's default.
    #[must_use]
    pub fn new(newid: u32) -> Self {
        Self {
            newid,
            name: None,
            full: None,
            pool: None,
            target: None,
            storage: None,
            description: None,
        }
    }
}

/// `POST /nodes/{node}/qemu`: a new VM, typically booting an installer ISO.
#[derive(Debug, Clone, Serialize)]
pub struct CreateVmRequest {
    /// Its id.
    pub vmid: u32,
    /// Name, cores, memory, CD-ROM, boot order, NIC and notes, as in a config update.
    #[serde(flatten)]
    pub config: QemuConfigUpdate,
    /// A SCSI disk, see [`new_disk`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scsi0: Option<String>,
    /// A VirtIO disk, see [`new_disk`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtio0: Option<String>,
    /// SCSI controller model, e.g. `virtio-scsi-single`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scsihw: Option<String>,
    /// Guest OS type, e.g. `l26`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ostype: Option<String>,
    /// Add it to this pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Start it once created.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "lenient::opt_flag_as_int"
    )]
    pub start: Option<bool>,
}

impl CreateVmRequest {
    /// A VM that boots `iso_volid` (e.g. `local:iso/debian-12.iso`) with a blank SCSI disk
    /// of `disk_gib` on `storage`, booting the disk first and the CD-ROM second, so the
    /// installed system boots once the installer is done.
    #[must_use]
    pub fn from_iso(
        vmid: u32,
        name: impl Into<String>,
        iso_volid: &str,
        storage: &str,
        disk_gib: u64,
    ) -> Self {
        Self {
            vmid,
            config: QemuConfigUpdate {
                name: Some(name.into()),
                ide2: Some(cdrom(iso_volid)),
                boot: Some(boot_order(&["scsi0", "ide2"])),
                ..QemuConfigUpdate::default()
            },
            scsi0: Some(new_disk(storage, disk_gib)),
            virtio0: None,
            scsihw: Some("virtio-scsi-single".to_owned()),
            ostype: None,
            pool: None,
            start: None,
        }
    }
}

/// The drive spec of a CD-ROM holding `iso_volid`: `local:iso/x.iso,media=cdrom`.
#[must_use]
pub fn cdrom(iso_volid: &str) -> String {
    format!("{iso_volid},media=cdrom")
}

/// The drive spec of a new blank disk: `local-lvm:32` allocates 32 GiB on `local-lvm`.
#[must_use]
pub fn new_disk(storage: &str, size_gib: u64) -> String {
    format!("{storage}:{size_gib}")
}

/// A boot order value: `order=scsi0;ide2`.
#[must_use]
pub fn boot_order(devices: &[&str]) -> String {
    format!("order={}", devices.join(";"))
}

/// A VM power action, `POST /nodes/{node}/qemu/{vmid}/status/{action}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// Start.
    Start,
    /// Hard stop.
    Stop,
    /// ACPI shutdown.
    Shutdown,
    /// Hard reset.
    Reset,
    /// Pause (suspend to RAM).
    Suspend,
    /// Resume from pause.
    Resume,
}

impl PowerAction {
    /// The path segment.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Shutdown => "shutdown",
            Self::Reset => "reset",
            Self::Suspend => "suspend",
            Self::Resume => "resume",
        }
    }
}

impl fmt::Display for PowerAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `GET /pools`.
#[derive(Debug, Clone, Deserialize)]
pub struct PoolSummary {
    /// Pool name.
    pub poolid: String,
    /// Comment.
    #[serde(default)]
    pub comment: Option<String>,
}

/// `POST /pools`.
#[derive(Debug, Clone, Serialize)]
pub struct CreatePoolRequest {
    /// Pool name.
    pub poolid: String,
    /// Comment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `GET /pools/{poolid}`.
#[derive(Debug, Clone, Deserialize)]
pub struct PoolDetail {
    /// Comment.
    #[serde(default)]
    pub comment: Option<String>,
    /// VMs and storages in the pool.
    #[serde(default)]
    pub members: Vec<PoolMember>,
}

/// A pool member.
#[derive(Debug, Clone, Deserialize)]
pub struct PoolMember {
    /// `qemu/100`, `storage/pve1/local`.
    pub id: String,
    /// `qemu`, `lxc` or `storage`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The node.
    #[serde(default)]
    pub node: Option<String>,
    /// The VMID, for guests.
    #[serde(default, deserialize_with = "lenient::opt_u32_lenient")]
    pub vmid: Option<u32>,
    /// Name, for guests.
    #[serde(default)]
    pub name: Option<String>,
    /// Status, for guests.
    #[serde(default)]
    pub status: Option<String>,
}

/// `POST /nodes/{node}/qemu/{vmid}/vncproxy` request.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct VncProxyRequest {
    #[serde(serialize_with = "lenient::flag_as_int")]
    pub websocket: bool,
    #[serde(
        rename = "generate-password",
        skip_serializing_if = "Option::is_none",
        serialize_with = "lenient::opt_flag_as_int"
    )]
    pub generate_password: Option<bool>,
}

/// `POST /nodes/{node}/qemu/{vmid}/vncproxy` response. The ticket must be used within
/// about 10 s, through `vncwebsocket`.
#[derive(Debug, Clone, Deserialize)]
pub struct VncProxy {
    /// The port vncwebsocket must be given.
    #[serde(deserialize_with = "lenient::u32_lenient")]
    pub port: u32,
    /// The VNC ticket: the `vncticket` query parameter, and the VNC password unless
    /// `password` is set.
    pub ticket: Secret,
    /// The user it was issued to.
    pub user: String,
    /// The proxy's task.
    pub upid: Upid,
    /// The node's certificate (PEM), for clients that pin it.
    #[serde(default)]
    pub cert: Option<String>,
    /// A generated VNC password, when asked for with `generate-password`.
    #[serde(default)]
    pub password: Option<Secret>,
}

/// `POST /nodes/{node}/qemu/{vmid}/termproxy` response. After connecting to
/// `vncwebsocket`, the client sends `{user}:{ticket}\n` and waits for `OK`.
#[derive(Debug, Clone, Deserialize)]
pub struct TermProxy {
    /// The port vncwebsocket must be given.
    #[serde(deserialize_with = "lenient::u32_lenient")]
    pub port: u32,
    /// The ticket, for the query and the login line.
    pub ticket: Secret,
    /// The user it was issued to.
    pub user: String,
    /// The proxy's task.
    pub upid: Upid,
}

impl TermProxy {
    /// The first message on the termproxy stream: `user:ticket\n`.
    #[must_use]
    pub fn login_line(&self) -> Secret {
        Secret::new(format!("{}:{}\n", self.user, self.ticket.expose()))
    }
}
