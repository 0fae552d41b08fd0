//! The self-service pages' handlers: my VMs with usage against limits, a VM's page (power,
//! console, renew, edit, snapshots, delete), the create wizard, and the profile (SSH keys,
//! API tokens).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use porthole_api::{AddSshKeyRequest, CreateTokenRequest, CreateVmRequest, UpdateVmRequest};
use porthole_core::{Action, BootOrder};
use serde::Deserialize;

use super::pages::portal::{
    ActionButton, CreatedPage, ExternalView, HomePage, JobView, KeyView, NewVmForm, NewVmPage,
    ProfilePage, SnapshotView, TokenView, VmPage, VmView, key_label,
};
use super::pages::{Chrome, Flash, Meter};
use super::{WebUser, after, encode, page, redirect};
use crate::app::{App, AppState};
use crate::error::ApiError;
use crate::extract::CsrfForm;
use crate::services::caller::Caller;
use crate::services::consoles::external;
use crate::services::vms::{self, parse_vm_id};
use crate::services::{auth, images, jobs, ssh_keys};

/// How many of a VM's jobs its page shows.
const VM_PAGE_JOBS: u32 = 8;

/// `GET /vms`: the user's VMs (every VM for admins), their usage against their limits, and
/// the other consoles granted to them.
pub async fn home(
    State(app): State<AppState>,
    WebUser(caller): WebUser,
    Query(flash): Query<Flash>,
) -> Result<Response, ApiError> {
    if app.config.accessor.is_some() {
        return Ok(redirect("/proxmox"));
    }
    let vms = vms::list(&app, &caller)
        .await?
        .iter()
        .map(VmView::from)
        .collect();
    let externals = external::list(&app, &caller)
        .await?
        .iter()
        .map(ExternalView::from)
        .collect();
    let me = auth::user_view(&app, &caller.user).await?;
    Ok(page(
        StatusCode::OK,
        &HomePage {
            chrome: Chrome::signed_in(&app, &caller).with(flash),
            meters: Meter::all(me.usage, me.limits),
            vms,
            externals,
        },
    ))
}

/// `GET /vms/{id}`.
pub async fn vm(
    State(app): State<AppState>,
    WebUser(caller): WebUser,
    Path(id): Path<String>,
    Query(flash): Query<Flash>,
) -> Result<Response, ApiError> {
    let id = parse_vm_id(&id)?;
    let page = async {
        let vm = vms::show(&app, &caller, id).await?;
        let snapshots = vms::snapshots(&app, &caller, id)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(SnapshotView::from)
            .collect();
        let isos = images::isos(&app, &caller)
            .await?
            .into_iter()
            .map(|i| i.name)
            .collect();
        let jobs = jobs::recent_for_vm(&app, &caller, id, VM_PAGE_JOBS)
            .await?
            .into_iter()
            .map(JobView::from)
            .collect();
        let idle = vm.job.is_none();
        Ok(VmPage {
            chrome: Chrome::signed_in(&app, &caller),
            can_snapshot: idle && vm.state.after(Action::Snapshot).is_ok(),
            can_rollback: idle && vm.state.after(Action::Rollback).is_ok(),
            actions: ActionButton::allowed(&vm),
            vm: VmView::from(&vm),
            snapshots,
            isos,
            jobs,
            lifetime_days: app.config.portal.vm_lifetime.as_secs() / 86_400,
        })
    }
    .await;
    match page {
        Ok(mut page) => {
            page.chrome = page.chrome.with(flash);
            Ok(super::page(StatusCode::OK, &page))
        }
        // A delete can finish before (or while) its page loads; either way, the list is
        // where to go.
        Err(ApiError::NotFound(_)) => {
            let deleted = flash
                .notice
                .as_deref()
                .is_some_and(|n| n.starts_with("deleting"));
            Ok(if deleted {
                redirect("/vms?notice=deleted")
            } else {
                redirect("/vms?error=that+VM+does+not+exist+(any+more)")
            })
        }
        Err(e) => Err(e),
    }
}

fn vm_path(id: &str) -> String {
    format!("/vms/{}", encode(id))
}

