//! A Proxmox VE cluster as a porthole node, on the API simulator with real QEMU guests
//! behind it: adding the node (and refusing bad settings), linking its template, a member's
//! VM through its whole life in their own pool, and both consoles through the gateway.

use std::sync::Arc;
use std::time::Duration;

use futures::SinkExt;
use porthole_api::{CreateNodeRequest, CreateVmRequest, UpdateVmRequest};
use porthole_core::{ConsoleKind, VmState};
use porthole_pve_sim::{PveSim, QemuBackend, SimVm};
use porthole_testing::console::*;
use porthole_testing::guest::guest_dir;
use porthole_testing::server::*;

const LONG: Duration = Duration::from_secs(90);
const TOKEN: &str = "root@pam!porthole=5e1f0c1e-7d5a-4d4b-9a53-2b5f3f0e9a11";

async fn cluster() -> PveSim {
    let backend = Arc::new(QemuBackend::new(guest_dir()).unwrap());
    PveSim::builder()
        .user("root@pam", "root-password")
        .token("root@pam!porthole", "5e1f0c1e-7d5a-4d4b-9a53-2b5f3f0e9a11")
        .vm(SimVm::new(9000, "pve1", "debian-template").template())
        .backend(backend)
        .task_duration(Duration::from_millis(50))
        .spawn("127.0.0.1:0")
        .await
        .unwrap()
}

