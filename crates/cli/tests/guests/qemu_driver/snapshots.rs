//! Snapshots of a real (TCG) test guest: disk-only ones while stopped (qemu-img), ones with
//! memory while running (QMP jobs), rollback both ways, deletion, and the refusals.

use porthole_core::driver::{Driver, DriverError, PowerState};
use porthole_core::{SnapshotName, VmId};
use porthole_testing::qemu_node::Node;

fn name(s: &str) -> SnapshotName {
    SnapshotName::parse(s).unwrap()
}

async fn names(node: &Node, vm: VmId) -> Vec<(String, bool)> {
    node.driver
        .snapshots(vm)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.name.clone(), s.includes_ram()))
        .collect()
}

#[tokio::test]
async fn snapshots_stopped_and_running() {
    let node = Node::new().await;
    let vm = node.create(None).await.id;

    // Stopped: a disk-only snapshot through qemu-img.
    assert!(names(&node, vm).await.is_empty());
    node.driver
        .snapshot_create(vm, &name("clean"))
        .await
        .unwrap();
    let err = node
        .driver
        .snapshot_create(vm, &name("clean"))
        .await
        .unwrap_err();
    assert!(matches!(err, DriverError::Conflict { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("already has a snapshot named \"clean\""),
        "{err}"
    );
    let listed = node.driver.snapshots(vm).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].vm_state_size, 0);
    assert!(listed[0].created_at.timestamp() > 1_600_000_000);

    // Running: write a marker, then snapshot with memory.
    node.driver.start(vm).await.unwrap();
    node.wait_for_shell(vm).await;
    node.run(vm, "echo one > /data/marker; sync").await;
    node.driver
        .snapshot_create(vm, &name("live"))
        .await
        .unwrap();
    assert_eq!(
        names(&node, vm).await,
        [("clean".to_owned(), false), ("live".to_owned(), true)]
    );
    assert!(node.driver.snapshots(vm).await.unwrap()[1].vm_state_size > 0);
    assert_eq!(node.driver.status(vm).await.unwrap(), PowerState::Running);

    // Change the disk and memory after the snapshot.
    node.run(vm, "rm /data/marker; echo two > /data/after; sync")
        .await;

    // A running VM cannot resume from a snapshot without memory.
    let err = node
        .driver
        .snapshot_rollback(vm, &name("clean"))
        .await
        .unwrap_err();
    assert!(matches!(err, DriverError::Conflict { .. }), "{err:?}");
    assert!(err.to_string().contains("stop the VM"), "{err}");

    // Rolling back to the live snapshot restores the running guest as it was.
    node.driver
        .snapshot_rollback(vm, &name("live"))
        .await
        .unwrap();
    assert_eq!(node.driver.status(vm).await.unwrap(), PowerState::Running);
    let out = node
        .run(
            vm,
            "cat /data/marker; [ -e /data/after ] || echo after-$((0 + 1))-absent",
        )
        .await;
    assert!(out.contains("\none\r\n"), "{out}");
    assert!(out.contains("after-1-absent"), "{out}");

    // Deleting while running; a missing name is named in the error.
    node.driver
        .snapshot_delete(vm, &name("live"))
        .await
        .unwrap();
    assert_eq!(names(&node, vm).await, [("clean".to_owned(), false)]);
    let err = node
        .driver
        .snapshot_delete(vm, &name("live"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DriverError::SnapshotNotFound { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("\"live\""), "{err}");

    // Stopped: roll the disk back to before the marker existed.
    node.driver.stop(vm).await.unwrap();
    node.driver
        .snapshot_rollback(vm, &name("clean"))
        .await
        .unwrap();
    node.driver.start(vm).await.unwrap();
    node.wait_for_shell(vm).await;
    let out = node
        .run(
            vm,
            "cat /data/README; [ -e /data/marker ] || echo marker-$((0 + 2))-absent",
        )
        .await;
    assert!(out.contains("porthole demo data disk"), "{out}");
    assert!(out.contains("marker-2-absent"), "{out}");
    node.driver.stop(vm).await.unwrap();

    node.driver
        .snapshot_delete(vm, &name("clean"))
        .await
        .unwrap();
    assert!(names(&node, vm).await.is_empty());
    let err = node
        .driver
        .snapshot_rollback(vm, &name("nope"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("VM {vm} has no snapshot named \"nope\"")
    );
    node.driver.delete(vm).await.unwrap();
}

#[tokio::test]
async fn bad_names_and_unknown_vms_are_errors() {
    for bad in ["", "1st", "has space", "dot.ted", &"x".repeat(41)] {
        let err = SnapshotName::parse(bad).unwrap_err();
        assert_eq!(err.field, "snapshot", "{bad:?}");
    }
    let node = Node::new().await;
    let ghost = VmId::random();
    let err = node
        .driver
        .snapshot_create(ghost, &name("a"))
        .await
        .unwrap_err();
    assert!(matches!(err, DriverError::NotFound(_)), "{err:?}");
    assert!(matches!(
        node.driver.snapshots(ghost).await,
        Err(DriverError::NotFound(_))
    ));
}
