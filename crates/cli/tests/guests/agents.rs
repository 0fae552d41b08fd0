//! Hypervisor agents over mutual TLS: a plane and two agents, each in its own network
//! namespace, running real QEMU guests; and every way an agent is refused.

use std::time::{Duration, Instant};

use futures::SinkExt;
use porthole_agent::pki::{self, CertificateAuthority};
use porthole_api::{CreateNodeRequest, CreateVmRequest};
use porthole_core::{ConsoleKind, VmId};
use porthole_testing::console::{
    open, read_until_text, rfb_viewer, termproxy_input, termproxy_login,
};
use porthole_testing::hosts::{Agent, Hosts};
use porthole_testing::server::{
    Served, Server, api_error, eventually, import_iso, member, qemu_processes, shell_ready, succeed,
};

const LONG: Duration = Duration::from_secs(90);

fn agent_node(name: &str) -> CreateNodeRequest {
    CreateNodeRequest {
        name: name.into(),
        kind: "agent".into(),
        ..CreateNodeRequest::default()
    }
}

/// Runs `echo` through the VM's serial console, via the plane's gateway and the agent.
async fn serial_echo(client: &porthole_api::client::Client, id: VmId, word: &str) {
    let ticket = client
        .vm_console_ticket(id, ConsoleKind::Serial)
        .await
        .unwrap();
    let mut socket = open(client, &ticket, true, None).await.unwrap();
    termproxy_login(&mut socket, "admin", &ticket.ticket).await;
    read_until_text(&mut socket, "porthole-guest", LONG).await;
    socket
        .send(termproxy_input(&format!("echo {word}-$((6*7))\n")))
        .await
        .unwrap();
    read_until_text(&mut socket, &format!("\r\n{word}-42\r\n"), LONG).await;
    socket.close(None).await.unwrap();
}

/// Waits until node `name` is listed offline.
async fn offline(admin: &porthole_api::client::Client, name: &str) {
    eventually(
        Duration::from_secs(10),
        &format!("{name} offline"),
        || async {
            let nodes = admin.nodes().await.unwrap();
            nodes
                .iter()
                .any(|n| n.name == name && !n.online)
                .then_some(())
        },
    )
    .await;
}

