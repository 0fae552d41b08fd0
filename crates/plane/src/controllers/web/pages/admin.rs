//! The admin pages: the host and everyone's usage at a glance, users and groups with their
//! limits, template and ISO approval, and the audit log.

use std::collections::HashMap;

use askama::Template;
use porthole_api::{AuditEntry, Group, Iso, Job, Template as WireTemplate, User, Vm};
use porthole_core::{Usage, VmId};

use super::{Chrome, Meter};

/// One bar of a chart: a label and a share of the width.
pub(crate) struct Bar {
    label: String,
    text: String,
    percent: u64,
}

impl From<&User> for Bar {
    /// A user's usage, as a share of their memory limit.
    fn from(user: &User) -> Self {
        let limit = user.limits.memory_mib.max(1);
        Self {
            label: user.username.clone(),
            text: format!(
                "{} cores · {} MiB · {} GiB",
                user.usage.cores, user.usage.memory_mib, user.usage.disk_gib
            ),
            percent: (user.usage.memory_mib * 100 / limit).min(100),
        }
    }
}

/// `GET /admin`.
#[derive(Template)]
#[template(path = "admin.html")]
pub(crate) struct OverviewPage {
    pub chrome: Chrome,
    pub node: String,
    pub accel: String,
    pub meters: Vec<Meter>,
    pub users: Vec<Bar>,
    pub jobs: Vec<JobRow>,
}

/// The host's capacity against what its VMs were given.
pub(crate) fn host_meters(used: Usage, capacity: Usage) -> Vec<Meter> {
    vec![
        Meter::new("Cores", used.cores, capacity.cores, " (host)"),
        Meter::new(
            "Memory",
            used.memory_mib,
            capacity.memory_mib,
            " MiB (host)",
        ),
        Meter::new(
            "Disk",
            used.disk_gib,
            capacity.disk_gib,
            " GiB (allocated of the data disk)",
        ),
    ]
}

/// A job on the overview.
pub(crate) struct JobRow {
    kind: String,
    state: String,
    vm: String,
    when: String,
    error: String,
}

impl JobRow {
    /// `jobs`, naming their VMs from `vms`.
    pub(crate) fn all(jobs: Vec<Job>, vms: &[Vm]) -> Vec<JobRow> {
        let names: HashMap<VmId, &str> = vms.iter().map(|vm| (vm.id, vm.name.as_str())).collect();
        jobs.into_iter()
            .map(|j| JobRow {
                kind: j.kind.to_string(),
                state: j.state.to_string(),
                vm: j
                    .vm
                    .and_then(|id| names.get(&id).map(|n| (*n).to_owned()))
                    .unwrap_or_else(|| "(gone)".into()),
                when: j.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                error: j.error.unwrap_or_default(),
            })
            .collect()
    }
}

/// A user on the users page.
pub(crate) struct UserRow {
    name: String,
    role: String,
    groups: String,
    email: String,
    locked: bool,
    cores: String,
    memory: String,
    disk: String,
    own_cores: String,
    own_memory: String,
    own_disk: String,
    meters: Vec<Meter>,
}

impl From<&User> for UserRow {
    fn from(user: &User) -> Self {
        Self {
            name: user.username.clone(),
            role: user.role.as_str().to_owned(),
            groups: user.groups.join(", "),
            email: user.email.clone().unwrap_or_default(),
            locked: user.locked_until.is_some(),
            cores: user.limits.cores.to_string(),
            memory: user.limits.memory_mib.to_string(),
            disk: user.limits.disk_gib.to_string(),
            own_cores: part(user.limit_overrides.cores),
            own_memory: part(user.limit_overrides.memory_mib),
            own_disk: part(user.limit_overrides.disk_gib),
            meters: Meter::all(user.usage, user.limits),
        }
    }
}

/// A group on the users page.
pub(crate) struct GroupRow {
    name: String,
    members: String,
    cores: String,
    memory: String,
    disk: String,
}

impl From<Group> for GroupRow {
    fn from(g: Group) -> Self {
        Self {
            members: g.members.join(", "),
            cores: part(g.limits.cores),
            memory: part(g.limits.memory_mib),
            disk: part(g.limits.disk_gib),
            name: g.name,
        }
    }
}

/// A limit a user or group sets itself; empty where it inherits.
fn part(value: Option<u64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// `GET /admin/users`.
#[derive(Template)]
#[template(path = "admin_users.html")]
pub(crate) struct UsersPage {
    pub chrome: Chrome,
    pub users: Vec<UserRow>,
    pub groups: Vec<GroupRow>,
}

/// A template or ISO on the images page.
pub(crate) struct ImageRow {
    name: String,
    detail: String,
    approved: bool,
}

/// Bytes as MiB, to one decimal.
fn size(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

impl From<WireTemplate> for ImageRow {
    fn from(t: WireTemplate) -> Self {
        Self {
            detail: format!("{} · {} virtual", t.format.as_str(), size(t.virtual_size)),
            name: t.name,
            approved: t.approved,
        }
    }
}

impl From<Iso> for ImageRow {
    fn from(i: Iso) -> Self {
        Self {
            detail: size(i.size),
            name: i.name,
            approved: i.approved,
        }
    }
}

/// `GET /admin/images`.
#[derive(Template)]
#[template(path = "admin_images.html")]
pub(crate) struct ImagesPage {
    pub chrome: Chrome,
    pub templates: Vec<ImageRow>,
    pub isos: Vec<ImageRow>,
}

/// A record of the audit log.
pub(crate) struct AuditRow {
    when: String,
    actor: String,
    action: String,
    target: String,
    from: String,
    outcome: String,
    detail: String,
}

impl From<AuditEntry> for AuditRow {
    fn from(r: AuditEntry) -> Self {
        Self {
            when: r.at.format("%Y-%m-%d %H:%M:%S").to_string(),
            actor: r.actor,
            action: r.action,
            target: match (r.target_kind, r.target_name) {
                (Some(kind), Some(name)) if !name.is_empty() => format!("{kind} {name}"),
                (Some(kind), _) => kind,
                _ => String::new(),
            },
            from: r.remote_addr.unwrap_or_default(),
            outcome: r.outcome,
            detail: r.detail.unwrap_or_default(),
        }
    }
}

/// `GET /admin/audit`.
#[derive(Template)]
#[template(path = "admin_audit.html")]
pub(crate) struct AuditPage {
    pub chrome: Chrome,
    pub rows: Vec<AuditRow>,
    pub actor: String,
    pub older: Option<String>,
}
