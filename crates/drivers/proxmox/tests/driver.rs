//! The Proxmox `Driver` against the simulator: a VM's whole life, placement on the node
//! with the most free memory, the owner's pool, and idempotent re-runs.

use std::time::Duration;

use porthole_core::driver::{BootMedia, BootOrder, Driver, NoProgress, PowerState, VmDefinition};
use porthole_core::{DriverError, Resources, VmId, VmName};
use porthole_proxmox::{
    CertFingerprint, ClientBuilder, Credentials, PasswordLogin, ProxmoxDriver, Secret, TlsOptions,
};
use porthole_pve_sim::{PveSim, SimVm};

async fn cluster() -> PveSim {
    PveSim::builder()
        .user("root@pam", "root-password")
        .vm(SimVm::new(9000, "pve1", "debian-template").template())
        .task_duration(Duration::from_millis(50))
        .spawn("127.0.0.1:0")
        .await
        .unwrap()
}

fn driver(sim: &PveSim, pinned: Option<&str>) -> ProxmoxDriver {
    let fingerprint: CertFingerprint = sim.fingerprint().parse().unwrap();
    let client = ClientBuilder::new(
        sim.base_url(),
        Credentials::Password(PasswordLogin::new(
            "root",
            "pam",
            Secret::new("root-password"),
        )),
    )
    .tls(TlsOptions::Fingerprint(fingerprint))
    .build()
    .unwrap();
    ProxmoxDriver::new(client, pinned.map(str::to_owned))
}

fn definition(name: &str, template: &str) -> VmDefinition {
    VmDefinition {
        id: VmId::random(),
        name: VmName::parse(name).unwrap(),
        resources: Resources {
            cores: 2,
            memory_mib: 1024,
            disk_gib: 8,
        },
        boot: BootMedia::NodeTemplate {
            reference: template.into(),
        },
        cloud_init: None,
        owner: Some("alice".into()),
        cdrom: None,
        boot_order: BootOrder::Disk,
    }
}

#[tokio::test]
async fn a_vm_lives_and_dies_on_the_cluster() {
    let sim = cluster().await;
    let driver = driver(&sim, None);
    let def = definition("web1", "9000");
    driver.create(&def, &NoProgress).await.unwrap();
    // Re-running a create (after a crash) finds the VM by its tag and does nothing.
    driver.create(&def, &NoProgress).await.unwrap();
    assert_eq!(
        driver.inventory().await.unwrap(),
        [(def.id, PowerState::Stopped)]
    );
    assert_eq!(driver.status(def.id).await.unwrap(), PowerState::Stopped);

    driver.start(def.id).await.unwrap();
    driver.start(def.id).await.unwrap();
    assert_eq!(driver.status(def.id).await.unwrap(), PowerState::Running);
    driver.suspend(def.id).await.unwrap();
    assert_eq!(driver.status(def.id).await.unwrap(), PowerState::Paused);
    driver.resume(def.id).await.unwrap();
    driver.reset(def.id).await.unwrap();
    assert_eq!(driver.status(def.id).await.unwrap(), PowerState::Running);
    driver
        .shutdown(def.id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(driver.status(def.id).await.unwrap(), PowerState::Stopped);

    driver
        .resize(
            def.id,
            Resources {
                cores: 4,
                memory_mib: 2048,
                disk_gib: 8,
            },
        )
        .await
        .unwrap();

    // It went to pve1 (more free memory than pve2), into alice's pool, with its settings.
    let state = sim.sim();
    {
        let st = state.lock();
        let vm = st
            .vms
            .values()
            .find(|vm| {
                vm.config
                    .get("tags")
                    .is_some_and(|t| t.contains(&def.id.to_string()))
            })
            .expect("the VM is tagged");
        assert_eq!(vm.node, "pve1");
        assert_eq!(vm.pool.as_deref(), Some("alice"));
        assert_eq!(vm.config.get("name").map(String::as_str), Some("web1"));
        assert_eq!(vm.config.get("cores").map(String::as_str), Some("4"));
        assert_eq!(vm.config.get("memory").map(String::as_str), Some("2048"));
    }

    driver.delete(def.id).await.unwrap();
    driver.delete(def.id).await.unwrap();
    assert!(matches!(driver.status(def.id).await, Err(DriverError::NotFound(id)) if id == def.id));
    assert!(driver.inventory().await.unwrap().is_empty());
}

#[tokio::test]
async fn placement_can_be_pinned_and_bad_templates_are_refused() {
    let sim = cluster().await;
    let pinned = driver(&sim, Some("pve2"));
    let def = definition("far", "9000");
    pinned.create(&def, &NoProgress).await.unwrap();
    let on_pve2 =
        sim.sim().lock().vms.values().any(|vm| {
            vm.node == "pve2" && vm.config.get("name").map(String::as_str) == Some("far")
        });
    assert!(on_pve2, "a full clone onto the pinned node");

    for template in ["12345", "not-a-vmid"] {
        let err = pinned
            .create(&definition("bad", template), &NoProgress)
            .await
            .unwrap_err();
        assert!(matches!(err, DriverError::BadImage(_)), "{template}: {err}");
    }
}