/// The steps a job showed while it was watched.
async fn watch_steps(
    client: &porthole_api::client::Client,
    job: &porthole_api::Job,
) -> Vec<String> {
    let mut steps = Vec::new();
    let done = tokio::time::timeout(
        LONG,
        client.wait_for_job(job.id, Duration::from_millis(20), |job| {
            if let Some(step) = &job.step
                && steps.last() != Some(step)
            {
                steps.push(step.clone());
            }
        }),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(done.state, porthole_core::JobState::Succeeded, "{done:?}");
    steps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_on_two_hosts_run_vms_and_consoles_and_survive_losing_one() {
    let hosts = Hosts::create(3);
    let agent_listen = format!("{}:0", hosts.ip(0));
    let server = Server::start_in(
        &hosts.netns(0),
        &hosts.ip(0),
        &[
            "--agent-listen",
            &agent_listen,
            "--no-local-node",
            "--agent-cert-ttl",
            "60",
        ],
    )
    .await;
    let plane = server
        .agent_url
        .clone()
        .expect("the plane listens for agents");
    let admin = server.admin().await;
    let token = server.admin_token().await;

    // With no node at all, a create says why.
    let refused = admin
        .create_vm(&CreateVmRequest::small("early", "demo"))
        .await;
    let (status, _, message, _) = api_error(refused.unwrap_err());
    assert_eq!(status, 503, "{message}");
    assert!(message.contains("no node can take"), "{message}");

    // The CLI adds host-a and shows its token once; the API adds host-b.
    let (code, out, err) = server.cli(&token, &["node", "add", "host-a", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let added: porthole_api::Node = serde_json::from_str(&out).unwrap();
    let token_a = added.join_token.unwrap();
    let token_b = admin
        .add_node(&agent_node("host-b"))
        .await
        .unwrap()
        .join_token
        .unwrap();
    let listed = admin.nodes().await.unwrap();
    assert!(
        listed
            .iter()
            .all(|n| !n.online && n.detail.contains("waiting")),
        "{listed:?}"
    );

    let listen_a = format!("{}:9443", hosts.ip(1));
    let listen_b = format!("{}:9443", hosts.ip(2));
    let mut agent_a = Agent::start(
        Some(&hosts.netns(1)),
        &["--plane", &plane, "--join", &token_a, "--listen", &listen_a],
    );
    let mut agent_b = Agent::start(
        Some(&hosts.netns(2)),
        &["--plane", &plane, "--join", &token_b, "--listen", &listen_b],
    );
    agent_a.serving().await;
    agent_b.serving().await;
    let key = std::fs::metadata(agent_a.data_dir.join("agent.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
        0o600
    );
    eventually(Duration::from_secs(10), "both nodes online", || async {
        let nodes = admin.nodes().await.unwrap();
        nodes.iter().all(|n| n.online).then_some(())
    })
    .await;

    // New VMs go to the least-loaded node: one on each host. The first VM on each host
    // fetches the template, and its job says so.
    let mut vms = Vec::new();
    for name in ["one", "two"] {
        let created = admin
            .create_vm(&CreateVmRequest::small(name, "demo"))
            .await
            .unwrap();
        let steps = watch_steps(&admin, &created.job).await;
        assert!(
            steps.iter().any(|s| s.contains("fetching template")),
            "{steps:?}"
        );
        vms.push(admin.vm(created.vm.id).await.unwrap());
    }
    let mut nodes: Vec<_> = vms.iter().map(|vm| vm.node.clone()).collect();
    nodes.sort();
    assert_eq!(nodes, ["host-a", "host-b"]);
    for agent in [&agent_a, &agent_b] {
        assert!(agent.data_dir.join("templates").read_dir().unwrap().count() == 1);
    }

    // An admin pins a node; the template is cached there, so nothing is fetched again.
    let pinned = CreateVmRequest {
        node: Some("host-a".into()),
        ..CreateVmRequest::small("three", "demo")
    };
    let created = admin.create_vm(&pinned).await.unwrap();
    let steps = watch_steps(&admin, &created.job).await;
    assert!(!steps.iter().any(|s| s.contains("fetching")), "{steps:?}");
    let three = admin.vm(created.vm.id).await.unwrap();
    assert_eq!(three.node, "host-a");
    // Members cannot pin; unknown nodes are refused naming the field.
    let alice = member(&server, &admin, "alice").await;
    let (status, ..) = api_error(alice.create_vm(&pinned).await.unwrap_err());
    assert_eq!(status, 403);
    let nowhere = CreateVmRequest {
        node: Some("nowhere".into()),
        ..CreateVmRequest::small("four", "demo")
    };
    let (status, _, _, field) = api_error(admin.create_vm(&nowhere).await.unwrap_err());
    assert_eq!((status, field.as_deref()), (422, Some("node")));

    // Consoles through the plane work for VMs on both hosts.
    for vm in &vms {
        shell_ready(&admin, vm.id).await;
        serial_echo(&admin, vm.id, &format!("on-{}", vm.node)).await;
        let ticket = admin
            .vm_console_ticket(vm.id, ConsoleKind::Vnc)
            .await
            .unwrap();
        let mut socket = open(&admin, &ticket, false, None).await.unwrap();
        let init = rfb_viewer(&mut socket).await;
        assert_eq!((init.width, init.height), (720, 400), "{init:?}");
        socket.close(None).await.unwrap();
    }

    // An ISO install runs on an agent too: the host fetches the ISO once, checked.
    let work = tempfile::tempdir().unwrap();
    // 24 MiB of noise, so the transfer lasts long enough to be watched.
    std::fs::create_dir(work.path().join("installer-root")).unwrap();
    let noise: Vec<u8> = (0..24u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(work.path().join("installer-root/noise"), noise).unwrap();
    let iso = import_iso(&server, &token, work.path(), "installer");
    let request = CreateVmRequest {
        template: None,
        iso: Some("installer".into()),
        disk_gib: 2,
        node: Some("host-b".into()),
        ..CreateVmRequest::small("isovm", "demo")
    };
    let created = admin.create_vm(&request).await.unwrap();
    let steps = watch_steps(&admin, &created.job).await;
    assert!(
        steps.iter().any(|s| s.contains("fetching ISO")),
        "{steps:?}"
    );
    assert!(
        agent_b.log().contains("image cached image=ISO"),
        "{}",
        agent_b.log()
    );
    let cached = agent_b.data_dir.join("isos");
    let cached_iso = cached.read_dir().unwrap().next().unwrap().unwrap().path();
    assert_eq!(
        std::fs::read(&cached_iso).unwrap(),
        std::fs::read(&iso).unwrap()
    );
    let cmdline = qemu_processes()
        .into_iter()
        .find(|(_, command)| command.contains(&created.vm.id.to_string()))
        .unwrap()
        .1;
    assert!(
        cmdline.contains(&cached_iso.to_string_lossy().into_owned()),
        "{cmdline}"
    );
    // Once the plane deletes the ISO, the host drops its copy too, but not while a VM on it
    // still uses the image.
    assert_eq!(
        admin.delete_iso("installer").await.unwrap_err().status(),
        Some(409)
    );
    let deleted = admin.delete_vm(created.vm.id).await.unwrap();
    succeed(&admin, &deleted.job).await;
    admin.delete_iso("installer").await.unwrap();
    assert!(!cached_iso.exists(), "{}", cached_iso.display());
    assert!(
        agent_b
            .data_dir
            .join("templates")
            .read_dir()
            .unwrap()
            .count()
            == 1
    );

    // Cut host-a off: it is marked offline within 10 s, its VMs are unknown, and actions on
    // them fail at once with 503.
    let on_a = vms.iter().find(|vm| vm.node == "host-a").unwrap().id;
    let name_on_a = vms
        .iter()
        .find(|vm| vm.node == "host-a")
        .unwrap()
        .name
        .clone();
    hosts.cut(1);
    let cut = Instant::now();
    offline(&admin, "host-a").await;
    let offline_after = cut.elapsed();
    assert!(offline_after < Duration::from_secs(10), "{offline_after:?}");
    eprintln!("measured: host-a listed offline {offline_after:?} after its link went down");
    eventually(Duration::from_secs(5), "its VM unknown", || async {
        let vm = admin.vm(on_a).await.unwrap();
        (vm.state == porthole_core::VmState::Unknown).then_some(())
    })
    .await;
    let asked = Instant::now();
    let (status, _, message, _) = api_error(admin.vm_action(on_a, "stop").await.unwrap_err());
    assert_eq!(status, 503, "{message}");
    assert!(
        message.contains("host-a") && message.contains("offline"),
        "{message}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    let (status, ..) = api_error(
        admin
            .vm_console_ticket(on_a, ConsoleKind::Serial)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 503);
    // host-b carries on, and new VMs avoid host-a.
    let on_b = vms.iter().find(|vm| vm.node == "host-b").unwrap().id;
    serial_echo(&admin, on_b, "still").await;

    // Plug it back in: it recovers, and its VMs show their real state again.
    hosts.restore(1);
    eventually(Duration::from_secs(15), "host-a back", || async {
        let vm = admin.vm(on_a).await.unwrap();
        (vm.state == porthole_core::VmState::Running).then_some(())
    })
    .await;
    serial_echo(&admin, on_a, "back").await;

    // Kill host-a's agent, and meanwhile make the host and the plane disagree: VM "three"'s
    // files move to a name porthole does not know. Back online, both differences are
    // reported to admins, and nothing is deleted.
    let stop = admin.vm_action(three.id, "stop").await.unwrap();
    succeed(&admin, &stop.job).await;
    agent_a.kill9();
    let stranger = VmId::random();
    let vms_dir = agent_a.data_dir.join("vms");
    std::fs::rename(
        vms_dir.join(three.id.to_string()),
        vms_dir.join(stranger.to_string()),
    )
    .unwrap();
    agent_a.relaunch(&["--listen", &listen_a]);
    agent_a.serving().await;
    let detail = eventually(Duration::from_secs(15), "the reconcile report", || async {
        let nodes = admin.nodes().await.unwrap();
        let a = nodes.into_iter().find(|n| n.name == "host-a")?;
        (a.online && a.detail.contains("found at reconnect")).then_some(a.detail)
    })
    .await;
    assert!(detail.contains(&stranger.to_string()), "{detail}");
    assert!(
        detail.contains("three") && detail.contains("missing"),
        "{detail}"
    );
    assert!(vms_dir.join(stranger.to_string()).is_dir());
    assert!(admin.vm(three.id).await.is_ok());
    let audit = admin.audit_log(200).await.unwrap();
    assert!(
        audit.iter().any(|e| e.action == "node.offline"),
        "{audit:?}"
    );
    assert!(
        audit.iter().any(|e| e.action == "node.online"
            && e.detail.as_deref().is_some_and(|d| d.contains("missing"))),
        "{audit:?}"
    );

    // Certificates live 60 s here: agents renew at two thirds, and keep serving.
    eventually(Duration::from_secs(60), "a renewed certificate", || async {
        agent_b
            .log()
            .contains("renewed this agent's certificate")
            .then_some(())
    })
    .await;
    serial_echo(&admin, on_b, "renewed").await;

    // A node with VMs cannot be removed, nor can an online one be forgotten.
    let (status, _, message, _) = api_error(admin.remove_node("host-b").await.unwrap_err());
    assert_eq!(status, 409);
    assert!(message.contains("--forget-vms"), "{message}");
    let (status, _, _, field) = api_error(admin.forget_node("host-b").await.unwrap_err());
    assert_eq!((status, field.as_deref()), (409, Some("forget_vms")));
    let bad = reqwest::Client::new()
        .delete(format!("{}/api/v1/nodes/host-b?forget_vms=yes", server.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    assert!(bad.text().await.unwrap().contains("forget_vms"));

    // host-a is gone for good: once it is offline, an admin forgets it with its VMs'
    // records. Its certificate is revoked with it.
    agent_a.kill9();
    offline(&admin, "host-a").await;
    let (code, _, err) = server.cli(&token, &["node", "remove", "host-a", "--forget-vms"]);
    assert_eq!(code, 0, "{err}");
    let left: Vec<_> = admin
        .vms()
        .await
        .unwrap()
        .into_iter()
        .map(|vm| vm.node)
        .collect();
    assert!(
        !left.is_empty() && left.iter().all(|node| node == "host-b"),
        "{left:?}"
    );
    assert!(
        admin
            .nodes()
            .await
            .unwrap()
            .iter()
            .all(|n| n.name != "host-a")
    );
    let audit = admin.audit_log(50).await.unwrap();
    assert!(
        audit.iter().any(|e| e.action == "node.remove"
            && e.detail
                .as_deref()
                .is_some_and(|d| d.contains(&name_on_a) && d.contains("three"))),
        "{audit:?}"
    );
    agent_a.relaunch(&["--listen", &listen_a]);
    let (status, log) = agent_a.exit().await;
    assert!(!status.success() && log.contains("revoked"), "{log}");
    assert!(!server.log().contains(&token_a) && !server.log().contains(&token_b));
}

/// The plane's CA, read from its data directory as only a test may.
fn plane_ca(server: &Server) -> CertificateAuthority {
    CertificateAuthority::load_or_create(&server.data_dir).unwrap()
}

/// An HTTP client to the plane's agent API presenting the key and certificate in `dir`.
fn agent_client(dir: &std::path::Path, ca: &CertificateAuthority) -> reqwest::Client {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let identity =
        porthole_agent::tls::Identity::from_pem(&read("agent.crt"), &read("agent.key")).unwrap();
    let config = porthole_agent::tls::client_config(
        ca.cert_der(),
        pki::PLANE_IDENTITY,
        Some(&identity),
        None,
    )
    .unwrap();
    porthole_agent::tls::http_client(config, Duration::from_secs(5)).unwrap()
}

/// Replaces an enrolled agent's key and certificate with one for `identity` signed by `ca`
/// and valid between `from` and `until`.
fn forge(
    dir: &std::path::Path,
    ca: &CertificateAuthority,
    identity: &str,
    from: std::time::SystemTime,
    until: std::time::SystemTime,
) {
    let (key, csr) = pki::key_and_csr(identity).unwrap();
    let issued = ca
        .sign_csr_valid_between(&csr, identity, from, until)
        .unwrap();
    std::fs::write(dir.join("agent.key"), key).unwrap();
    std::fs::write(dir.join("agent.crt"), issued.cert_pem).unwrap();
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in ["agent.json", "agent.crt", "agent.key", "ca.crt"] {
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_are_refused_with_a_spent_or_expired_token_or_a_bad_certificate() {
    let server = Server::start_with(&[
        "--agent-listen",
        "127.0.0.1:0",
        "--no-local-node",
        "--join-token-ttl",
        "2",
    ])
    .await;
    let plane = server.agent_url.clone().unwrap();
    let admin = server.admin().await;
    let listen = |n: u8| format!("127.0.0.{n}:9444");

    // Bad requests name their field and store nothing.
    let bad = CreateNodeRequest {
        url: "https://x:1".into(),
        ..agent_node("n0")
    };
    let (status, _, _, field) = api_error(admin.add_node(&bad).await.unwrap_err());
    assert_eq!((status, field.as_deref()), (422, Some("url")));
    let (status, _, _, field) =
        api_error(admin.add_node(&agent_node("Bad Name")).await.unwrap_err());
    assert_eq!((status, field.as_deref()), (422, Some("name")));
    assert!(admin.nodes().await.unwrap().is_empty());

    // An expired token.
    let stale = admin
        .add_node(&agent_node("late"))
        .await
        .unwrap()
        .join_token
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut agent = Agent::start(
        None,
        &["--plane", &plane, "--join", &stale, "--listen", &listen(2)],
    );
    let (status, log) = agent.exit().await;
    assert!(!status.success());
    assert!(log.contains("expired"), "{log}");
    assert!(!agent.data_dir.join("agent.crt").exists());

    // A token works once: the second agent to present it is refused.
    let token = admin
        .add_node(&agent_node("n1"))
        .await
        .unwrap()
        .join_token
        .unwrap();
    let mut first = Agent::start(
        None,
        &["--plane", &plane, "--join", &token, "--listen", &listen(3)],
    );
    first.serving().await;
    let mut second = Agent::start(
        None,
        &["--plane", &plane, "--join", &token, "--listen", &listen(4)],
    );
    let (status, log) = second.exit().await;
    assert!(!status.success());
    assert!(log.contains("used already"), "{log}");

    // A token naming another CA: the agent will not talk to this plane at all.
    let other = admin
        .add_node(&agent_node("n2"))
        .await
        .unwrap()
        .join_token
        .unwrap();
    let (head, _) = other.rsplit_once('.').unwrap();
    let wrong = format!("{head}.{}", "0".repeat(64));
    let mut agent = Agent::start(
        None,
        &["--plane", &plane, "--join", &wrong, "--listen", &listen(5)],
    );
    let (status, log) = agent.exit().await;
    assert!(!status.success());
    assert!(log.contains("presented CA"), "{log}");
    // A malformed token never leaves the host.
    let mut agent = Agent::start(
        None,
        &[
            "--plane",
            &plane,
            "--join",
            "nonsense",
            "--listen",
            &listen(5),
        ],
    );
    let (status, log) = agent.exit().await;
    assert!(!status.success() && log.contains("--join"), "{log}");

    // A certificate from another CA, for a node the plane knows.
    let dir = tempfile::tempdir().unwrap();
    let foreign = CertificateAuthority::load_or_create(&dir.path().join("ca")).unwrap();
    let now = std::time::SystemTime::now();
    let forged = dir.path().join("foreign");
    copy_dir(&first.data_dir, &forged);
    forge(
        &forged,
        &foreign,
        &pki::node_identity("n1"),
        now - Duration::from_secs(60),
        now + Duration::from_secs(3600),
    );
    let mut agent = Agent::start_in(&forged, None, &["--listen", &listen(6)]);
    let (status, log) = agent.exit().await;
    assert!(!status.success());
    assert!(log.contains("refused this agent"), "{log}");

    // An expired certificate from the plane's own CA.
    let expired = dir.path().join("expired");
    copy_dir(&first.data_dir, &expired);
    let ca = plane_ca(&server);
    forge(
        &expired,
        &ca,
        &pki::node_identity("n1"),
        now - Duration::from_secs(7200),
        now - Duration::from_secs(3600),
    );
    let mut agent = Agent::start_in(&expired, None, &["--listen", &listen(7)]);
    let (status, log) = agent.exit().await;
    assert!(!status.success());
    assert!(log.contains("expired"), "{log}");
    // The plane itself refuses it too, whatever the agent believes.
    let client = agent_client(&expired, &ca);
    let response = client
        .post(format!("{plane}/agent/v1/hello"))
        .json(&serde_json::json!({ "address": "https://127.0.0.7:9444" }))
        .send()
        .await;
    assert!(response.is_err(), "{response:?}");

    // Removing a node revokes its certificate: its agent is refused from then on.
    first.kill9();
    admin.remove_node("n1").await.unwrap();
    first.relaunch(&["--listen", &listen(3)]);
    let (status, log) = first.exit().await;
    assert!(!status.success());
    assert!(log.contains("revoked"), "{log}");
    // And its certificate gets nothing from the plane's agent API either.
    let client = agent_client(&first.data_dir, &ca);
    let templates = admin.templates().await.unwrap();
    let response = client
        .get(format!(
            "{plane}/agent/v1/templates/{}/disk",
            templates[0].id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let audit = admin.audit_log(100).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "node.join" && e.outcome != "ok"),
        "{audit:?}"
    );
}
