//! Console tickets: minted for a user who may open a console now, and redeemed once, at
//! WebSocket connect, where every binding is checked again.

use porthole_api::ConsoleTicket;
use porthole_core::{ConsoleKind, ExternalConsoleId, VmId, VmState};
use porthole_gateway::{Rejection, ticket};
use porthole_store::StoreError;
use porthole_store::consoles::{
    ConsoleTarget, ExternalConsoleRecord, TicketRecord, console_kind_str,
};
use porthole_store::users::UserRecord;
use porthole_store::vms::VmRecord;

use super::external::visible_external;
use super::ws_path;
use crate::app::App;
use crate::clock::from_millis;
use crate::error::ApiError;
use crate::services::accessor;
use crate::services::audit::{self, Target};
use crate::services::caller::Caller;
use crate::services::vms::visible_vm;

/// A ticket for `caller` to open `target`'s `kind` console. `node` is where the VM runs
/// now; `session`, for Proxmox VMs in accessor mode, is the caller's session, whose PVE
/// ticket opens the console at connect time.
async fn mint(
    app: &App,
    caller: &Caller,
    target: ConsoleTarget,
    kind: ConsoleKind,
    node: Option<String>,
    session: Option<String>,
) -> Result<ConsoleTicket, ApiError> {
    let minted = ticket::mint();
    let now = app.clock.now_millis();
    let ttl = app.config.consoles.ticket_ttl.min(ticket::MAX_TTL);
    let expires_at = now + i64::try_from(ttl.as_millis()).unwrap_or(30_000);
    app.store
        .insert_console_ticket(&TicketRecord {
            token_hash: minted.hash,
            user_id: caller.user.id,
            target,
            kind,
            node,
            session,
            created_at: now,
            expires_at,
        })
        .await?;
    Ok(ConsoleTicket {
        ticket: minted.secret,
        ws_path: ws_path(target, kind),
        expires_at: from_millis(expires_at),
    })
}

/// A ticket for VM `id`'s `kind` console, if the caller may open it and it runs.
pub async fn mint_vm_ticket(
    app: &App,
    caller: &Caller,
    id: VmId,
    kind: ConsoleKind,
) -> Result<ConsoleTicket, ApiError> {
    let vm = visible_vm(app, caller, id).await?;
    let driver = app.nodes.get_online(&vm.node)?;
    if !driver.capabilities().console(kind) {
        return Err(ApiError::unsupported(&format!(
            "{} consoles",
            console_kind_str(kind)
        )));
    }
    if !matches!(vm.state, VmState::Running | VmState::Paused) {
        return Err(ApiError::conflict(
            None,
            format!(
                "VM {} is {}; start it to open its console",
                vm.name, vm.state
            ),
        ));
    }
    mint(
        app,
        caller,
        ConsoleTarget::Vm(vm.id),
        kind,
        Some(vm.node),
        None,
    )
    .await
}

/// A ticket for an external console, if the caller is an admin or was granted it.
pub async fn mint_external_ticket(
    app: &App,
    caller: &Caller,
    id: ExternalConsoleId,
    kind: ConsoleKind,
) -> Result<ConsoleTicket, ApiError> {
    let console = visible_external(app, caller, id).await?;
    if console.protocol.console_kind() != kind {
        return Err(ApiError::invalid(
            "kind",
            format!(
                "{} is a {} console; ask for kind {}",
                console.name,
                console.protocol.as_str(),
                console_kind_str(console.protocol.console_kind())
            ),
        ));
    }
    mint(
        app,
        caller,
        ConsoleTarget::External(console.id),
        kind,
        None,
        None,
    )
    .await
}

/// A console ticket for Proxmox VM `vmid` in accessor mode, if the user holds VM.Console on
/// it; the user's own session opens the console at connect time.
pub async fn mint_proxmox_ticket(
    app: &App,
    caller: &Caller,
    vmid: u32,
    kind: ConsoleKind,
) -> Result<ConsoleTicket, ApiError> {
    let result = async {
        let pve = accessor::session_client(app, &caller.token_hash).await?;
        let vm = accessor::console_target(&pve, vmid).await?;
        let session = Some(caller.token_hash.clone());
        let target = ConsoleTarget::Proxmox(vmid);
        mint(app, caller, target, kind, Some(vm.node), session).await
    }
    .await;
    let target = Target {
        kind: "proxmox_vm",
        id: Some(vmid.to_string()),
        name: None,
    };
    audit::recorded(
        app,
        caller.into(),
        "console.ticket",
        Some(target),
        None,
        result,
    )
    .await
}

/// A ticket that passed every check, with what it opens.
#[derive(Debug)]
pub struct Redeemed {
    /// Who.
    pub user: UserRecord,
    /// What.
    pub target: Resolved,
    /// VNC or serial.
    pub kind: ConsoleKind,
    /// The SHA-256 of the ticket that was consumed.
    pub ticket_hash: String,
}

