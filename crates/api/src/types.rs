//! Request and response bodies.

use chrono::{DateTime, Utc};
use porthole_core::driver::DiskFormat;
use porthole_core::{
    AuditId, BootOrder, ConsoleKind, ExternalConsoleId, GroupId, JobId, JobKind, JobState,
    LimitOverrides, Limits, Role, SshKeyId, Usage, UserId, VmId, VmState,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Every error response: `{"error": {"code": ..., "message": ...}}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong, for programs (`code`) and for people (`message`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code, e.g. `invalid_field` or `conflict`.
    pub code: String,
    /// A sentence for people, naming the field where one is at fault.
    pub message: String,
    /// The request field at fault, if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// `POST /api/v1/login`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The account's username.
    pub username: String,
    /// Its password.
    pub password: String,
    /// In Proxmox accessor mode, the realm (`pve`, `pam`, an LDAP realm) unless the
    /// username carries one as `user@realm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
}

/// A bearer token for `Authorization: Bearer ...`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// The token. It is shown only now; porthole keeps only its hash.
    pub token: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// `POST /api/v1/users`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// Login name: 1 to 64 characters of `a-z`, `0-9`, `.`, `_` and `-`.
    pub username: String,
    /// At least 8 characters.
    pub password: String,
    /// `member` or `admin`.
    pub role: Role,
    /// Where reminders go.
    #[serde(default)]
    pub email: Option<String>,
}

/// A user account.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct User {
    /// The account's id.
    pub id: UserId,
    /// Login name.
    pub username: String,
    /// `member` or `admin`.
    pub role: Role,
    /// Where reminders go.
    pub email: Option<String>,
    /// The limits that apply to them now.
    pub limits: Limits,
    /// Their own overrides; unset parts come from their groups or the site default.
    pub limit_overrides: LimitOverrides,
    /// What they use now.
    pub usage: Usage,
    /// Their groups.
    pub groups: Vec<String>,
    /// Until when logins are refused after too many wrong passwords, if they are.
    pub locked_until: Option<DateTime<Utc>>,
}

/// `PUT /api/v1/users/{username}/limits` and `PUT /api/v1/groups/{name}/limits`: each part
/// is a number, or `null` (or absent) to inherit.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetLimitsRequest {
    /// Cores of running VMs.
    #[serde(default)]
    pub cores: Option<u64>,
    /// Memory of running VMs, in MiB.
    #[serde(default)]
    pub memory_mib: Option<u64>,
    /// Disk of all VMs, in GiB.
    #[serde(default)]
    pub disk_gib: Option<u64>,
}

/// `PATCH /api/v1/templates/{name}` and `PATCH /api/v1/isos/{name}` (admins).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveImageRequest {
    /// Whether members may use it.
    pub approved: bool,
}

/// `PATCH /api/v1/users/{username}` (admins).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    /// `member` or `admin`.
    #[serde(default)]
    pub role: Option<Role>,
    /// Where reminders go; `""` removes it.
    #[serde(default)]
    pub email: Option<String>,
    /// A new password.
    #[serde(default)]
    pub password: Option<String>,
    /// `true` lifts a lockout.
    #[serde(default)]
    pub unlock: bool,
}

/// A group of users that shares limits.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Group {
    /// Its id.
    pub id: GroupId,
    /// Its unique name.
    pub name: String,
    /// Its limits; unset parts are the site default.
    pub limits: LimitOverrides,
    /// Its members' usernames.
    pub members: Vec<String>,
}

/// `POST /api/v1/groups`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroupRequest {
    /// 1 to 64 characters of `a-z`, `0-9`, `.`, `_` and `-`.
    pub name: String,
}

/// An SSH public key on a user's profile.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SshKey {
    /// Its id.
    pub id: SshKeyId,
    /// A label.
    pub name: String,
    /// The key, in OpenSSH's one-line format.
    pub public_key: String,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// `POST /api/v1/users/me/ssh-keys`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddSshKeyRequest {
    /// A label; defaults to the key's comment.
    #[serde(default)]
    pub name: Option<String>,
    /// The key, in OpenSSH's one-line format (`ssh-ed25519 AAAA… comment`).
    pub public_key: String,
}

/// A token that signs a user in: an API token, or a web session.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiToken {
    /// Its id.
    pub id: Uuid,
    /// What it is for, e.g. `login`, `web session`, or a label chosen at creation.
    pub label: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// Whether this request is signed in with it.
    pub current: bool,
}

