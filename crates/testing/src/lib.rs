//! The helpers shared by porthole's tests, so that each is written once.
//!
//! - [`server`]: real `porthole serve` processes on fresh data directories, the CLI against
//!   them, and the waits and reads (jobs, consoles, QMP, the VGA buffer) tests build on.
//! - [`guest`]: the test guest built by `guest/build.sh`, and ISO images made with
//!   genisoimage.
//! - [`web`]: the browser scripts in `web/tests`, run by node against a plane.
//! - [`console`]: console clients: WebSockets through the gateway, an RFB viewer, termproxy.
//! - [`hosts`]: network namespaces on a bridge, and `porthole agent` processes in them.
//! - [`pve`]: a client for the Proxmox VE simulator, for its own tests.
//! - [`qemu_node`]: a `QemuDriver` on a fresh root, typing at its guest's serial shell.
//! - [`app`]: the plane in this process over a fresh database, with [`fake`]'s in-memory
//!   driver as its node: the fast tier, which needs no QEMU, guest, Node or Chromium.
//! - [`contract`]: the `Driver` contract as a test, for the fake and the QEMU driver alike.
//!
//! Tests that use [`server`] or [`hosts`] run the real `porthole` binary; see
//! [`porthole_binary`] for how it is found.

pub mod app;
pub mod console;
pub mod contract;
pub mod fake;
pub mod guest;
pub mod hosts;
pub mod pve;
pub mod qemu_node;
pub mod server;
pub mod web;

use std::path::PathBuf;

/// The `porthole` binary the tests run: `PORTHOLE_BIN` if set, else the one Cargo built
/// into the profile directory of the running test (test executables live in
/// `target/<profile>/deps/`, binaries in `target/<profile>/`).
///
/// Panics if it is not there: a test binary that does not belong to the `porthole` package
/// must have it built first (`cargo build -p porthole`) or be given `PORTHOLE_BIN`.
pub fn porthole_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PORTHOLE_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "PORTHOLE_BIN names {}, which is not a file",
            path.display()
        );
        return path;
    }
    let test = std::env::current_exe().expect("the running test's own path");
    let profile = test
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable lives in target/<profile>/deps");
    let path = profile.join("porthole");
    assert!(
        path.is_file(),
        "the porthole binary is missing at {} (next to {}); build it with \
         `cargo build -p porthole`, or set PORTHOLE_BIN",
        path.display(),
        test.display()
    );
    path
}
