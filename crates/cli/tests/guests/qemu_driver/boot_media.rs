//! Putting an ISO in a template VM's CD-ROM drive and choosing the boot order: stored at
//! once, applied at the next start, and the (direct-kernel, TCG) test guest keeps booting.

use porthole_core::driver::{BootOrder, Driver, DriverError, NoProgress};
use porthole_testing::guest::make_iso;
use porthole_testing::qemu_node::{Node, guest_definition};

#[tokio::test]
async fn boot_media_change_at_the_next_start() {
    let node = Node::new().await;
    let scratch = tempfile::tempdir().unwrap();
    let iso = make_iso(
        scratch.path(),
        "hello",
        "HELLO",
        &[("hello.txt", "hello from the cdrom")],
    );
    let iso = node.images.add_iso(&iso);
    let vm = node.create(None).await.id;
    let has_cdrom = "[ -b /dev/sr0 ] && echo cd-$((3 + 4))-present";

    // Changed while running: nothing happens until the next start.
    node.driver.start(vm).await.unwrap();
    node.wait_for_shell(vm).await;
    node.driver
        .set_boot_media(vm, Some(iso), BootOrder::Cdrom)
        .await
        .unwrap();
    let out = node.run(vm, has_cdrom).await;
    assert!(!out.contains("cd-7-present"), "{out}");
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(node.files(vm).definition()).unwrap()).unwrap();
    assert_eq!(stored["boot_order"], "cdrom");
    // vm.json names the ISO by identity, never by a path of the plane's.
    assert_eq!(stored["cdrom"], iso.to_string());

    // The next start has the ISO in the drive; the kernel still boots first.
    node.driver.stop(vm).await.unwrap();
    node.driver.start(vm).await.unwrap();
    node.wait_for_shell(vm).await;
    let out = node
        .run(
            vm,
            "mkdir -p /mnt && mount -t iso9660 -o ro /dev/sr0 /mnt && cat /mnt/hello.txt; umount /mnt",
        )
        .await;
    assert!(out.contains("\nhello from the cdrom"), "{out}");

    // Stopped: take the ISO out again and boot from disk.
    node.driver.stop(vm).await.unwrap();
    node.driver
        .set_boot_media(vm, None, BootOrder::Disk)
        .await
        .unwrap();
    node.driver.start(vm).await.unwrap();
    node.wait_for_shell(vm).await;
    let out = node.run(vm, has_cdrom).await;
    assert!(!out.contains("cd-7-present"), "{out}");
    node.driver.delete(vm).await.unwrap();
}

#[tokio::test]
async fn missing_isos_and_vms_are_refused() {
    let node = Node::new().await;
    let vm = node.create(None).await.id;
    let unknown = porthole_core::IsoId::random();
    let err = node
        .driver
        .set_boot_media(vm, Some(unknown), BootOrder::Cdrom)
        .await
        .unwrap_err();
    assert!(matches!(err, DriverError::BadImage(_)), "{err:?}");
    assert!(err.to_string().contains(&unknown.to_string()), "{err}");

    // An ISO file that is not one (a directory here) is refused as well.
    let scratch = tempfile::tempdir().unwrap();
    let not_a_file = node.images.add_iso(scratch.path());
    let mut def = guest_definition(None);
    def.cdrom = Some(not_a_file);
    let err = node.driver.create(&def, &NoProgress).await.unwrap_err();
    assert!(matches!(err, DriverError::BadImage(_)), "{err:?}");

    let err = node
        .driver
        .set_boot_media(porthole_core::VmId::random(), None, BootOrder::Disk)
        .await
        .unwrap_err();
    assert!(matches!(err, DriverError::NotFound(_)), "{err:?}");
}
