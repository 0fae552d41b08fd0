//! The admin pages: the node and everyone's usage at a glance, users and groups with their
//! limits, template and ISO approval, jobs, and the audit log. Forms call the same services
//! as the REST API and are audited there.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use porthole_api::{CreateGroupRequest, CreateUserRequest, SetLimitsRequest, UpdateUserRequest};
use porthole_core::{Role, Usage, VmState};
use serde::Deserialize;

use crate::app::{AppState, Nodes};
use crate::controllers::csrf::CsrfForm;
use crate::controllers::portal::Meter;
use crate::controllers::web::{Chrome, Flash, WebUser, after, encode, page};
use crate::error::ApiError;
use crate::extract::Caller;
use crate::services::auth::{self, from_millis};
use crate::services::{images, users};

fn admin_only(caller: &Caller) -> Result<(), ApiError> {
    caller.require_admin()
}

/// One bar of a chart: a label and up to three parts as percentages of the width.
struct Bar {
    label: String,
    text: String,
    percent: u64,
}

#[derive(Template)]
#[template(path = "admin.html")]
struct OverviewPage {
    chrome: Chrome,
    node: String,
    accel: String,
    meters: Vec<Meter>,
    users: Vec<Bar>,
    jobs: Vec<JobRow>,
}

struct JobRow {
    kind: String,
    state: String,
    vm: String,
    when: String,
    error: String,
}

/// What this host has: cores, memory in MiB, and disk in GiB under the data directory.
fn host_capacity(data_dir: &std::path::Path) -> Usage {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let memory_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024);
    let disk_gib = nix::sys::statvfs::statvfs(data_dir)
        .map_or(0, |s| s.blocks() * s.fragment_size() / (1 << 30));
    Usage {
        cores,
        memory_mib,
        disk_gib,
    }
}

/// `GET /admin`: the node's capacity against what runs on it, each user's share, and the
/// latest jobs.
pub async fn overview(
    State(app): State<AppState>,
    WebUser(caller): WebUser,
    Query(flash): Query<Flash>,
) -> Result<Response, ApiError> {
    admin_only(&caller)?;
    let vms = app.store.vms(None).await?;
    let mut used = Usage::default();
    for vm in &vms {
        used.add(
            vm.resources,
            matches!(vm.state, VmState::Running | VmState::Paused),
        );
    }
    let capacity = host_capacity(&app.config.data_dir);
    let meters = vec![
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
    ];
    let mut users = Vec::new();
    for user in app.store.users().await? {
        let view = auth::user_view(&app, &user).await?;
        let limit = view.limits.memory_mib.max(1);
        users.push(Bar {
            label: user.username.clone(),
            text: format!(
                "{} cores · {} MiB · {} GiB",
                view.usage.cores, view.usage.memory_mib, view.usage.disk_gib
            ),
            percent: (view.usage.memory_mib * 100 / limit).min(100),
        });
    }
    let names: std::collections::HashMap<_, _> =
        vms.iter().map(|vm| (vm.id, vm.name.to_string())).collect();
    let jobs = app
        .store
        .recent_jobs(None, 20)
        .await?
        .into_iter()
        .map(|j| JobRow {
            kind: j.kind.to_string(),
            state: j.state.to_string(),
            vm: j
                .vm_id
                .and_then(|id| names.get(&id).cloned())
                .unwrap_or_else(|| "(gone)".into()),
            when: from_millis(j.created_at)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
            error: j.error.unwrap_or_default(),
        })
        .collect();
    Ok(page(
        StatusCode::OK,
        &OverviewPage {
            chrome: Chrome::signed_in(&app, &caller).with(flash),
            node: Nodes::LOCAL.to_owned(),
            accel: app.accel.as_str().to_owned(),
            meters,
            users,
            jobs,
        },
    ))
}

