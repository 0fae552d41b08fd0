//! The console pages (noVNC and xterm.js) and accessor mode's list of Proxmox VMs.

use askama::Template;
use porthole_api::ProxmoxVm;

use super::Chrome;

/// A VM's or an external console's screen, in noVNC.
#[derive(Template)]
#[template(path = "console_vnc.html")]
pub(crate) struct VncPage {
    pub chrome: Chrome,
    pub name: String,
    pub ticket_url: String,
}

/// A serial console, in xterm.js.
#[derive(Template)]
#[template(path = "console_serial.html")]
pub(crate) struct SerialPage {
    pub chrome: Chrome,
    pub name: String,
    pub ticket_url: String,
}

/// `GET /proxmox`: the Proxmox VMs the user's permissions show.
#[derive(Template)]
#[template(path = "proxmox.html")]
pub(crate) struct ProxmoxPage {
    pub chrome: Chrome,
    pub vms: Vec<ProxmoxVm>,
}