/// A power action's form.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    action: String,
}

/// `POST /vms/{id}/action`.
pub async fn action(
    State(app): State<AppState>,
    Path(id): Path<String>,
    form: CsrfForm<ActionForm>,
) -> Response {
    let result = async {
        let action = vms::parse_action(&form.form.action)?;
        vms::act(&app, &form.caller, parse_vm_id(&id)?, action).await
    }
    .await;
    after(
        &vm_path(&id),
        result,
        &format!("{} queued", form.form.action),
    )
}

/// `POST /vms/{id}/renew`.
pub async fn renew(
    State(app): State<AppState>,
    Path(id): Path<String>,
    form: CsrfForm<serde::de::IgnoredAny>,
) -> Response {
    let result = async { vms::renew(&app, &form.caller, parse_vm_id(&id)?).await }.await;
    let notice = match &result {
        Ok(vm) => format!(
            "renewed: it now expires on {}",
            vm.expires_at.map_or("never".into(), |t| t
                .format("%Y-%m-%d %H:%M UTC")
                .to_string())
        ),
        Err(_) => String::new(),
    };
    after(&vm_path(&id), result, &notice)
}

/// The edit form: empty fields keep their value.
#[derive(Debug, Deserialize)]
pub struct EditForm {
    cores: String,
    memory_mib: String,
    disk_gib: String,
    #[serde(default)]
    cdrom: String,
    #[serde(default)]
    boot: String,
}

/// A number from a form field; empty means "unchanged".
fn number<T: std::str::FromStr>(field: &'static str, text: &str) -> Result<Option<T>, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| ApiError::invalid(field, format!("{text:?} is not a whole number")))
}

/// `POST /vms/{id}/edit`.
pub async fn edit(
    State(app): State<AppState>,
    Path(id): Path<String>,
    form: CsrfForm<EditForm>,
) -> Response {
    let result = async {
        let id = parse_vm_id(&id)?;
        let vm = vms::show(&app, &form.caller, id).await?;
        let fields = &form.form;
        let keep = |value: Option<u64>, old: u64| value.filter(|v| *v != old);
        let request = UpdateVmRequest {
            cores: number::<u32>("cores", &fields.cores)?.filter(|c| *c != vm.cores),
            memory_mib: keep(number("memory_mib", &fields.memory_mib)?, vm.memory_mib),
            disk_gib: keep(number("disk_gib", &fields.disk_gib)?, vm.disk_gib),
            expiry_exempt: None,
            cdrom: (fields.cdrom != vm.cdrom.clone().unwrap_or_default())
                .then(|| fields.cdrom.clone()),
            boot_order: match fields.boot.as_str() {
                "cdrom" => Some(BootOrder::Cdrom),
                "disk" => Some(BootOrder::Disk),
                _ => None,
            }
            .filter(|o| *o != vm.boot_order),
        };
        if request.cores.is_none()
            && request.memory_mib.is_none()
            && request.disk_gib.is_none()
            && request.cdrom.is_none()
            && request.boot_order.is_none()
        {
            return Ok(());
        }
        vms::update(&app, &form.caller, id, request).await.map(drop)
    }
    .await;
    after(
        &vm_path(&id),
        result,
        "saved; cores, memory and boot media apply at the next start",
    )
}

/// `POST /vms/{id}/exempt` (admins).
#[derive(Debug, Deserialize)]
pub struct ExemptForm {
    exempt: String,
}

/// `POST /vms/{id}/exempt`.
pub async fn exempt(
    State(app): State<AppState>,
    Path(id): Path<String>,
    form: CsrfForm<ExemptForm>,
) -> Response {
    let exempt = form.form.exempt == "on";
    let result = async {
        let request = UpdateVmRequest {
            expiry_exempt: Some(exempt),
            ..Default::default()
        };
        vms::update(&app, &form.caller, parse_vm_id(&id)?, request).await
    }
    .await;
    let notice = if exempt {
        "exempt from expiry"
    } else {
        "expires again"
    };
    after(&vm_path(&id), result, notice)
}

/// A snapshot form.
#[derive(Debug, Deserialize)]
pub struct SnapshotForm {
    name: String,
}

