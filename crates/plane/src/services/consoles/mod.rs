//! Console access: tickets, the checks at connect time, running sessions, and consoles
//! that are not porthole VMs.
//!
//! 1. [`tickets`]: a user who may open a console gets a ticket bound to them, the console
//!    and its kind, valid at most 30 s (`mint_vm_ticket`, `mint_external_ticket`,
//!    `mint_proxmox_ticket`).
//! 2. [`tickets::redeem`]: at WebSocket connect, the ticket is consumed (whatever happens
//!    next) and every binding is checked again: the user still exists and still has access,
//!    the VM still runs on the node it ran on, the path names the ticket's console and kind.
//!    The console's address is resolved now from the VM's current state, never carried in
//!    the ticket, so an address that moved to another VM cannot be reached (nova
//!    CVE-2013-0335).
//! 3. [`sessions::admit`] takes a slot in the user's session cap; [`sessions::run_session`]
//!    connects to the console (for VNC, authenticates to the server under the VM's
//!    handshake lock, then greets the client with security type None), records the
//!    session, relays, and records how it ended.
//! 4. [`external`]: admin-registered consoles (BMCs, lab switches), their grants and sealed
//!    passwords.

pub mod external;
pub mod sessions;
pub mod tickets;

use porthole_core::ConsoleKind;
use porthole_store::consoles::{ConsoleTarget, console_kind_str};

/// The WebSocket path of a console.
pub fn ws_path(target: ConsoleTarget, kind: ConsoleKind) -> String {
    let kind = console_kind_str(kind);
    match target {
        ConsoleTarget::Vm(id) => format!("/api/v1/vms/{id}/console/{kind}/ws"),
        ConsoleTarget::External(id) => format!("/api/v1/external-consoles/{id}/console/{kind}/ws"),
        ConsoleTarget::Proxmox(vmid) => format!("/api/v1/proxmox/vms/{vmid}/console/{kind}/ws"),
    }
}
