//! The [`Driver`] contract, as a test any driver can be put through: the QEMU driver with
//! a real guest (in the guest tier) and [`FakeDriver`](crate::fake::FakeDriver) (in the
//! fast tier) pass the same checks, so the fake cannot drift from what the plane relies on.
//!
//! What it holds a driver to:
//! 1. a VM it does not have is `NotFound` to status and power actions, and deleting it
//!    succeeds;
//! 2. a create that cannot be carried out (a template of another kind of node, an image
//!    the node cannot find) fails and keeps nothing;
//! 3. create, start, stop and delete are idempotent: a second call succeeds and changes
//!    nothing;
//! 4. power actions that need a guest refuse a VM that is stopped; the state each action
//!    leads to is what `status` and `inventory` report;
//! 5. the serial console works while the VM runs (the guest's banner arrives on it and in
//!    `console_output`) and is refused while it is stopped;
//! 6. disks only grow; snapshots keep memory while running and not while stopped, names
//!    are unique, and missing ones are `SnapshotNotFound`;
//! 7. a CD-ROM change names an ISO the node can find, or is refused.
//!
//! Optional operations are checked only where [`Driver::capabilities`] offers them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use porthole_core::driver::{
    BootMedia, BootOrder, ConsoleEndpoint, ConsoleKind, Driver, DriverError, NoProgress,
    PowerState, VmDefinition,
};
use porthole_core::{IsoId, SnapshotName, TemplateId, VmId};

/// What the guest prints on its serial console once it has booted.
pub const BANNER: &str = "porthole-guest ready";

/// A driver under test, and what its images hold.
#[derive(Debug)]
pub struct Subject {
    /// The driver.
    pub driver: Arc<dyn Driver>,
    /// A VM the driver can create: its boot media are a template the driver's images hold.
    pub definition: VmDefinition,
    /// An ISO the driver's images hold.
    pub iso: IsoId,
    /// How long the guest may take to boot and print [`BANNER`].
    pub boot_timeout: Duration,
}