/// `POST /vms/{id}/snapshots`.
pub async fn snapshot(
    State(app): State<AppState>,
    Path(id): Path<String>,
    form: CsrfForm<SnapshotForm>,
) -> Response {
    snapshot_action(&app, &id, &form.caller, Action::Snapshot, &form.form.name).await
}

/// `POST /vms/{id}/snapshots/{name}/rollback`.
pub async fn rollback(
    State(app): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    form: CsrfForm<serde::de::IgnoredAny>,
) -> Response {
    snapshot_action(&app, &id, &form.caller, Action::Rollback, &name).await
}

/// `POST /vms/{id}/snapshots/{name}/delete`.
pub async fn delete_snapshot(
    State(app): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    form: CsrfForm<serde::de::IgnoredAny>,
) -> Response {
    snapshot_action(&app, &id, &form.caller, Action::DeleteSnapshot, &name).await
}

async fn snapshot_action(
    app: &App,
    id: &str,
    caller: &Caller,
    action: Action,
    name: &str,
) -> Response {
    let result =
        async { vms::snapshot_job(app, caller, parse_vm_id(id)?, action, name).await }.await;
    let notice = match action {
        Action::Snapshot => format!("taking snapshot {name}"),
        Action::Rollback => format!("rolling back to {name}"),
        _ => format!("deleting snapshot {name}"),
    };
    after(&vm_path(id), result, &notice)
}

/// The delete form: the VM's name, typed again.
#[derive(Debug, Deserialize)]
pub struct DeleteForm {
    confirm: String,
}

/// `POST /vms/{id}/delete`.
pub async fn delete(
    State(app): State<AppState>,
    Path(id): Path<String>,
    form: CsrfForm<DeleteForm>,
) -> Response {
    let result = async {
        let id = parse_vm_id(&id)?;
        let vm = vms::show(&app, &form.caller, id).await?;
        if form.form.confirm.trim() != vm.name {
            return Err(ApiError::invalid(
                "confirm",
                format!("type the VM's name, {}, to delete it", vm.name),
            ));
        }
        vms::act(&app, &form.caller, id, Action::Delete).await
    }
    .await;
    // The VM's page follows the delete job, then goes to the list.
    after(
        &vm_path(&id),
        result,
        &format!("deleting {}", form.form.confirm.trim()),
    )
}

async fn new_vm_page(
    app: &App,
    caller: &Caller,
    form: NewVmForm,
    error: Option<String>,
) -> Result<Response, ApiError> {
    let me = auth::user_view(app, &caller.user).await?;
    let templates = images::templates(app, caller)
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    let isos = images::isos(app, caller)
        .await?
        .into_iter()
        .map(|i| i.name)
        .collect();
    let keys = ssh_keys::list(app, caller)
        .await?
        .iter()
        .map(key_label)
        .collect();
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(page(
        status,
        &NewVmPage {
            chrome: Chrome::signed_in(app, caller),
            meters: Meter::all(me.usage, me.limits),
            templates,
            isos,
            keys,
            form,
            error,
        },
    ))
}

/// `GET /vms/new`: the create wizard.
pub async fn new_vm(
    State(app): State<AppState>,
    WebUser(caller): WebUser,
) -> Result<Response, ApiError> {
    let form = NewVmForm {
        cores: "1".into(),
        memory_mib: "512".into(),
        disk_gib: "1".into(),
        ..Default::default()
    };
    new_vm_page(&app, &caller, form, None).await
}

