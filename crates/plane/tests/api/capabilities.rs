//! The plane decides from a node's capabilities, never by trying: what a Proxmox node does
//! not offer (snapshots, the serial log, CD-ROM and boot-order changes) is refused up front
//! with 409 and changes nothing, while what it does offer works, and a node that keeps no
//! templates of its own cannot have one linked. The Proxmox VE simulator stands in for the
//! cluster, with in-memory VMs.

use std::time::Duration;

use porthole_api::{CreateNodeRequest, CreateVmRequest, LinkTemplateRequest, UpdateVmRequest};
use porthole_core::BootOrder;
use porthole_pve_sim::{PveSim, SimVm};
use porthole_testing::server::*;

use crate::demo_app;

const TOKEN: &str = "root@pam!porthole=5e1f0c1e-7d5a-4d4b-9a53-2b5f3f0e9a11";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_node_cannot_do_is_refused_before_anything_changes() {
    let sim = PveSim::builder()
        .token("root@pam!porthole", "5e1f0c1e-7d5a-4d4b-9a53-2b5f3f0e9a11")
        .vm(SimVm::new(9000, "pve1", "debian-template").template())
        .task_duration(Duration::from_millis(20))
        .spawn("127.0.0.1:0")
        .await
        .unwrap();
    let server = demo_app().await;
    server.iso("rescue", true).await;
    let admin = server.admin().await;
    admin
        .add_node(&CreateNodeRequest {
            name: "pve".into(),
            kind: "proxmox".into(),
            url: sim.base_url(),
            token: Some(TOKEN.into()),
            fingerprint: Some(sim.fingerprint().to_string()),
            ..CreateNodeRequest::default()
        })
        .await
        .unwrap();
    let link = |name: &str| LinkTemplateRequest {
        name: name.into(),
        reference: "9000".into(),
    };
    admin.link_template("pve", &link("debian")).await.unwrap();

    // The built-in node runs the plane's own images: nothing of its own to link.
    let (status, _, message, field) = api_error(
        admin
            .link_template("local", &link("other"))
            .await
            .unwrap_err(),
    );
    assert_eq!((status, field.as_deref()), (422, Some("node")), "{message}");
    assert!(
        message.contains("keeps no templates of its own"),
        "{message}"
    );

    let created = admin
        .create_vm(&CreateVmRequest {
            disk_gib: 4,
            ..CreateVmRequest::small("cloned", "debian")
        })
        .await
        .unwrap();
    succeed(&admin, &created.job).await;
    let vm = admin.vm(created.vm.id).await.unwrap();
    assert_eq!(vm.node, "pve");
    let jobs_before = admin.jobs().await.unwrap().len();

    let refused = |e| {
        let (status, _, message, _) = api_error(e);
        assert_eq!(status, 409, "{message}");
        message
    };
    let message = refused(
        admin
            .update_vm(
                vm.id,
                &UpdateVmRequest {
                    cdrom: Some("rescue".into()),
                    boot_order: Some(BootOrder::Cdrom),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(
        message,
        "changing boot media is not supported by this VM's node"
    );
    let message = refused(admin.create_snapshot(vm.id, "before").await.unwrap_err());
    assert_eq!(message, "snapshots is not supported by this VM's node");
    let message = refused(admin.snapshots(vm.id).await.unwrap_err());
    assert_eq!(message, "snapshots is not supported by this VM's node");
    let message = refused(admin.console_output(vm.id).await.unwrap_err());
    assert_eq!(
        message,
        "serial console output is not supported by this VM's node"
    );

    // Nothing changed: no job was queued, the row is as it was.
    assert_eq!(admin.jobs().await.unwrap().len(), jobs_before);
    let after = admin.vm(vm.id).await.unwrap();
    assert_eq!((after.cdrom, after.boot_order), (None, BootOrder::Disk));

    // What the node does offer goes through: its disk grows while it runs.
    let grown = admin
        .update_vm(
            vm.id,
            &UpdateVmRequest {
                disk_gib: Some(6),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(grown.disk_gib, 6);

    // The same requests on the built-in node's VM are accepted: the difference is the node.
    let local = running_vm(&admin, "local-vm").await;
    admin
        .update_vm(
            local.id,
            &UpdateVmRequest {
                cdrom: Some("rescue".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    succeed(
        &admin,
        &admin.create_snapshot(local.id, "before").await.unwrap().job,
    )
    .await;
    assert_eq!(admin.snapshots(local.id).await.unwrap().len(), 1);
}