fn request(sim: &PveSim) -> CreateNodeRequest {
    CreateNodeRequest {
        name: "pve".into(),
        kind: "proxmox".into(),
        url: sim.base_url(),
        username: Some("root".into()),
        password: Some("root-password".into()),
        realm: Some("pam".into()),
        fingerprint: Some(sim.fingerprint().to_string()),
        ..CreateNodeRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_node_settings_are_refused_and_leave_nothing() {
    let sim = cluster().await;
    let server = Server::start().await;
    let admin = server.admin().await;

    let refused = [
        (
            CreateNodeRequest {
                password: Some("wrong".into()),
                ..request(&sim)
            },
            "password",
        ),
        (
            CreateNodeRequest {
                fingerprint: Some("00".repeat(32)),
                ..request(&sim)
            },
            "url",
        ),
        (
            CreateNodeRequest {
                fingerprint: Some("not-hex".into()),
                ..request(&sim)
            },
            "fingerprint",
        ),
        (
            CreateNodeRequest {
                insecure: true,
                ..request(&sim)
            },
            "tls",
        ),
        (
            CreateNodeRequest {
                username: None,
                password: None,
                realm: None,
                ..request(&sim)
            },
            "token",
        ),
        (
            CreateNodeRequest {
                token: Some("root@pam".into()),
                username: None,
                password: None,
                realm: None,
                ..request(&sim)
            },
            "token",
        ),
        (
            CreateNodeRequest {
                url: "ftp://pve".into(),
                ..request(&sim)
            },
            "url",
        ),
        (
            CreateNodeRequest {
                name: "local".into(),
                ..request(&sim)
            },
            "name",
        ),
        (
            CreateNodeRequest {
                kind: "xen".into(),
                ..request(&sim)
            },
            "kind",
        ),
        (
            CreateNodeRequest {
                pve_node: Some("pve9".into()),
                ..request(&sim)
            },
            "pve_node",
        ),
    ];
    for (bad, field) in refused {
        let (status, _, message, got) = api_error(admin.add_node(&bad).await.unwrap_err());
        assert_eq!(
            (status, got.as_deref()),
            (422, Some(field)),
            "{field}: {message}"
        );
    }
    let nodes = admin.nodes().await.unwrap();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(nodes[0].name, "local");

    // Members may not add nodes; the CLI says what went wrong.
    let alice = member(&server, &admin, "alice").await;
    let (status, ..) = api_error(alice.add_node(&request(&sim)).await.unwrap_err());
    assert_eq!(status, 403);
    let token = server.admin_token().await;
    let (code, _, stderr) = server.cli(
        &token,
        &[
            "node",
            "add",
            "pve",
            "--proxmox",
            &sim.base_url(),
            "--insecure",
        ],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("--token"), "{stderr}");
    assert!(!server.log().contains("root-password"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_run_vms_on_a_proxmox_node_with_consoles() {
    let sim = cluster().await;
    let server = Server::start().await;
    let admin = server.admin().await;
    let token = server.admin_token().await;

    // The admin adds the cluster with an API token and a pinned certificate, and links
    // its template.
    let fingerprint = sim.fingerprint().to_string();
    let (code, stdout, stderr) = server.cli(
        &token,
        &[
            "node",
            "add",
            "pve",
            "--proxmox",
            &sim.base_url(),
            "--token",
            TOKEN,
            "--fingerprint",
            &fingerprint,
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("added node pve"), "{stdout}");
    let (code, stdout, stderr) = server.cli(
        &token,
        &[
            "template", "link", "debian", "--node", "pve", "--vmid", "12345",
        ],
    );
    assert_ne!(code, 0, "{stdout}");
    assert!(stderr.contains("12345"), "{stderr}");
    let (code, stdout, stderr) = server.cli(
        &token,
        &[
            "template", "link", "debian", "--node", "pve", "--vmid", "9000",
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    admin.approve_template("debian", true).await.unwrap();
    let (code, stdout, _) = server.cli(&token, &["node", "list"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("pve") && stdout.contains("proxmox"),
        "{stdout}"
    );

    // A member makes a VM from it: it is cloned into a pool named after them.
    let alice = member(&server, &admin, "alice").await;
    let too_small = alice
        .create_vm(&CreateVmRequest::small("web1", "debian"))
        .await
        .unwrap_err();
    assert_eq!(api_error(too_small).3.as_deref(), Some("disk_gib"));
    let created = alice
        .create_vm(&CreateVmRequest {
            disk_gib: 5,
            ..CreateVmRequest::small("web1", "debian")
        })
        .await
        .unwrap();
    assert_eq!(created.vm.node, "pve");
    succeed(&alice, &created.job).await;
    let id = created.vm.id;
    assert_eq!(alice.vm(id).await.unwrap().state, VmState::Running);
    let (vmid, pool, config) = {
        let sim = sim.sim().lock();
        let (vmid, vm) = sim
            .vms
            .iter()
            .find(|(_, vm)| {
                vm.config
                    .get("tags")
                    .is_some_and(|t| t.contains(&id.to_string()))
            })
            .expect("a tagged VM in the cluster");
        (*vmid, vm.pool.clone(), vm.config.clone())
    };
    assert_eq!(pool.as_deref(), Some("alice"));
    assert_eq!(config.get("ciuser").map(String::as_str), Some("alice"));
    assert!(config["scsi0"].contains("size=5G"), "{}", config["scsi0"]);
    assert!(
        config["cipassword"].starts_with("$6$"),
        "a hash, not the password"
    );

    // The serial console: termproxy through porthole's gateway, to PVE's termproxy.
    let ticket = alice
        .vm_console_ticket(id, ConsoleKind::Serial)
        .await
        .unwrap();
    let mut socket = open(&alice, &ticket, true, None).await.unwrap();
    termproxy_login(&mut socket, "alice", &ticket.ticket).await;
    read_until_text(&mut socket, "porthole-guest:/# ", LONG).await;
    socket
        .send(termproxy_input("echo pve-$((6*7))\n"))
        .await
        .unwrap();
    read_until_text(&mut socket, "pve-42", LONG).await;
    // A resize travels in-band to PVE's termproxy.
    socket.send(termproxy_resize(97, 31)).await.unwrap();
    eventually(LONG, "PVE to hear the terminal size", || async {
        sim.sim()
            .lock()
            .terminal_sizes
            .contains(&(vmid, 97, 31))
            .then_some(())
    })
    .await;
    socket.close(None).await.unwrap();

    // The screen: the gateway answers PVE's VNC password itself and offers the viewer None.
    let ticket = alice.vm_console_ticket(id, ConsoleKind::Vnc).await.unwrap();
    let mut socket = open(&alice, &ticket, false, None).await.unwrap();
    let init = rfb_viewer(&mut socket).await;
    assert_eq!((init.width, init.height), (720, 400), "{init:?}");
    socket.close(None).await.unwrap();

    // Edit: the disk grows on PVE; power actions go through PVE tasks.
    let stop = alice.vm_action(id, "stop").await.unwrap();
    succeed(&alice, &stop.job).await;
    alice
        .update_vm(
            id,
            &UpdateVmRequest {
                cores: Some(2),
                disk_gib: Some(6),
                ..UpdateVmRequest::default()
            },
        )
        .await
        .unwrap();
    eventually(LONG, "the disk to grow on PVE", || async {
        let sim = sim.sim().lock();
        let vm = &sim.vms[&vmid];
        (vm.config["scsi0"].contains("size=6G") && vm.config["cores"] == "2").then_some(())
    })
    .await;
    let start = alice.vm_action(id, "start").await.unwrap();
    succeed(&alice, &start.job).await;

    // Removing the node is refused while it has VMs and templates.
    let (status, ..) = api_error(admin.remove_node("pve").await.unwrap_err());
    assert_eq!(status, 409);
    // A linked template is only forgotten; the node keeps its template VM.
    admin
        .link_template(
            "pve",
            &porthole_api::LinkTemplateRequest {
                name: "spare".into(),
                reference: "9000".into(),
            },
        )
        .await
        .unwrap();
    admin.delete_template("spare").await.unwrap();
    assert!(sim.sim().lock().vms[&9000].template);

    // Delete: the VM leaves the cluster.
    let delete = alice.delete_vm(id).await.unwrap();
    succeed(&alice, &delete.job).await;
    assert!(!sim.sim().lock().vms.contains_key(&vmid));

    // The node survives a restart: its settings and sealed token are in the store.
    let mut server = server;
    server.restart().await;
    let admin = server.admin().await;
    let nodes = admin.nodes().await.unwrap();
    let pve = nodes.iter().find(|n| n.name == "pve").expect("node pve");
    assert!(pve.online, "{pve:?}");
    assert!(
        !server.log().contains("5e1f0c1e-7d5a"),
        "the token secret leaked"
    );
    let data = std::fs::read(server.data_dir.join("porthole.db")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&data).contains("5e1f0c1e-7d5a"),
        "the token secret is stored in clear"
    );
}
