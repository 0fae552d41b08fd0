//! The KVM probe's guest, booted for real: the probe means something only if its boot
//! sector prints the marker where it can run, and TCG always can.

use std::path::Path;

use porthole_qemu::Accel;
use porthole_qemu::accel::boot_probe_guest;

/// The probe is only meaningful if its guest really prints the marker where it can run;
/// TCG always can, so a broken boot sector would show here.
#[tokio::test]
async fn probe_guest_prints_its_marker_under_tcg() {
    let dir = tempfile::tempdir().unwrap();
    let qemu = Path::new("qemu-system-x86_64");
    boot_probe_guest(qemu, dir.path(), Accel::Tcg)
        .await
        .unwrap();
    assert!(!dir.path().join("kvm-probe.img").exists());
}