struct UserRow {
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

struct GroupRow {
    name: String,
    members: String,
    cores: String,
    memory: String,
    disk: String,
}

#[derive(Template)]
#[template(path = "admin_users.html")]
struct UsersPage {
    chrome: Chrome,
    users: Vec<UserRow>,
    groups: Vec<GroupRow>,
}

fn part(value: Option<u64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// `GET /admin/users`: users with their usage and limits, and groups.
pub async fn users_page(
    State(app): State<AppState>,
    WebUser(caller): WebUser,
    Query(flash): Query<Flash>,
) -> Result<Response, ApiError> {
    admin_only(&caller)?;
    let now = app.clock.now_millis();
    let mut rows = Vec::new();
    for user in app.store.users().await? {
        let view = auth::user_view(&app, &user).await?;
        rows.push(UserRow {
            name: user.username.clone(),
            role: user.role.as_str().to_owned(),
            groups: view.groups.join(", "),
            email: user.email.clone().unwrap_or_default(),
            locked: user.locked_until.is_some_and(|t| t > now),
            cores: view.limits.cores.to_string(),
            memory: view.limits.memory_mib.to_string(),
            disk: view.limits.disk_gib.to_string(),
            own_cores: part(user.limits.cores),
            own_memory: part(user.limits.memory_mib),
            own_disk: part(user.limits.disk_gib),
            meters: Meter::all(view.usage, view.limits),
        });
    }
    let groups = app
        .store
        .groups()
        .await?
        .into_iter()
        .map(|g| GroupRow {
            members: g.members.join(", "),
            cores: part(g.limits.cores),
            memory: part(g.limits.memory_mib),
            disk: part(g.limits.disk_gib),
            name: g.name,
        })
        .collect();
    Ok(page(
        StatusCode::OK,
        &UsersPage {
            chrome: Chrome::signed_in(&app, &caller).with(flash),
            users: rows,
            groups,
        },
    ))
}

/// A limits form: empty fields inherit.
#[derive(Debug, Deserialize)]
pub struct LimitsForm {
    #[serde(default)]
    cores: String,
    #[serde(default)]
    memory_mib: String,
    #[serde(default)]
    disk_gib: String,
}

impl LimitsForm {
    fn request(&self) -> Result<SetLimitsRequest, ApiError> {
        let parse = |field: &'static str, text: &str| -> Result<Option<u64>, ApiError> {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            text.parse().map(Some).map_err(|_| {
                ApiError::invalid(
                    field,
                    format!("{text:?} is not a whole number; leave it empty to inherit"),
                )
            })
        };
        Ok(SetLimitsRequest {
            cores: parse("cores", &self.cores)?,
            memory_mib: parse("memory_mib", &self.memory_mib)?,
            disk_gib: parse("disk_gib", &self.disk_gib)?,
        })
    }
}

/// `POST /admin/users/{name}/limits`.
pub async fn user_limits(
    State(app): State<AppState>,
    Path(name): Path<String>,
    form: CsrfForm<LimitsForm>,
) -> Response {
    let result =
        async { users::set_user_limits(&app, &form.caller, &name, form.form.request()?).await }
            .await;
    after("/admin/users", result, &format!("limits of {name} saved"))
}

/// The new-user form.
#[derive(Debug, Deserialize)]
pub struct NewUserForm {
    username: String,
    password: String,
    role: String,
    #[serde(default)]
    email: String,
}

/// `POST /admin/users`.
pub async fn create_user(State(app): State<AppState>, form: CsrfForm<NewUserForm>) -> Response {
    let result = async {
        admin_only(&form.caller)?;
        let role = Role::parse(&form.form.role)
            .ok_or_else(|| ApiError::invalid("role", "must be member or admin"))?;
        let request = CreateUserRequest {
            username: form.form.username.trim().to_owned(),
            password: form.form.password.clone(),
            role,
            email: Some(form.form.email.trim().to_owned()).filter(|e| !e.is_empty()),
        };
        auth::create_user(&app, request).await
    }
    .await;
    let name = form.form.username.trim().to_owned();
    after("/admin/users", result, &format!("created {name}"))
}

/// `POST /admin/users/{name}/unlock`.
pub async fn unlock_user(
    State(app): State<AppState>,
    Path(name): Path<String>,
    form: CsrfForm<serde::de::IgnoredAny>,
) -> Response {
    let request = UpdateUserRequest {
        unlock: true,
        ..Default::default()
    };
    let result = users::update(&app, &form.caller, &name, request).await;
    after("/admin/users", result, &format!("{name} unlocked"))
}

/// The new-group form.
#[derive(Debug, Deserialize)]
pub struct NewGroupForm {
    name: String,
}

/// `POST /admin/groups`.
pub async fn create_group(State(app): State<AppState>, form: CsrfForm<NewGroupForm>) -> Response {
    let request = CreateGroupRequest {
        name: form.form.name.trim().to_owned(),
    };
    let result = users::create_group(&app, &form.caller, request).await;
    after("/admin/users", result, "group created")
}

/// `POST /admin/groups/{name}/limits`.
pub async fn group_limits(
    State(app): State<AppState>,
    Path(name): Path<String>,
    form: CsrfForm<LimitsForm>,
) -> Response {
    let result =
        async { users::set_group_limits(&app, &form.caller, &name, form.form.request()?).await }
            .await;
    after(
        "/admin/users",
        result,
        &format!("limits of group {name} saved"),
    )
}

/// The membership form.
#[derive(Debug, Deserialize)]
pub struct MemberForm {
    username: String,
    /// `add` or `remove`.
    op: String,
}

