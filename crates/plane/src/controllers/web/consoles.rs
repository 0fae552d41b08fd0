//! The console pages: a VM's or an external console's screen (noVNC) or serial console
//! (xterm.js), and in accessor mode the user's Proxmox VMs and theirs. Each page fetches a
//! ticket with the session cookie, then opens the console's WebSocket.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use porthole_core::ConsoleKind;
use porthole_store::consoles::parse_console_kind;

use super::pages::Chrome;
use super::pages::consoles::{ProxmoxPage, SerialPage, VncPage};
use super::{WebUser, page};
use crate::app::AppState;
use crate::error::ApiError;
use crate::services::accessor::{self, parse_vmid};
use crate::services::consoles::external;
use crate::services::vms::{self, parse_vm_id};

/// The noVNC or xterm.js page of `name`, whose tickets come from `ticket_url`.
fn console_page(
    kind: &str,
    chrome: Chrome,
    name: String,
    ticket_url: String,
) -> Result<Response, ApiError> {
    match parse_console_kind(kind) {
        Some(ConsoleKind::Vnc) => Ok(page(
            StatusCode::OK,
            &VncPage {
                chrome,
                name,
                ticket_url,
            },
        )),
        Some(ConsoleKind::Serial) => Ok(page(
            StatusCode::OK,
            &SerialPage {
                chrome,
                name,
                ticket_url,
            },
        )),
        None => Err(ApiError::NotFound(format!(
            "no console kind {kind:?}; use vnc or serial"
        ))),
    }
}

/// `GET /vms/{id}/console/{kind}`.
pub async fn vm_console(
    State(app): State<AppState>,
    WebUser(caller): WebUser,
    Path((id, kind)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let vm = vms::show(&app, &caller, parse_vm_id(&id)?).await?;
    console_page(
        &kind,
        Chrome::signed_in(&app, &caller),
        vm.name,
        format!("/api/v1/vms/{}/console", vm.id),
    )
}

/// `GET /external-consoles/{id}/console/{kind}`.
pub async fn external_console(
    State(app): State<AppState>,
    WebUser(caller): WebUser,
    Path((id, kind)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = external::parse_id(&id)?;
    let console = external::visible_external(&app, &caller, id).await?;
    console_page(
        &kind,
        Chrome::signed_in(&app, &caller),
        console.name,
        format!("/api/v1/external-consoles/{id}/console"),
    )
}

/// `GET /proxmox`: the user's Proxmox VMs (accessor mode).
pub async fn proxmox_home(
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

/// `GET /proxmox/{vmid}/console/{kind}` (accessor mode).
pub async fn proxmox_console(
    State(app): State<AppState>,
    WebUser(caller): WebUser,
    Path((vmid, kind)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let vmid = parse_vmid(&vmid)?;
    let vm = accessor::console_vm(&app, &caller, vmid).await?;
    console_page(
        &kind,
        Chrome::signed_in(&app, &caller),
        vm.name.unwrap_or_else(|| format!("VM {vmid}")),
        format!("/api/v1/proxmox/vms/{vmid}/console"),
    )
}
