//! The fake driver keeps the `Driver` contract that the QEMU driver keeps (the guest tier
//! runs the same checks against QEMU with a real guest), so tests that stand it in for QEMU
//! test what the plane relies on.

use std::sync::Arc;
use std::time::Duration;

use porthole_core::driver::{BootMedia, BootOrder, DiskFormat, VmDefinition};
use porthole_core::{IsoId, Resources, TemplateId, VmId, VmName};
use porthole_plane::library::ImageLibrary;
use porthole_testing::contract::{self, Subject};
use porthole_testing::fake::FakeDriver;

#[tokio::test]
async fn the_fake_driver_keeps_the_driver_contract() {
    let dir = tempfile::tempdir().unwrap();
    let template = TemplateId::random();
    let iso = IsoId::random();
    std::fs::create_dir_all(dir.path().join("templates").join(template.to_string())).unwrap();
    std::fs::write(
        dir.path()
            .join("templates")
            .join(template.to_string())
            .join("disk"),
        b"disk",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("isos")).unwrap();
    std::fs::write(dir.path().join("isos").join(format!("{iso}.iso")), b"iso").unwrap();
    let driver = FakeDriver::new(Arc::new(ImageLibrary::at(dir.path())));
    let subject = Subject {
        driver: driver.clone(),
        definition: VmDefinition {
            id: VmId::random(),
            name: VmName::parse("contract").unwrap(),
            resources: Resources {
                cores: 1,
                memory_mib: 256,
                disk_gib: 1,
            },
            boot: BootMedia::Template {
                id: template,
                format: DiskFormat::Raw,
                direct_boot: None,
            },
            cloud_init: None,
            owner: Some("alice".into()),
            cdrom: None,
            boot_order: BootOrder::Disk,
        },
        iso,
        boot_timeout: Duration::from_secs(5),
    };
    contract::check(&subject).await;
    assert!(driver.is_empty(), "the contract leaves nothing behind");
}
