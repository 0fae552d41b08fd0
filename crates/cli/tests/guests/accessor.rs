//! Accessor mode (`serve --auth proxmox`) against the PVE simulator with a real QEMU guest:
//! people log in with their Proxmox accounts, see only what VM.Audit shows them, and open
//! consoles only where they hold VM.Console.

use std::sync::Arc;
use std::time::Duration;

use futures::SinkExt;
use porthole_api::client::Client;
use porthole_core::ConsoleKind;
use porthole_pve_sim::{PveSim, QemuBackend, SimVm, VM_USER};
use porthole_testing::console::*;
use porthole_testing::guest::guest_dir;
use porthole_testing::server::*;

const LONG: Duration = Duration::from_secs(90);

async fn cluster() -> PveSim {
    let backend = Arc::new(QemuBackend::new(guest_dir()).unwrap());
    PveSim::builder()
        .user("alice@pve", "alice-pve-password")
        .user("bob@pve", "bob-pve-password")
        .user("carol@pve", "carol-pve-password")
        // Alice uses the VMs of her pool; Carol may only look at VM 100.
        .acl("alice@pve", "/pool/lab", VM_USER, true)
        .acl("carol@pve", "/vms/100", &["VM.Audit"], false)
        .vm(SimVm::new(100, "pve1", "lab-web").pool("lab").running())
        .vm(SimVm::new(101, "pve2", "other").memory(256))
        .backend(backend)
        .task_duration(Duration::from_millis(50))
        .spawn("127.0.0.1:0")
        .await
        .unwrap()
}

async fn login(server: &Server, username: &str, password: &str) -> Client {
    let response = server
        .anonymous()
        .login(username, password)
        .await
        .unwrap_or_else(|e| panic!("{username} cannot log in: {e}"));
    server.anonymous().with_token(response.token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxmox_permissions_decide_what_users_see_and_open() {
    let sim = cluster().await;
    let url = sim.base_url();
    let server = Server::start_with(&[
        "--auth",
        "proxmox",
        "--proxmox-url",
        &url,
        "--proxmox-fingerprint",
        sim.fingerprint(),
    ])
    .await;

    // No local accounts: the admin porthole would otherwise make does not exist.
    let (status, ..) = api_error(
        server
            .anonymous()
            .login("admin", ADMIN_PASSWORD)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 401);
    let (status, _, message, _) = api_error(
        server
            .anonymous()
            .login("alice@pve", "wrong")
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, message.as_str()),
        (401, "wrong username, password or realm")
    );

    // Alice sees the VM of her pool and opens its serial console through the gateway.
    let alice = login(&server, "alice@pve", "alice-pve-password").await;
    let vms = alice.proxmox_vms().await.unwrap();
    assert_eq!(
        vms.iter()
            .map(|v| (v.vmid, v.can_console))
            .collect::<Vec<_>>(),
        [(100, true)]
    );
    assert_eq!(vms[0].name, "lab-web");
    let ticket = alice
        .proxmox_console_ticket(100, ConsoleKind::Serial)
        .await
        .unwrap();
    assert_eq!(ticket.ws_path, "/api/v1/proxmox/vms/100/console/serial/ws");
    let mut socket = open(&alice, &ticket, true, None).await.unwrap();
    termproxy_login(&mut socket, "alice@pve", &ticket.ticket).await;
    read_until_text(&mut socket, "porthole-guest:/# ", LONG).await;
    socket
        .send(termproxy_input("echo accessor-$((40+2))\n"))
        .await
        .unwrap();
    read_until_text(&mut socket, "accessor-42", LONG).await;
    socket.close(None).await.unwrap();
    // And its screen, with the gateway answering PVE's VNC authentication.
    let ticket = alice
        .proxmox_console_ticket(100, ConsoleKind::Vnc)
        .await
        .unwrap();
    let mut socket = open(&alice, &ticket, false, None).await.unwrap();
    let init = rfb_viewer(&mut socket).await;
    assert_eq!((init.width, init.height), (720, 400), "{init:?}");
    socket.close(None).await.unwrap();

    // Bob holds no VM.Audit anywhere: he sees nothing and cannot open anything.
    let bob = login(&server, "bob", "bob-pve-password").await;
    assert!(bob.proxmox_vms().await.unwrap().is_empty());
    let (status, ..) = api_error(
        bob.proxmox_console_ticket(100, ConsoleKind::Serial)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 404);

    // Carol may look at VM 100 but holds no VM.Console: 403, and the refusal is audited.
    let carol = login(&server, "carol@pve", "carol-pve-password").await;
    let vms = carol.proxmox_vms().await.unwrap();
    assert_eq!(
        vms.iter()
            .map(|v| (v.vmid, v.can_console))
            .collect::<Vec<_>>(),
        [(100, false)]
    );
    let (status, _, message, _) = api_error(
        carol
            .proxmox_console_ticket(100, ConsoleKind::Vnc)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 403);
    assert!(message.contains("VM.Console"), "{message}");

    // A ticket minted while Alice held VM.Console is refused once Proxmox takes it away.
    let ticket = alice
        .proxmox_console_ticket(100, ConsoleKind::Serial)
        .await
        .unwrap();
    sim.sim()
        .lock()
        .access
        .users
        .get_mut("alice@pve")
        .unwrap()
        .acls
        .clear();
    let refused = open(&alice, &ticket, false, None).await.unwrap_err();
    assert_eq!(refused, 403);
    assert!(alice.proxmox_vms().await.unwrap().is_empty());

    // The web login page offers the realm; no password or ticket reaches the log.
    let page = reqwest::get(format!("{}/login", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("name=\"realm\"") && page.contains("value=\"pve\""));
    let log = server.log();
    for secret in ["alice-pve-password", "PVE:alice@pve"] {
        assert!(!log.contains(secret), "{secret} leaked into the log");
    }
}
