//! Self-service rules through the API: quotas enforced in one transaction, limits per user
//! and per group, renewal, login lockout and the audit log. Real planes, real QEMU guests.

use porthole_core::VmState;
use porthole_testing::guest::make_iso;
use porthole_testing::server::*;

#[tokio::test]
async fn snapshots_and_boot_media_work_through_the_api() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let vm = running_vm(&admin, "snappy").await;
    shell_ready(&admin, vm.id).await;

    // A running VM's snapshot holds its memory; a bad or taken name is refused up front.
    succeed(
        &admin,
        &admin.create_snapshot(vm.id, "first").await.unwrap().job,
    )
    .await;
    let snapshots = admin.snapshots(vm.id).await.unwrap();
    assert_eq!(snapshots.len(), 1);
    assert!(snapshots[0].includes_memory && snapshots[0].name == "first");
    let (status, _, _, field) = api_error(admin.create_snapshot(vm.id, "first").await.unwrap_err());
    assert_eq!((status, field.as_deref()), (409, Some("name")));
    let (status, _, _, field) =
        api_error(admin.create_snapshot(vm.id, "no spaces").await.unwrap_err());
    assert_eq!((status, field.as_deref()), (422, Some("name")));
    assert_eq!(
        api_error(admin.rollback_snapshot(vm.id, "missing").await.unwrap_err()).0,
        404
    );

    // Rolling a running VM back keeps it running.
    succeed(
        &admin,
        &admin.rollback_snapshot(vm.id, "first").await.unwrap().job,
    )
    .await;
    assert_eq!(admin.vm(vm.id).await.unwrap().state, VmState::Running);

    // An ISO in the CD-ROM drive, booted first, from the next start.
    let dir = tempfile::tempdir().unwrap();
    let iso = make_iso(dir.path(), "tools", "CDROM", &[("README", "tools")]);
    let (code, _, err) = server.cli(
        &server.admin_token().await,
        &["iso", "import", iso.to_str().unwrap(), "--name", "tools"],
    );
    assert_eq!(code, 0, "{err}");
    let media = porthole_api::UpdateVmRequest {
        cdrom: Some("tools".into()),
        boot_order: Some(porthole_core::BootOrder::Cdrom),
        ..Default::default()
    };
    let updated = admin.update_vm(vm.id, &media).await.unwrap();
    assert_eq!(
        (updated.cdrom.as_deref(), updated.boot_order),
        (Some("tools"), porthole_core::BootOrder::Cdrom)
    );
    succeed(&admin, &admin.vm_action(vm.id, "stop").await.unwrap().job).await;
    succeed(&admin, &admin.vm_action(vm.id, "start").await.unwrap().job).await;
    let pid = server.qemu_pids_of(vm.id)[0];
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .replace('\0', " ");
    assert!(
        cmdline.contains("ide-cd,drive=cdrom0,bootindex=1") && cmdline.contains("/isos/"),
        "{cmdline}"
    );
    // An ISO in a drive is in use.
    let (status, ..) = api_error(admin.delete_iso("tools").await.unwrap_err());
    assert_eq!(status, 409);

    // Stopped: a disk-only snapshot, then delete it.
    succeed(&admin, &admin.vm_action(vm.id, "stop").await.unwrap().job).await;
    succeed(
        &admin,
        &admin.create_snapshot(vm.id, "cold").await.unwrap().job,
    )
    .await;
    let cold = admin
        .snapshots(vm.id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == "cold")
        .unwrap();
    assert!(!cold.includes_memory);
    succeed(
        &admin,
        &admin.delete_snapshot(vm.id, "cold").await.unwrap().job,
    )
    .await;
    assert_eq!(admin.snapshots(vm.id).await.unwrap().len(), 1);
    let audit = admin.audit_log(100).await.unwrap();
    for action in [
        "vm.snapshot",
        "vm.rollback",
        "vm.delete_snapshot",
        "iso.import",
        "vm.update",
    ] {
        assert!(audit.iter().any(|e| e.action == action), "{action}");
    }
}