/// `POST /api/v1/users/me/tokens`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// What it is for: 1 to 100 printable characters.
    pub label: String,
    /// Days it lives, 1 to 365 (default: the server's --token-days).
    #[serde(default)]
    pub days: Option<u32>,
}

/// One record of the audit log.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Its id.
    pub id: AuditId,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: a username, or `porthole` for the plane itself.
    pub actor: String,
    /// What, e.g. `vm.create`.
    pub action: String,
    /// The kind of thing acted on.
    pub target_kind: Option<String>,
    /// Its id.
    pub target_id: Option<String>,
    /// Its name at the time.
    pub target_name: Option<String>,
    /// From where.
    pub remote_addr: Option<String>,
    /// `ok`, `denied` or `failed`.
    pub outcome: String,
    /// The new values, or why it was refused.
    pub detail: Option<String>,
}

/// A template VMs can be created from.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Template {
    /// The template's id.
    pub id: Uuid,
    /// Its unique name.
    pub name: String,
    /// `qcow2` or `raw`.
    pub format: DiskFormat,
    /// The size the guest sees, in bytes.
    pub virtual_size: u64,
    /// The smallest `disk_gib` a VM from this template may have.
    pub min_disk_gib: u64,
    /// Hex SHA-256 of the base image.
    pub sha256: String,
    /// `kernel` if the template boots a kernel directly, `node` if the node keeps it, else
    /// `disk`.
    pub boot: String,
    /// When it was imported.
    pub created_at: DateTime<Utc>,
    /// Whether members may use it; admins approve.
    pub approved: bool,
    /// For a template a node keeps itself (a Proxmox template VM): that node, where its
    /// VMs go. `None` for an image the plane keeps.
    #[serde(default)]
    pub node: Option<String>,
}

/// An installer ISO VMs can boot.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Iso {
    /// The ISO's id.
    pub id: Uuid,
    /// Its unique name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    /// When it was imported.
    pub created_at: DateTime<Utc>,
    /// Whether members may use it; admins approve.
    pub approved: bool,
}

/// `POST /api/v1/vms`. Exactly one of `template` and `iso` must be given.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVmRequest {
    /// A DNS label: 1 to 63 characters of `a-z`, `0-9` and `-`.
    pub name: String,
    /// The name of the template to clone.
    #[serde(default)]
    pub template: Option<String>,
    /// The name of the ISO to boot, with a blank disk.
    #[serde(default)]
    pub iso: Option<String>,
    /// Virtual CPUs, 1 to 128.
    pub cores: u32,
    /// Memory in MiB, 64 to 1048576.
    pub memory_mib: u64,
    /// Disk size in GiB, at least the template's `min_disk_gib`.
    pub disk_gib: u64,
    /// SSH public keys for the guest's user, besides those on the owner's profile
    /// (templates only).
    #[serde(default)]
    pub ssh_keys: Option<Vec<String>>,
    /// The user cloud-init creates in the guest (templates only); defaults to the owner's
    /// username, or `porthole` if that cannot be a Linux user name.
    #[serde(default)]
    pub guest_user: Option<String>,
    /// The node to run it on (admins only); by default the least-loaded node with room.
    #[serde(default)]
    pub node: Option<String>,
}

impl CreateVmRequest {
    /// A small VM cloned from `template`: 1 core, 256 MiB, a 1 GiB disk.
    pub fn small(name: &str, template: &str) -> Self {
        Self {
            name: name.into(),
            template: Some(template.into()),
            iso: None,
            cores: 1,
            memory_mib: 256,
            disk_gib: 1,
            ssh_keys: None,
            guest_user: None,
            node: None,
        }
    }
}

/// `PATCH /api/v1/vms/{id}`. Cores and memory need the VM stopped; the disk can grow any
/// time but never shrink.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateVmRequest {
    /// New number of virtual CPUs.
    #[serde(default)]
    pub cores: Option<u32>,
    /// New memory in MiB.
    #[serde(default)]
    pub memory_mib: Option<u64>,
    /// New disk size in GiB.
    #[serde(default)]
    pub disk_gib: Option<u64>,
    /// Exempt the VM from expiry, or not (admins only).
    #[serde(default)]
    pub expiry_exempt: Option<bool>,
    /// An approved ISO to put in the CD-ROM drive (taking effect at the next start); `""`
    /// empties the drive.
    #[serde(default)]
    pub cdrom: Option<String>,
    /// What boots first from the next start: `disk` or `cdrom`.
    #[serde(default)]
    pub boot_order: Option<BootOrder>,
}