/// The console a ticket opens, as it is now.
#[derive(Debug)]
pub enum Resolved {
    /// A VM.
    Vm(VmRecord),
    /// An external console.
    External(ExternalConsoleRecord),
    /// A Proxmox VM in accessor mode, with a client acting as the user.
    Proxmox(ProxmoxTarget),
}

/// A Proxmox VM a user may open, and their own client to open it with.
#[derive(Debug)]
pub struct ProxmoxTarget {
    pub(super) vmid: u32,
    pub(super) node: String,
    pub(super) name: String,
    pub(super) client: porthole_proxmox::Client,
}

impl Resolved {
    pub(super) fn target(&self) -> ConsoleTarget {
        match self {
            Resolved::Vm(vm) => ConsoleTarget::Vm(vm.id),
            Resolved::External(console) => ConsoleTarget::External(console.id),
            Resolved::Proxmox(vm) => ConsoleTarget::Proxmox(vm.vmid),
        }
    }

    pub(super) fn name(&self) -> String {
        match self {
            Resolved::Vm(vm) => vm.name.to_string(),
            Resolved::External(console) => console.name.clone(),
            Resolved::Proxmox(vm) => vm.name.clone(),
        }
    }
}

/// Why a connection attempt is refused before anything is relayed.
#[derive(Debug)]
pub enum Refusal {
    /// The ticket or the access behind it failed a check.
    Rejected(Rejection),
    /// The console cannot be opened now, e.g. the VM stopped.
    Unavailable(String),
    /// The database failed.
    Internal(ApiError),
}

impl From<StoreError> for Refusal {
    fn from(error: StoreError) -> Self {
        Refusal::Internal(error.into())
    }
}

/// Consumes `presented` and checks it against the console the client asked for.
pub async fn redeem(
    app: &App,
    presented: &str,
    target: ConsoleTarget,
    kind: ConsoleKind,
) -> Result<Redeemed, Refusal> {
    let reject = |reason| Err(Refusal::Rejected(reason));
    let Some(ticket) = app
        .store
        .take_console_ticket(&ticket::hash(presented))
        .await?
    else {
        return reject(Rejection::Unknown);
    };
    if ticket.expires_at <= app.clock.now_millis() {
        return reject(Rejection::Expired);
    }
    if ticket.target != target {
        return reject(Rejection::WrongTarget);
    }
    if ticket.kind != kind {
        return reject(Rejection::WrongKind);
    }
    let Some(user) = app.store.user(ticket.user_id).await? else {
        return reject(Rejection::AccessRevoked);
    };
    let is_admin = user.role == porthole_core::Role::Admin;
    let resolved = match target {
        ConsoleTarget::Vm(id) => {
            let Some(vm) = app.store.vm(id).await? else {
                return reject(Rejection::AccessRevoked);
            };
            if !is_admin && vm.owner_id != user.id {
                return reject(Rejection::AccessRevoked);
            }
            if ticket.node.as_deref() != Some(vm.node.as_str()) {
                return Err(Refusal::Unavailable(format!(
                    "{} moved to another node; open the console again",
                    vm.name
                )));
            }
            if !matches!(vm.state, VmState::Running | VmState::Paused) {
                return Err(Refusal::Unavailable(format!("{} is {}", vm.name, vm.state)));
            }
            Resolved::Vm(vm)
        }
        ConsoleTarget::External(id) => {
            let Some(console) = app.store.external_console(id).await? else {
                return reject(Rejection::AccessRevoked);
            };
            if !is_admin && !app.store.external_console_granted(id, user.id).await? {
                return reject(Rejection::AccessRevoked);
            }
            Resolved::External(console)
        }
        ConsoleTarget::Proxmox(vmid) => {
            // The session whose PVE ticket opens it must still be alive, and PVE must
            // still grant VM.Console on it now.
            let session = ticket.session.as_deref().unwrap_or_default();
            let revoked = |_| Refusal::Rejected(Rejection::AccessRevoked);
            let client = accessor::session_client(app, session)
                .await
                .map_err(revoked)?;
            let vm = accessor::console_target(&client, vmid)
                .await
                .map_err(revoked)?;
            if ticket.node.as_deref() != Some(vm.node.as_str()) {
                return Err(Refusal::Unavailable(format!(
                    "VM {vmid} moved to another node; open the console again"
                )));
            }
            Resolved::Proxmox(ProxmoxTarget {
                vmid,
                name: vm.name.unwrap_or_else(|| format!("VM {vmid}")),
                node: vm.node,
                client,
            })
        }
    };
    Ok(Redeemed {
        user,
        target: resolved,
        kind,
        ticket_hash: ticket.token_hash,
    })
}
