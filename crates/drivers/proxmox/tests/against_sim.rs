//! The client against the Proxmox VE simulator (crates/pve-sim), over HTTPS with the
//! simulator's self-signed certificate pinned: the two are written from the same official
//! schema, so this is where their readings of it must agree.

use std::time::Duration;

use porthole_proxmox::types::{CloneRequest, PowerAction, VmRunState};
use porthole_proxmox::{
    CertFingerprint, Client, ClientBuilder, Credentials, Error, PasswordLogin, Secret, TaskOutcome,
    TaskWait, TlsOptions,
};
use porthole_pve_sim::{PveSim, SimVm, VM_USER};

const WAIT: TaskWait = TaskWait {
    interval: Duration::from_millis(50),
    timeout: Duration::from_secs(20),
};

async fn simulator() -> PveSim {
    PveSim::builder()
        .user("root@pam", "root-password")
        .user("alice@pve", "alice-password")
        .acl("alice@pve", "/pool/alice", VM_USER, true)
        .pool("alice", None)
        .vm(SimVm::new(9000, "pve1", "debian-template").template())
        .vm(SimVm::new(101, "pve2", "someone-elses"))
        .spawn("127.0.0.1:0")
        .await
        .unwrap()
}

fn client(sim: &PveSim, user: &str, realm: &str, password: &str) -> Client {
    let fingerprint: CertFingerprint = sim.fingerprint().parse().unwrap();
    ClientBuilder::new(
        sim.base_url(),
        Credentials::Password(PasswordLogin::new(user, realm, Secret::new(password))),
    )
    .tls(TlsOptions::Fingerprint(fingerprint))
    .build()
    .unwrap()
}

async fn succeeds(client: &Client, upid: porthole_proxmox::Upid) {
    let outcome = client.wait_task(&upid, WAIT).await.unwrap();
    assert!(
        matches!(outcome, TaskOutcome::Ok | TaskOutcome::Warnings(_)),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn the_client_drives_a_vm_through_its_life_on_the_simulator() {
    let sim = simulator().await;
    let root = client(&sim, "root", "pam", "root-password");
    assert!(!root.version().await.unwrap().version.is_empty());
    let nodes = root.nodes().await.unwrap();
    assert_eq!(nodes.len(), 2);

    // A linked clone of the template into alice's pool, on a fresh VMID.
    let vmid = root
        .with_fresh_vmid(3, |vmid| {
            let root = root.clone();
            async move {
                let mut request = CloneRequest::new(vmid);
                request.name = Some("web1".into());
                request.pool = Some("alice".into());
                let upid = root.clone_qemu("pve1", 9000, &request).await?;
                Ok((vmid, upid))
            }
        })
        .await
        .unwrap();
    let (vmid, upid) = vmid;
    succeeds(&root, upid).await;
    assert_eq!(
        root.qemu_status("pve1", vmid).await.unwrap().status,
        VmRunState::Stopped
    );
    assert_eq!(root.pool("alice").await.unwrap().members.len(), 1);

    succeeds(
        &root,
        root.power("pve1", vmid, PowerAction::Start).await.unwrap(),
    )
    .await;
    assert_eq!(
        root.qemu_status("pve1", vmid).await.unwrap().status,
        VmRunState::Running
    );

    // Consoles: a one-time VNC password and a termproxy ticket, and the websocket target.
    let vnc = root.vnc_proxy("pve1", vmid, true).await.unwrap();
    assert!(vnc.password.is_some() && vnc.port > 0);
    let target = root
        .vnc_websocket("pve1", vmid, vnc.port, &vnc.ticket)
        .await
        .unwrap();
    assert_eq!(target.url.scheme(), "wss");
    let term = root.term_proxy("pve1", vmid, None).await.unwrap();
    assert!(term.port > 0);

    // Alice sees only her pool's VM; her permissions say so too.
    let alice = client(&sim, "alice", "pve", "alice-password");
    let visible: Vec<u32> = alice
        .cluster_vms()
        .await
        .unwrap()
        .iter()
        .map(|v| v.vmid)
        .collect();
    assert_eq!(visible, [vmid]);
    let permissions = alice.permissions().await.unwrap();
    assert!(permissions.has_on_vm(vmid, Some("alice"), "VM.Console"));
    assert!(!permissions.has_on_vm(101, None, "VM.Audit"));

    succeeds(
        &root,
        root.power("pve1", vmid, PowerAction::Stop).await.unwrap(),
    )
    .await;
    succeeds(&root, root.delete_qemu("pve1", vmid).await.unwrap()).await;
    assert!(matches!(
        root.qemu_status("pve1", vmid).await,
        Err(Error::NotFound { .. }) | Err(Error::Api { .. })
    ));
}

#[tokio::test]
async fn a_wrong_pin_or_password_is_refused() {
    let sim = simulator().await;
    let wrong_pin: CertFingerprint = "00".repeat(32).parse().unwrap();
    let pinned_wrong = ClientBuilder::new(
        sim.base_url(),
        Credentials::Password(PasswordLogin::new(
            "root",
            "pam",
            Secret::new("root-password"),
        )),
    )
    .tls(TlsOptions::Fingerprint(wrong_pin))
    .build()
    .unwrap();
    assert!(matches!(
        pinned_wrong.version().await,
        Err(Error::Connect { .. })
    ));
    let wrong_password = client(&sim, "root", "pam", "nope");
    assert!(matches!(
        wrong_password.version().await,
        Err(Error::Unauthorized { .. })
    ));
}