/// `POST /api/v1/vms/{id}/snapshots`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSnapshotRequest {
    /// 1 to 40 characters of `A-Za-z0-9_-`, starting with a letter.
    pub name: String,
}

/// A snapshot of a VM.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct VmSnapshot {
    /// Its name.
    pub name: String,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
    /// Whether it holds the guest's memory too (taken while running): rolling back to it
    /// resumes the guest where it was.
    pub includes_memory: bool,
}

/// A virtual machine.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Vm {
    /// The VM's id.
    pub id: VmId,
    /// Its unique name.
    pub name: String,
    /// The node it runs on.
    pub node: String,
    /// `creating`, `stopped`, `running`, `paused`, `deleting` or `unknown`.
    pub state: VmState,
    /// Virtual CPUs.
    pub cores: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Disk size in GiB.
    pub disk_gib: u64,
    /// The owner's username.
    pub owner: String,
    /// When it expires; it is stopped then, and deleted after the grace period.
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether an admin exempted it from expiry.
    pub expiry_exempt: bool,
    /// The ISO in its CD-ROM drive besides its boot media, if any.
    pub cdrom: Option<String>,
    /// What boots first.
    pub boot_order: BootOrder,
    /// The template it was cloned from.
    pub template: Option<String>,
    /// The ISO it boots.
    pub iso: Option<String>,
    /// The job acting on it now, if any.
    pub job: Option<JobId>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A job's progress and outcome.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// The job's id.
    pub id: JobId,
    /// What it does, e.g. `vm.create`.
    pub kind: JobKind,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub state: JobState,
    /// From 0.0 to 1.0.
    pub progress: f64,
    /// What it is doing now.
    pub step: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// The VM it acts on.
    pub vm: Option<VmId>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
}

/// The reply to `POST /api/v1/vms`: the new VM and the job creating it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CreateVmResponse {
    /// The VM, in state `creating`.
    pub vm: Vm,
    /// The job that creates and boots it.
    pub job: Job,
    /// The guest's login, for VMs made from a template. The password is shown this once
    /// and stored nowhere.
    pub guest_login: Option<GuestLogin>,
}

/// The login cloud-init sets up in a new guest.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct GuestLogin {
    /// The user name.
    pub user: String,
    /// Its password, shown once.
    pub password: String,
    /// How many SSH keys it accepts.
    pub ssh_keys: usize,
}

/// The reply to an action that runs as a job.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct JobResponse {
    /// The job carrying the action out.
    pub job: Job,
}

/// `GET /healthz`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// porthole's version.
    pub version: String,
    /// How the local node runs guests: `kvm` or `tcg`.
    pub accel: String,
}

/// `POST /api/v1/vms/{id}/console` and `POST /api/v1/external-consoles/{id}/console`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsoleTicketRequest {
    /// `vnc` or `serial`.
    pub kind: ConsoleKind,
}

/// A console ticket. Open a WebSocket to `ws_path` on the same host with `?ticket=TICKET`
/// (add `&framing=termproxy` for Proxmox termproxy framing) within `expires_at`. The ticket
/// works once.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsoleTicket {
    /// The secret; single use.
    pub ticket: String,
    /// The WebSocket path to open with it.
    pub ws_path: String,
    /// When it stops working (at most 30 s after it was made).
    pub expires_at: DateTime<Utc>,
}

/// What an external console speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExternalProtocol {
    /// A VNC server: opened as a `vnc` console.
    Vnc,
    /// A raw TCP byte stream, such as a serial concentrator port: opened as a `serial` console.
    Tcp,
}

/// `POST /api/v1/external-consoles`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateExternalConsoleRequest {
    /// A unique name: a DNS label.
    pub name: String,
    /// `vnc` or `tcp`.
    pub protocol: ExternalProtocol,
    /// `host:port` the gateway connects to.
    pub address: String,
    /// The VNC password, if the server asks for one. Kept sealed; never shown again.
    #[serde(default)]
    pub password: Option<String>,
}

