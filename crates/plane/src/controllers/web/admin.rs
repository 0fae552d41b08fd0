//! The admin pages' handlers: the host and everyone's usage at a glance, users and groups
//! with their limits, template and ISO approval, and the audit log. Forms call the same
//! services as the REST API, which check the admin role and audit them.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use porthole_api::{CreateGroupRequest, CreateUserRequest, SetLimitsRequest, UpdateUserRequest};
use porthole_core::Role;
use serde::Deserialize;

use super::pages::admin::{
    AuditPage, AuditRow, Bar, GroupRow, ImageRow, ImagesPage, JobRow, OverviewPage, UserRow,
    UsersPage, host_meters,
};
use super::pages::{Chrome, Flash};
use super::{WebUser, after, encode, page};
use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::CsrfForm;
use crate::registry::NodeRegistry;
use crate::services::{audit, images, overview, users};

/// How many jobs the overview shows.
const OVERVIEW_JOBS: u32 = 20;
/// How many audit records a page shows.
const AUDIT_PAGE: u32 = 100;

/// `GET /admin`: the node's capacity against what runs on it, each user's share, and the
/// latest jobs.
pub async fn overview(
    State(app): State<AppState>,
    WebUser(caller): WebUser,
    Query(flash): Query<Flash>,
) -> Result<Response, ApiError> {
    let overview = overview::overview(&app, &caller, OVERVIEW_JOBS).await?;
    Ok(page(
        StatusCode::OK,
        &OverviewPage {
            chrome: Chrome::signed_in(&app, &caller).with(flash),
            node: NodeRegistry::LOCAL.to_owned(),
            accel: app.accel.as_str().to_owned(),
            meters: host_meters(overview.used, overview.capacity),
            users: overview.users.iter().map(Bar::from).collect(),
            jobs: JobRow::all(overview.jobs, &overview.vms),
        },
    ))
}

/// `GET /admin/users`: users with their usage and limits, and groups.
pub async fn users_page(
    State(app): State<AppState>,
    WebUser(caller): WebUser,
    Query(flash): Query<Flash>,
) -> Result<Response, ApiError> {
    let rows = users::list(&app, &caller)
        .await?
        .iter()
        .map(UserRow::from)
        .collect();
    let groups = users::groups(&app, &caller)
        .await?
        .into_iter()
        .map(GroupRow::from)
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

/// `GET /admin/images`: templates and ISOs, and which members may use.
pub async fn images_page(
    State(app): State<AppState>,
    WebUser(caller): WebUser,
    Query(flash): Query<Flash>,
) -> Result<Response, ApiError> {
    let (templates, isos) = images::library(&app, &caller).await?;
    Ok(page(
        StatusCode::OK,
        &ImagesPage {
            chrome: Chrome::signed_in(&app, &caller).with(flash),
            templates: templates.into_iter().map(ImageRow::from).collect(),
            isos: isos.into_iter().map(ImageRow::from).collect(),
        },
    ))
}

/// `GET /admin/audit`: the audit log, 100 at a time.
pub async fn audit(
    State(app): State<AppState>,
    WebUser(caller): WebUser,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let actor = query.actor.filter(|a| !a.is_empty());
    let records = audit::log(&app, &caller, query.before, actor.as_deref(), AUDIT_PAGE).await?;
    let older = (records.len() == AUDIT_PAGE as usize).then(|| {
        let last = records.last().map_or(0, |r| r.at.timestamp_millis());
        let mut link = format!("/admin/audit?before={last}");
        if let Some(actor) = &actor {
            link.push_str(&format!("&actor={}", encode(actor)));
        }
        link
    });
    Ok(page(
        StatusCode::OK,
        &AuditPage {
            chrome: Chrome::signed_in(&app, &caller),
            rows: records.into_iter().map(AuditRow::from).collect(),
            actor: actor.unwrap_or_default(),
            older,
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
        let role = Role::parse(&form.form.role)
            .ok_or_else(|| ApiError::invalid("role", "must be member or admin"))?;
        let request = CreateUserRequest {
            username: form.form.username.trim().to_owned(),
            password: form.form.password.clone(),
            role,
            email: Some(form.form.email.trim().to_owned()).filter(|e| !e.is_empty()),
        };
        users::create(&app, &form.caller, request).await
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

/// Which audit records to show.
#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    actor: Option<String>,
    before: Option<i64>,
}
