//! Accessor mode's API: the Proxmox VMs a user may see, and their console tickets (the
//! pages are in [`web::consoles`](crate::controllers::web::consoles)). Proxmox VE's permissions decide; see [`crate::services::accessor`].

use axum::Json;
use axum::extract::{Path, State};
use porthole_api::{ConsoleTicket, ConsoleTicketRequest, ErrorBody, ProxmoxVm};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::services::accessor::{self, parse_vmid};
use crate::services::caller::Caller;
use crate::services::consoles::tickets;

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
    tickets::mint_proxmox_ticket(&app, &caller, parse_vmid(&vmid)?, request.kind)
        .await
        .map(Json)
}
