//! The tier of tests that boot real QEMU guests, in one test binary (`--test guests`).
//!
//! Most start the real `porthole serve` binary on a fresh data directory
//! (`porthole_testing::server`); `qemu_driver` drives the QEMU driver directly and `pve_sim`
//! the Proxmox VE simulator with a guest behind it. Each file of the former test binaries is
//! a module here, so `cargo nextest run -p porthole --test guests lifecycle::` picks one.
//!
//! They need, all installed by `scripts/setup`:
//! - the test guest built by `guest/build.sh target/guest` (or at `PORTHOLE_TEST_GUEST`);
//! - QEMU (`qemu-system-x86_64`, `qemu-img`), run under TCG unless `PORTHOLE_TEST_ACCEL`
//!   says otherwise;
//! - genisoimage, for the ISOs the tests import and boot;
//! - Chromium, node and `web/node_modules` (playwright-core, noVNC, xterm.js) for the
//!   browser tests;
//! - python3 with aiosmtpd, the mail server of the expiry tests;
//! - `ip` and the right to make network namespaces, for the agent tests.
//!
//! Each test takes tens of seconds under TCG; `.config/nextest.toml` gives them room.

mod accessor;
mod agents;
mod browser;
mod cli_portal;
mod console_cli;
mod consoles;
mod crash;
mod expiry;
mod images;
mod lifecycle;
mod portal;
mod portal_browser;
mod proxmox;
mod pve_sim;
mod qemu_driver;
mod serve;