/// A console target that is not a porthole VM.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ExternalConsole {
    /// Its id.
    #[schema(value_type = Uuid)]
    pub id: ExternalConsoleId,
    /// Its name.
    pub name: String,
    /// `vnc` or `tcp`.
    pub protocol: ExternalProtocol,
    /// `host:port`.
    pub address: String,
    /// Whether a password is stored.
    pub has_password: bool,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// The audit record of one console session.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsoleSession {
    /// The session's id.
    pub id: Uuid,
    /// Who.
    pub username: String,
    /// `vm`, `external` or `proxmox`.
    pub target_kind: String,
    /// Its id: a UUID for VMs and external consoles, the VMID for Proxmox VMs.
    pub target_id: String,
    /// Its name.
    pub target_name: String,
    /// `vnc` or `serial`.
    pub kind: ConsoleKind,
    /// `binary` or `termproxy`.
    pub framing: String,
    /// The client's address.
    pub remote_addr: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended; `null` while it runs.
    pub ended_at: Option<DateTime<Utc>>,
    /// Bytes sent to the client.
    pub bytes_to_client: u64,
    /// Bytes sent to the console.
    pub bytes_from_client: u64,
    /// Why it ended.
    pub end_reason: Option<String>,
}

/// A node: a hypervisor, or a cluster of them, that runs VMs.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Node {
    /// Its unique name; VMs name it.
    pub name: String,
    /// The backend: `qemu` for the built-in node, `proxmox`.
    pub kind: String,
    /// The API it is reached at, for remote nodes.
    pub url: Option<String>,
    /// How many porthole VMs it holds.
    pub vms: u64,
    /// Whether it answered just now.
    pub online: bool,
    /// What it said: its version, or why it did not answer, and for an agent what the plane
    /// found when it last came back.
    pub detail: String,
    /// For a new agent node only: the one-time token its agent joins with
    /// (`porthole agent --join TOKEN`). It is shown once and stored only as a hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_token: Option<String>,
}

/// `POST /api/v1/nodes` (admins): adds a Proxmox VE cluster, or a host running an agent.
/// For Proxmox give `url`, and `token` or `username`, `password` and `realm`, and at most one
/// of `ca`, `fingerprint` and `insecure`; for an agent give only `name`.
#[derive(Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNodeRequest {
    /// The node's name in porthole: 1-32 of `a-z`, `0-9` and `-`.
    pub name: String,
    /// `proxmox`, or `agent` for a host that joins with a token.
    pub kind: String,
    /// The PVE API, e.g. `https://pve.example.org:8006` (Proxmox only).
    #[serde(default)]
    pub url: String,
    /// An API token, `USER@REALM!TOKENID=SECRET`.
    #[serde(default)]
    pub token: Option<String>,
    /// A user to log in as, without the realm.
    #[serde(default)]
    pub username: Option<String>,
    /// That user's password.
    #[serde(default)]
    pub password: Option<String>,
    /// That user's realm, e.g. `pve` or `pam`.
    #[serde(default)]
    pub realm: Option<String>,
    /// A CA certificate (PEM) to trust for the API's TLS.
    #[serde(default)]
    pub ca: Option<String>,
    /// The SHA-256 fingerprint of the API's certificate, to pin it.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Skip TLS verification entirely (not recommended).
    #[serde(default)]
    pub insecure: bool,
    /// A PVE node all new VMs go to, instead of the one with the most free memory.
    #[serde(default)]
    pub pve_node: Option<String>,
}

impl std::fmt::Debug for CreateNodeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateNodeRequest")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("username", &self.username)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

/// `POST /api/v1/nodes/{name}/templates` (admins): makes a template the node keeps (a
/// Proxmox template VM) available as a porthole template.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkTemplateRequest {
    /// The template's name in porthole.
    pub name: String,
    /// The node's name for it: a Proxmox template VM's VMID.
    pub reference: String,
}

/// A Proxmox VM as accessor mode lists it: one the user holds VM.Audit on.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ProxmoxVm {
    /// Its VMID.
    pub vmid: u32,
    /// The PVE node it is on.
    pub node: String,
    /// Its name.
    pub name: String,
    /// `running`, `stopped`, …
    pub status: String,
    /// Its pool, if any.
    pub pool: Option<String>,
    /// Whether the user holds VM.Console on it.
    pub can_console: bool,
}
