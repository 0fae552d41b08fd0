//! The built-in node: QEMU processes on the plane's own host, which shares the plane's disk,
//! so its VMs boot from the image library's own files (no copies).

use std::path::Path;
use std::sync::Arc;

use porthole_core::driver::Driver;
use porthole_qemu::{Accel, QemuConfig, QemuDriver};

use crate::error::chain;
use crate::library::ImageLibrary;

/// The factory: the local node's driver, with its VMs under `<data-dir>/vms`. It re-adopts
/// every VM whose QEMU still runs.
pub async fn open_local(
    data_dir: &Path,
    qemu: &Path,
    accel: Accel,
    images: &ImageLibrary,
) -> anyhow::Result<Arc<dyn Driver>> {
    let driver = QemuDriver::open(QemuConfig {
        root: data_dir.join("vms"),
        qemu: qemu.to_owned(),
        accel,
        images: Arc::new(images.clone()),
    })
    .await
    .map_err(|e| anyhow::anyhow!("opening the local QEMU node: {}", chain(&e)))?;
    Ok(Arc::new(driver))
}
