//! Accessor mode's routes: the Proxmox VMs a user may see, and their console tickets and
//! pages. Proxmox VE's permissions decide; see [`crate::services::accessor`].

use askama::Template;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use porthole_api::{ConsoleTicket, ConsoleTicketRequest, ErrorBody, ProxmoxVm};

use crate::app::AppState;
use crate::controllers::web::{Chrome, WebUser, console_page, page};
use crate::error::ApiError;
use crate::extract::{ApiJson, Caller};
use crate::services::accessor;

/// A VMID from a path.
pub(crate) fn parse_vmid(text: &str) -> Result<u32, ApiError> {
    text.parse()
        .ok()
        .filter(|id| (100..=999_999_999).contains(id))
        .ok_or_else(|| ApiError::NotFound(format!("{text:?} is not a Proxmox VMID")))
}

/// The Proxmox VMs the caller's Proxmox permissions show (VM.Audit), with whether they may
/// open each one's consoles (VM.Console). Accessor mode only.
#[utoipa::path(get, path = "/api/v1/proxmox/vms", tag = "proxmox", security(("bearer" = [])),
    responses((status = 200, body = Vec<ProxmoxVm>), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ProxmoxVm>>, ApiError> {
    accessor::vms(&app, &caller).await.map(Json)
}

/// A single-use console ticket for a Proxmox VM; needs VM.Console on it. Accessor mode only.
#[utoipa::path(post, path = "/api/v1/proxmox/vms/{vmid}/console", tag = "proxmox",
    security(("bearer" = [])), params(("vmid" = u32, Path, description = "The VMID")),
    request_body = ConsoleTicketRequest,
    responses((status = 200, body = ConsoleTicket), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn ticket(
    State(app): State<AppState>,
    caller: Caller,
    Path(vmid): Path<String>,
    ApiJson(request): ApiJson<ConsoleTicketRequest>,
) -> Result<Json<ConsoleTicket>, ApiError> {
    accessor::mint_ticket(&app, &caller, parse_vmid(&vmid)?, request.kind)
        .await
        .map(Json)
}

#[derive(Template)]
#[template(path = "proxmox.html")]
struct ProxmoxPage {
    chrome: Chrome,
    vms: Vec<ProxmoxVm>,
}

/// `GET /proxmox`: the user's Proxmox VMs.
pub async fn home(
    State(app): State<AppState>,
    WebUser(caller): WebUser,
) -> Result<Response, ApiError> {
    let vms = accessor::vms(&app, &caller).await?;
    Ok(page(
        StatusCode::OK,
        &ProxmoxPage {
            chrome: Chrome::signed_in(&app, &caller),
            vms,
        },
    ))
}

/// `GET /proxmox/{vmid}/console/{kind}`: the noVNC or xterm.js page.
pub async fn console(
    State(app): State<AppState>,
    WebUser(caller): WebUser,
    Path((vmid, kind)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let vmid = parse_vmid(&vmid)?;
    let pve = accessor::session_client(&app, &caller.token_hash).await?;
    let vm = accessor::console_target(&pve, vmid).await?;
    console_page(
        &kind,
        Chrome::signed_in(&app, &caller),
        vm.name.unwrap_or_else(|| format!("VM {vmid}")),
        format!("/api/v1/proxmox/vms/{vmid}/console"),
    )
}
