//! The self-service pages: my VMs, a VM's page, the create wizard and its result, and the
//! profile.

use askama::Template;
use porthole_api::{
    ApiToken, ExternalConsole, ExternalProtocol, GuestLogin, Job, SshKey, Vm, VmSnapshot,
};
use porthole_core::{Action, BootOrder, VmState};
use serde::Deserialize;

use super::{Chrome, Meter, minute};

/// A VM as the pages show it.
pub(crate) struct VmView {
    pub id: String,
    pub name: String,
    pub state: String,
    pub cores: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub node: String,
    pub owner: String,
    pub source: String,
    pub cdrom: String,
    pub boot_cdrom: bool,
    pub expires: String,
    pub exempt: bool,
    pub job: Option<String>,
    pub consoles_open: bool,
}

impl From<&Vm> for VmView {
    fn from(vm: &Vm) -> Self {
        Self {
            id: vm.id.to_string(),
            name: vm.name.clone(),
            state: vm.state.to_string(),
            cores: vm.cores,
            memory_mib: vm.memory_mib,
            disk_gib: vm.disk_gib,
            node: vm.node.clone(),
            owner: vm.owner.clone(),
            source: match (&vm.template, &vm.iso) {
                (Some(t), _) => format!("template {t}"),
                (None, Some(i)) => format!("ISO {i}"),
                (None, None) => "—".into(),
            },
            cdrom: vm.cdrom.clone().unwrap_or_default(),
            boot_cdrom: vm.boot_order == BootOrder::Cdrom,
            expires: match (vm.expiry_exempt, vm.expires_at) {
                (true, _) => "never (exempt)".into(),
                (false, Some(at)) => minute(at),
                (false, None) => "never".into(),
            },
            exempt: vm.expiry_exempt,
            job: vm.job.map(|j| j.to_string()),
            consoles_open: matches!(vm.state, VmState::Running | VmState::Paused),
        }
    }
}

/// `GET /vms`.
#[derive(Template)]
#[template(path = "home.html")]
pub(crate) struct HomePage {
    pub chrome: Chrome,
    pub meters: Vec<Meter>,
    pub vms: Vec<VmView>,
    pub externals: Vec<ExternalView>,
}

/// An external console granted to the user.
pub(crate) struct ExternalView {
    id: String,
    name: String,
    kind: &'static str,
    address: String,
}

impl From<&ExternalConsole> for ExternalView {
    fn from(console: &ExternalConsole) -> Self {
        Self {
            id: console.id.to_string(),
            name: console.name.clone(),
            kind: match console.protocol {
                ExternalProtocol::Vnc => "vnc",
                ExternalProtocol::Tcp => "serial",
            },
            address: console.address.clone(),
        }
    }
}

/// An action button on the VM page.
pub(crate) struct ActionButton {
    action: &'static str,
    label: &'static str,
    primary: bool,
}

impl ActionButton {
    /// The power actions `vm`'s state allows now (none while a job holds it).
    pub(crate) fn allowed(vm: &Vm) -> Vec<ActionButton> {
        let buttons = [
            (Action::Start, "Start", true),
            (Action::Shutdown, "Shut down", false),
            (Action::Stop, "Power off", false),
            (Action::Reset, "Reset", false),
            (Action::Suspend, "Pause", false),
            (Action::Resume, "Resume", true),
        ];
        buttons
            .into_iter()
            .filter(|(action, ..)| vm.job.is_none() && vm.state.after(*action).is_ok())
            .map(|(action, label, primary)| ActionButton {
                action: action.as_str(),
                label,
                primary,
            })
            .collect()
    }
}

/// A snapshot on the VM page.
pub(crate) struct SnapshotView {
    name: String,
    taken: String,
    memory: bool,
}

impl From<VmSnapshot> for SnapshotView {
    fn from(s: VmSnapshot) -> Self {
        Self {
            taken: minute(s.created_at),
            name: s.name,
            memory: s.includes_memory,
        }
    }
}

/// A job on the VM page.
pub(crate) struct JobView {
    kind: String,
    state: String,
    when: String,
    error: String,
}

impl From<Job> for JobView {
    fn from(j: Job) -> Self {
        Self {
            kind: j.kind.to_string(),
            state: j.state.to_string(),
            when: j.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            error: j.error.unwrap_or_default(),
        }
    }
}

/// `GET /vms/{id}`.
#[derive(Template)]
#[template(path = "vm.html")]
pub(crate) struct VmPage {
    pub chrome: Chrome,
    pub vm: VmView,
    pub actions: Vec<ActionButton>,
    pub snapshots: Vec<SnapshotView>,
    pub can_snapshot: bool,
    pub can_rollback: bool,
    pub isos: Vec<String>,
    pub jobs: Vec<JobView>,
    pub lifetime_days: u64,
}

/// The create wizard's fields, also shown again when a create is refused.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct NewVmForm {
    #[serde(default)]
    pub name: String,
    /// `template:NAME` or `iso:NAME`.
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub cores: String,
    #[serde(default)]
    pub memory_mib: String,
    #[serde(default)]
    pub disk_gib: String,
    #[serde(default)]
    pub guest_user: String,
    #[serde(default)]
    pub ssh_keys: String,
}

/// `GET /vms/new`.
#[derive(Template)]
#[template(path = "new_vm.html")]
pub(crate) struct NewVmPage {
    pub chrome: Chrome,
    pub meters: Vec<Meter>,
    pub templates: Vec<String>,
    pub isos: Vec<String>,
    pub keys: Vec<String>,
    pub form: NewVmForm,
    pub error: Option<String>,
}

/// A key on the create wizard: its name and fingerprint.
pub(crate) fn key_label(key: &SshKey) -> String {
    format!("{} ({})", key.name, key.fingerprint)
}

/// `POST /vms/new`: the new VM and its guest login, shown once.
#[derive(Template)]
#[template(path = "created.html")]
pub(crate) struct CreatedPage {
    pub chrome: Chrome,
    pub vm: VmView,
    pub login: Option<GuestLogin>,
}

/// An SSH key on the profile.
pub(crate) struct KeyView {
    id: String,
    name: String,
    fingerprint: String,
}

impl From<SshKey> for KeyView {
    fn from(k: SshKey) -> Self {
        Self {
            id: k.id.to_string(),
            name: k.name,
            fingerprint: k.fingerprint,
        }
    }
}

/// A token or web session on the profile.
pub(crate) struct TokenView {
    id: String,
    label: String,
    created: String,
    expires: String,
    current: bool,
}

impl From<ApiToken> for TokenView {
    fn from(t: ApiToken) -> Self {
        Self {
            id: t.id.to_string(),
            label: t.label,
            created: minute(t.created_at),
            expires: minute(t.expires_at),
            current: t.current,
        }
    }
}

/// `GET /profile`.
#[derive(Template)]
#[template(path = "profile.html")]
pub(crate) struct ProfilePage {
    pub chrome: Chrome,
    pub email: String,
    pub role: String,
    pub groups: String,
    pub meters: Vec<Meter>,
    pub keys: Vec<KeyView>,
    pub tokens: Vec<TokenView>,
    pub new_token: Option<String>,
}