/// `POST /admin/groups/{name}/members`.
pub async fn group_member(
    State(app): State<AppState>,
    Path(name): Path<String>,
    form: CsrfForm<MemberForm>,
) -> Response {
    let add = form.form.op != "remove";
    let user = form.form.username.trim().to_owned();
    let result = users::set_member(&app, &form.caller, &name, &user, add).await;
    let notice = if add {
        format!("{user} added to {name}")
    } else {
        format!("{user} removed from {name}")
    };
    after("/admin/users", result, &notice)
}

struct ImageRow {
    name: String,
    detail: String,
    approved: bool,
}

#[derive(Template)]
#[template(path = "admin_images.html")]
struct ImagesPage {
    chrome: Chrome,
    templates: Vec<ImageRow>,
    isos: Vec<ImageRow>,
}

/// `GET /admin/images`: templates and ISOs, and which members may use.
pub async fn images_page(
    State(app): State<AppState>,
    WebUser(caller): WebUser,
    Query(flash): Query<Flash>,
) -> Result<Response, ApiError> {
    admin_only(&caller)?;
    let size = |bytes: u64| format!("{:.1} MiB", bytes as f64 / 1048576.0);
    let templates = app
        .store
        .templates()
        .await?
        .into_iter()
        .map(|t| ImageRow {
            detail: format!(
                "{} · {} virtual",
                t.disk_format.as_str(),
                size(t.virtual_size)
            ),
            name: t.name,
            approved: t.approved,
        })
        .collect();
    let isos = app
        .store
        .isos()
        .await?
        .into_iter()
        .map(|i| ImageRow {
            detail: size(i.file_size),
            name: i.name,
            approved: i.approved,
        })
        .collect();
    Ok(page(
        StatusCode::OK,
        &ImagesPage {
            chrome: Chrome::signed_in(&app, &caller).with(flash),
            templates,
            isos,
        },
    ))
}

/// The approval form.
#[derive(Debug, Deserialize)]
pub struct ApproveForm {
    approved: String,
}

/// `POST /admin/{kind}/{name}/approve`, kind `templates` or `isos`.
pub async fn approve(
    State(app): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
    form: CsrfForm<ApproveForm>,
) -> Response {
    let approved = form.form.approved == "yes";
    let result = match kind.as_str() {
        "templates" => images::approve_template(&app, &form.caller, &name, approved)
            .await
            .map(drop),
        "isos" => images::approve_iso(&app, &form.caller, &name, approved)
            .await
            .map(drop),
        other => Err(ApiError::NotFound(format!("no image kind {other:?}"))),
    };
    let notice = if approved {
        format!("{name} approved for members")
    } else {
        format!("{name} withdrawn")
    };
    after("/admin/images", result, &notice)
}

struct AuditRow {
    when: String,
    actor: String,
    action: String,
    target: String,
    from: String,
    outcome: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "admin_audit.html")]
struct AuditPage {
    chrome: Chrome,
    rows: Vec<AuditRow>,
    actor: String,
    older: Option<String>,
}

/// Which audit records to show.
#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    actor: Option<String>,
    before: Option<i64>,
}

/// `GET /admin/audit`: the audit log, 100 at a time.
pub async fn audit(
    State(app): State<AppState>,
    WebUser(caller): WebUser,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    admin_only(&caller)?;
    let actor = query.actor.filter(|a| !a.is_empty());
    let records = app
        .store
        .audit_log(query.before, actor.as_deref(), 100)
        .await?;
    let older = (records.len() == 100).then(|| {
        let last = records.last().map_or(0, |r| r.at);
        let mut link = format!("/admin/audit?before={last}");
        if let Some(actor) = &actor {
            link.push_str(&format!("&actor={}", encode(actor)));
        }
        link
    });
    let rows = records
        .into_iter()
        .map(|r| AuditRow {
            when: from_millis(r.at).format("%Y-%m-%d %H:%M:%S").to_string(),
            actor: r.actor,
            action: r.action,
            target: match (r.target_kind, r.target_name) {
                (Some(kind), Some(name)) if !name.is_empty() => format!("{kind} {name}"),
                (Some(kind), _) => kind,
                _ => String::new(),
            },
            from: r.remote_addr.unwrap_or_default(),
            outcome: r.outcome.as_str().to_owned(),
            detail: r.detail.unwrap_or_default(),
        })
        .collect();
    Ok(page(
        StatusCode::OK,
        &AuditPage {
            chrome: Chrome::signed_in(&app, &caller),
            rows,
            actor: actor.unwrap_or_default(),
            older,
        },
    ))
}