/// `POST /vms/new`: creates the VM and shows its guest login, once.
pub async fn create(
    State(app): State<AppState>,
    form: CsrfForm<NewVmForm>,
) -> Result<Response, ApiError> {
    let CsrfForm { caller, form } = form;
    let request = async {
        let (template, iso) = match form.source.split_once(':') {
            Some(("template", name)) => (Some(name.to_owned()), None),
            Some(("iso", name)) => (None, Some(name.to_owned())),
            _ => return Err(ApiError::invalid("template", "choose a template or an ISO")),
        };
        let ssh_keys: Vec<String> = form
            .ssh_keys
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(CreateVmRequest {
            name: form.name.trim().to_owned(),
            template,
            iso,
            cores: number("cores", &form.cores)?.unwrap_or(1),
            memory_mib: number("memory_mib", &form.memory_mib)?.unwrap_or(512),
            disk_gib: number("disk_gib", &form.disk_gib)?.unwrap_or(1),
            ssh_keys: (!ssh_keys.is_empty()).then_some(ssh_keys),
            guest_user: Some(form.guest_user.trim().to_owned()).filter(|u| !u.is_empty()),
            node: None,
        })
    }
    .await;
    let created = match request {
        Ok(request) => vms::create(&app, &caller, request).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(created) => Ok(page(
            StatusCode::CREATED,
            &CreatedPage {
                chrome: Chrome::signed_in(&app, &caller),
                vm: VmView::from(&created.vm),
                login: created.guest_login,
            },
        )),
        Err(e @ ApiError::Internal(_)) => Err(e),
        Err(e) => new_vm_page(&app, &caller, form, Some(e.to_string())).await,
    }
}

async fn profile_page(
    app: &App,
    caller: &Caller,
    flash: Flash,
    new_token: Option<String>,
) -> Result<Response, ApiError> {
    let me = auth::user_view(app, &caller.user).await?;
    let keys = ssh_keys::list(app, caller)
        .await?
        .into_iter()
        .map(KeyView::from)
        .collect();
    let tokens = auth::tokens(app, caller)
        .await?
        .into_iter()
        .map(TokenView::from)
        .collect();
    Ok(page(
        StatusCode::OK,
        &ProfilePage {
            chrome: Chrome::signed_in(app, caller).with(flash),
            email: me.email.unwrap_or_default(),
            role: me.role.as_str().to_owned(),
            groups: me.groups.join(", "),
            meters: Meter::all(me.usage, me.limits),
            keys,
            tokens,
            new_token,
        },
    ))
}

/// `GET /profile`.
pub async fn profile(
    State(app): State<AppState>,
    WebUser(caller): WebUser,
    Query(flash): Query<Flash>,
) -> Result<Response, ApiError> {
    profile_page(&app, &caller, flash, None).await
}

/// The add-key form.
#[derive(Debug, Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    name: String,
    public_key: String,
}

/// `POST /profile/ssh-keys`.
pub async fn add_key(State(app): State<AppState>, form: CsrfForm<KeyForm>) -> Response {
    let request = AddSshKeyRequest {
        name: Some(form.form.name.trim().to_owned()).filter(|n| !n.is_empty()),
        public_key: form.form.public_key.clone(),
    };
    let result = ssh_keys::add(&app, &form.caller, request).await;
    after("/profile", result, "key added; new VMs accept it")
}

/// `POST /profile/ssh-keys/{id}/delete`.
pub async fn delete_key(
    State(app): State<AppState>,
    Path(id): Path<String>,
    form: CsrfForm<serde::de::IgnoredAny>,
) -> Response {
    let result = ssh_keys::delete(&app, &form.caller, &id).await;
    after("/profile", result, "key removed")
}

/// The new-token form.
#[derive(Debug, Deserialize)]
pub struct TokenForm {
    label: String,
}

/// `POST /profile/tokens`: shows the new token once.
pub async fn create_token(
    State(app): State<AppState>,
    form: CsrfForm<TokenForm>,
) -> Result<Response, ApiError> {
    let request = CreateTokenRequest {
        label: form.form.label.clone(),
        days: None,
    };
    match auth::create_token(&app, &form.caller, request).await {
        Ok(token) => profile_page(&app, &form.caller, Flash::default(), Some(token.token)).await,
        Err(e @ ApiError::Internal(_)) => Err(e),
        Err(e) => Ok(after("/profile", Err::<(), _>(e), "")),
    }
}

/// `POST /profile/tokens/{id}/revoke`.
pub async fn revoke_token(
    State(app): State<AppState>,
    Path(id): Path<String>,
    form: CsrfForm<serde::de::IgnoredAny>,
) -> Response {
    let result = auth::revoke_token(&app, &form.caller, &id).await;
    after("/profile", result, "revoked")
}