/// Puts `subject` through the whole contract; panics at the first broken rule.
pub async fn check(subject: &Subject) {
    let driver = subject.driver.as_ref();
    let caps = driver.capabilities();
    let def = &subject.definition;
    let id = def.id;

    // 1. Unknown VMs.
    let unknown = VmId::random();
    assert!(matches!(
        driver.status(unknown).await,
        Err(DriverError::NotFound(_))
    ));
    assert!(matches!(
        driver.start(unknown).await,
        Err(DriverError::NotFound(_))
    ));
    driver
        .delete(unknown)
        .await
        .expect("deleting what is gone succeeds");

    // 2. Creates that cannot be carried out keep nothing.
    let foreign = VmDefinition {
        id: VmId::random(),
        boot: BootMedia::NodeTemplate {
            reference: "9000".into(),
        },
        ..def.clone()
    };
    let err = driver.create(&foreign, &NoProgress).await.unwrap_err();
    assert!(matches!(err, DriverError::BadImage(_)), "{err:?}");
    assert!(matches!(
        driver.status(foreign.id).await,
        Err(DriverError::NotFound(_))
    ));
    if let BootMedia::Template { format, .. } = &def.boot {
        let missing = VmDefinition {
            id: VmId::random(),
            boot: BootMedia::Template {
                id: TemplateId::random(),
                format: *format,
                direct_boot: None,
            },
            ..def.clone()
        };
        let err = driver.create(&missing, &NoProgress).await.unwrap_err();
        assert!(matches!(err, DriverError::BadImage(_)), "{err:?}");
        assert!(matches!(
            driver.status(missing.id).await,
            Err(DriverError::NotFound(_))
        ));
    }

    // 3. Create, twice.
    driver.create(def, &NoProgress).await.expect("create");
    driver.create(def, &NoProgress).await.expect("create again");
    assert_eq!(driver.status(id).await.unwrap(), PowerState::Stopped);
    let inventory = driver.inventory().await.unwrap();
    assert!(
        inventory.contains(&(id, PowerState::Stopped)),
        "{inventory:?}"
    );

    // 4. What needs a guest refuses a stopped VM.
    for (what, refused) in [
        ("suspend", driver.suspend(id).await),
        ("resume", driver.resume(id).await),
        ("reset", driver.reset(id).await),
    ] {
        let err = refused.expect_err(what);
        assert!(!matches!(err, DriverError::NotFound(_)), "{what}: {err:?}");
    }
    if caps.console(ConsoleKind::Serial) {
        assert!(driver.console(id, ConsoleKind::Serial).await.is_err());
    }

    // Start, twice; the guest boots.
    driver.start(id).await.expect("start");
    driver.start(id).await.expect("start again");
    assert_eq!(driver.status(id).await.unwrap(), PowerState::Running);
    if caps.console(ConsoleKind::Serial) {
        let endpoint = driver.console(id, ConsoleKind::Serial).await.unwrap();
        assert!(
            matches!(
                endpoint,
                ConsoleEndpoint::Shared(_) | ConsoleEndpoint::Piped(_)
            ),
            "{endpoint:?}"
        );
    }
    if caps.console_output {
        wait_for_banner(driver, id, subject.boot_timeout).await;
    }
    driver.suspend(id).await.expect("suspend");
    assert_eq!(driver.status(id).await.unwrap(), PowerState::Paused);
    driver.resume(id).await.expect("resume");
    assert_eq!(driver.status(id).await.unwrap(), PowerState::Running);

    // 6. Disks only grow, while running too where the node says so.
    if caps.resize && caps.live_disk_growth {
        let mut bigger = def.resources;
        bigger.disk_gib += 1;
        driver.resize(id, bigger).await.expect("grow the disk");
        assert!(
            driver.resize(id, def.resources).await.is_err(),
            "a disk shrank"
        );
    }
    if caps.snapshots {
        let hot = SnapshotName::parse("hot").unwrap();
        driver.snapshot_create(id, &hot).await.expect("snapshot");
        let taken = driver.snapshots(id).await.unwrap();
        let found = taken.iter().find(|s| s.name == "hot").expect("listed");
        assert!(
            found.includes_ram(),
            "a running VM's snapshot keeps its memory"
        );
        let err = driver.snapshot_create(id, &hot).await.unwrap_err();
        assert!(matches!(err, DriverError::Conflict { .. }), "{err:?}");
    }

    // Stop, twice.
    driver.stop(id).await.expect("stop");
    driver.stop(id).await.expect("stop again");
    assert_eq!(driver.status(id).await.unwrap(), PowerState::Stopped);
    let inventory = driver.inventory().await.unwrap();
    assert!(
        inventory.contains(&(id, PowerState::Stopped)),
        "{inventory:?}"
    );

    if caps.snapshots {
        let cold = SnapshotName::parse("cold").unwrap();
        driver.snapshot_create(id, &cold).await.expect("snapshot");
        let taken = driver.snapshots(id).await.unwrap();
        let found = taken.iter().find(|s| s.name == "cold").expect("listed");
        assert!(
            !found.includes_ram(),
            "a stopped VM's snapshot has no memory"
        );
        driver.snapshot_rollback(id, &cold).await.expect("rollback");
        let missing = SnapshotName::parse("never").unwrap();
        let err = driver.snapshot_rollback(id, &missing).await.unwrap_err();
        assert!(
            matches!(err, DriverError::SnapshotNotFound { .. }),
            "{err:?}"
        );
        driver.snapshot_delete(id, &cold).await.expect("delete");
        let err = driver.snapshot_delete(id, &cold).await.unwrap_err();
        assert!(
            matches!(err, DriverError::SnapshotNotFound { .. }),
            "{err:?}"
        );
    }

    // 7. CD-ROM changes.
    if caps.boot_media {
        driver
            .set_boot_media(id, Some(subject.iso), BootOrder::Cdrom)
            .await
            .expect("an ISO the node has");
        let err = driver
            .set_boot_media(id, Some(IsoId::random()), BootOrder::Cdrom)
            .await
            .unwrap_err();
        assert!(matches!(err, DriverError::BadImage(_)), "{err:?}");
        driver
            .set_boot_media(id, None, BootOrder::Disk)
            .await
            .expect("an empty drive");
    }

    // Delete, twice; nothing is left.
    driver.delete(id).await.expect("delete");
    driver.delete(id).await.expect("delete again");
    assert!(matches!(
        driver.status(id).await,
        Err(DriverError::NotFound(_))
    ));
    let inventory = driver.inventory().await.unwrap();
    assert!(!inventory.iter().any(|(vm, _)| *vm == id), "{inventory:?}");
}

/// Waits until VM `id`'s serial output shows [`BANNER`].
async fn wait_for_banner(driver: &dyn Driver, id: VmId, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let output = driver.console_output(id).await.unwrap();
        if String::from_utf8_lossy(&output).contains(BANNER) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the guest did not print {BANNER:?}: {}",
            String::from_utf8_lossy(&output)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
