//! The local QEMU driver on its own, without a plane: a `QemuDriver` on a fresh root boots
//! the test guest under TCG, and the tests type at its serial shell
//! (`porthole_testing::qemu_node`).
//!
//! - `boot_media`: an ISO in the CD-ROM drive and the boot order, changed while running and
//!   while stopped.
//! - `cloud_init`: the NoCloud seed the guest applies (hostname, user, password hash, keys).
//! - `snapshots`: disk-only and with memory, rollback both ways, deletion and refusals.

mod accel;
mod boot_media;
mod cloud_init;
mod contract;
mod snapshots;
