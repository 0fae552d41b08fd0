//! What kind of node a driver runs, and what it can do.
//!
//! The plane decides from a driver's [`Capabilities`] whether an operation may go to a node
//! (snapshots, boot-media changes, the serial log, consoles, where its VMs' disks come
//! from); it never finds out by calling and ignoring `Unsupported`.

use serde::{Deserialize, Serialize};

use crate::driver::ConsoleKind;

/// The kinds of node porthole drives. Adding one touches this enum, the kind's settings and
/// factory in the plane, and its driver crate.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// QEMU processes on the plane's own host: the built-in `local` node.
    Qemu,
    /// A Proxmox VE cluster, through its API.
    Proxmox,
    /// A host running `porthole agent`, over mutual TLS.
    Agent,
}

impl NodeKind {
    /// Every kind, in the order they are listed.
    pub const ALL: [NodeKind; 3] = [NodeKind::Qemu, NodeKind::Proxmox, NodeKind::Agent];

    /// The kind's name, as the API and the database spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Qemu => "qemu",
            NodeKind::Proxmox => "proxmox",
            NodeKind::Agent => "agent",
        }
    }

    /// Parses [`NodeKind::as_str`] back.
    pub fn parse(text: &str) -> Option<NodeKind> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

impl std::fmt::Display for NodeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a node's VMs get their disks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageHome {
    /// From templates and ISOs the plane keeps, named by identity; the driver gets their
    /// bytes through an [`ImageFiles`](crate::image::ImageFiles). Such nodes report their
    /// capacity, and placement chooses among them.
    Plane,
    /// From templates the node keeps itself ([`BootMedia::NodeTemplate`]), which an admin
    /// links; VMs made from one go to its node.
    ///
    /// [`BootMedia::NodeTemplate`]: crate::driver::BootMedia::NodeTemplate
    Node,
}

/// What a driver can do, beyond the lifecycle every driver has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Where its VMs' disks come from.
    pub images: ImageHome,
    /// Applies new resources ([`Driver::resize`]): the disk now, cores and memory at the
    /// next start.
    ///
    /// [`Driver::resize`]: crate::driver::Driver::resize
    pub resize: bool,
    /// Grows the disk of a VM that runs.
    pub live_disk_growth: bool,
    /// Takes, lists, rolls back and deletes snapshots.
    pub snapshots: bool,
    /// Changes a VM's CD-ROM and boot order.
    pub boot_media: bool,
    /// The consoles it offers.
    pub consoles: &'static [ConsoleKind],
    /// Keeps the recent output of a VM's serial console.
    pub console_output: bool,
}

impl Capabilities {
    /// Whether the node offers `kind` consoles.
    pub fn console(&self, kind: ConsoleKind) -> bool {
        self.consoles.contains(&kind)
    }
}
