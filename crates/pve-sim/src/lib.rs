//! A Proxmox VE API simulator for tests (`porthole-pve-sim`).
//!
//! It serves `/api2/json` over HTTPS (a self-signed certificate made at start, so clients
//! can pin its fingerprint) or plain HTTP, following the official schema
//! (pve-docs `api-viewer/apidata.js`) for shapes, status codes and rules: tickets that
//! expire after 2 h, CSRF tokens, API tokens, ACLs with propagation and pools, UPIDs and
//! tasks that take a while, and consoles (vncproxy/termproxy + vncwebsocket with PVE's
//! 10 s accept window). A [`Backend`] stands behind each VM: [`FakeBackend`] in memory,
//! or [`QemuBackend`] with real QEMU guests.
//!
//! Some fields come in the variants real servers send: `nextid` and the vmid in
//! `/nodes/{node}/qemu` as strings, `memory` in a config as a string, vncproxy's `port` as
//! a string.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use porthole_pve_sim::{PveSim, SimVm};
//! let sim = PveSim::builder()
//!     .user("alice@pve", "secret")
//!     .token("alice@pve!ci", "0b5e...")
//!     .acl("alice@pve", "/pool/alice", &["VM.Audit", "VM.Console"], true)
//!     .vm(SimVm::new(100, "pve1", "web").pool("alice").running())
//!     .spawn("127.0.0.1:0")
//!     .await?;
//! let (_url, _pin) = (sim.api_url(), sim.fingerprint());
//! sim.clock().advance(7200); // every ticket is now expired
//! # Ok(()) }
//! ```

pub mod api;
pub mod auth;
pub mod backend;
pub mod clock;
pub mod console;
pub mod error;
pub mod qemu;
pub mod server;
pub mod state;
pub mod upid;

pub use auth::{ALL_PRIVILEGES, VM_USER};
pub use backend::{Backend, BackendError, ConsoleStream, FakeBackend, PowerState, VmSpec};
pub use clock::Clock;
pub use qemu::QemuBackend;
pub use server::{PveSim, PveSimBuilder, SimVm};
pub use upid::Upid;
