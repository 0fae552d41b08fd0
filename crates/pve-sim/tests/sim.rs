//! End-to-end tests of the simulator over HTTP(S) and WebSockets.

use porthole_testing::pve::{
    Session, client, login, read_n, session, termproxy_read_until, ws_connect,
};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use porthole_pve_sim::{PveSim, SimVm, Upid};
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio_tungstenite::tungstenite::Message;

fn builder() -> porthole_pve_sim::PveSimBuilder {
    PveSim::builder()
        .user("root@pam", "rootpw")
        .user("alice@pve", "alicepw")
        .user("bob@pve", "bobpw")
        .user("carol@pve", "carolpw")
        .token("alice@pve!ci", "s3cret")
        .acl(
            "alice@pve",
            "/pool/alice",
            &[
                "VM.Audit",
                "VM.Console",
                "VM.PowerMgmt",
                "VM.Allocate",
                "VM.Clone",
                "VM.Config.Memory",
                "VM.Config.CPU",
                "VM.Config.Options",
                "Pool.Allocate",
            ],
            true,
        )
        .acl("alice@pve", "/storage", &["Datastore.AllocateSpace"], true)
        .acl("bob@pve", "/vms/101", &["VM.Audit"], false)
        .vm(SimVm::new(100, "pve1", "alice-web")
            .pool("alice")
            .memory(1024)
            .running())
        .vm(SimVm::new(101, "pve2", "bob-db"))
        .vm(SimVm::new(9000, "pve1", "tmpl").template())
        .task_duration(Duration::from_millis(150))
}

async fn wait_task(c: &reqwest::Client, s: &Session, api: &str, upid: &str) -> Value {
    let parsed = Upid::parse(upid).expect("UPID format");
    let url = format!(
        "{api}/nodes/{}/tasks/{}/status",
        parsed.node,
        upid.replace(':', "%3A")
    );
    let mut saw_running = false;
    for _ in 0..200 {
        let (code, body) = s.get(c, &url).await;
        assert_eq!(code, 200, "{body}");
        let d = &body["data"];
        for k in [
            "upid",
            "node",
            "pid",
            "pstart",
            "starttime",
            "type",
            "id",
            "user",
            "status",
        ] {
            assert!(!d[k].is_null(), "task status lacks {k}: {d}");
        }
        if d["status"] == "stopped" {
            assert!(saw_running, "tasks should take a moment");
            return d.clone();
        }
        saw_running = true;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("task {upid} never finished");
}

#[tokio::test]
async fn https_with_pinnable_certificate_and_schema_shapes() {
    let sim = builder().spawn("127.0.0.1:0").await.unwrap();
    let api = sim.api_url();
    assert!(api.starts_with("https://"));
    let c = client();

    // The certificate the server presents is the one whose fingerprint the sim reports.
    let r = c.get(format!("{api}/version")).send().await.unwrap();
    let der = r
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .unwrap()
        .to_vec();
    let fp: Vec<String> = sha2::Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(fp.join(":"), sim.fingerprint());
    assert!(sim.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    // No ticket: 401 with the reason phrase and a data: null body.
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["data"], Value::Null);

    let (code, body) = login(&c, &api, "alice@pve", "alicepw").await;
    assert_eq!(code, 200);
    let d = &body["data"];
    assert!(d["ticket"].as_str().unwrap().starts_with("PVE:alice@pve:"));
    assert!(d["ticket"].as_str().unwrap().contains("::"));
    assert_eq!(d["username"], "alice@pve");
    assert!(d["CSRFPreventionToken"].is_string() && d["cap"].is_object());
    // Realm given separately.
    let r = c
        .post(format!("{api}/access/ticket"))
        .form(&[
            ("username", "alice"),
            ("password", "alicepw"),
            ("realm", "pve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(login(&c, &api, "alice@pve", "wrong").await.0, 401);
    // Missing parameter: 400 with errors.
    let r = c
        .post(format!("{api}/access/ticket"))
        .form(&[("username", "alice@pve")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.status().canonical_reason(), Some("Bad Request"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"], Value::Null);
    assert!(body["errors"]["password"].is_string());

    let root = session(&c, &api, "root@pam", "rootpw").await;
    let (_, v) = root.get(&c, &format!("{api}/version")).await;
    assert!(
        v["data"]["version"].is_string()
            && v["data"]["release"].is_string()
            && v["data"]["repoid"].is_string()
    );

    let (_, v) = root.get(&c, &format!("{api}/nodes")).await;
    let nodes = v["data"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    for n in nodes {
        assert!(
            n["node"].is_string()
                && n["maxmem"].is_u64()
                && n["mem"].is_u64()
                && n["maxcpu"].is_u64()
                && n["cpu"].is_number()
        );
    }

    // nextid is a string, as real servers send it; a taken id is a 400.
    let (_, v) = root.get(&c, &format!("{api}/cluster/nextid")).await;
    assert_eq!(v["data"], json!("102"));
    let (code, v) = root
        .get(&c, &format!("{api}/cluster/nextid?vmid=100"))
        .await;
    assert_eq!(code, 400);
    assert!(
        v["errors"]["vmid"]
            .as_str()
            .unwrap()
            .contains("already exists")
    );

    let (_, v) = root.get(&c, &format!("{api}/nodes/pve1/qemu")).await;
    let list = v["data"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().any(|vm| vm["vmid"] == json!("100")
        && vm["status"] == "running"
        && vm["maxmem"] == json!(1024u64 << 20)));

    let (_, v) = root
        .get(&c, &format!("{api}/nodes/pve1/qemu/100/config"))
        .await;
    assert_eq!(v["data"]["memory"], json!("1024"));
    assert_eq!(v["data"]["cores"], json!(1));
    assert!(v["data"]["digest"].is_string());
    let (code, _) = root
        .get(&c, &format!("{api}/nodes/pve2/qemu/100/config"))
        .await;
    assert_eq!(code, 500);

    let (_, v) = root
        .get(&c, &format!("{api}/nodes/pve1/qemu/100/status/current"))
        .await;
    let d = &v["data"];
    assert_eq!(d["vmid"], json!(100));
    assert_eq!(d["status"], "running");
    assert_eq!(d["qmpstatus"], "running");
    assert!(d["maxmem"].is_u64() && d["cpus"].is_u64() && d["uptime"].is_u64());

    // Power: stop returns a UPID in PVE's exact format; the task runs a while, then OK.
    let (code, v) = root
        .post(&c, &format!("{api}/nodes/pve1/qemu/100/status/stop"), &[])
        .await;
    assert_eq!(code, 200, "{v}");
    let upid = v["data"].as_str().unwrap();
    let re_ok = upid.starts_with("UPID:pve1:")
        && upid.ends_with(":qmstop:100:root@pam:")
        && upid.split(':').nth(2).unwrap().len() == 8;
    assert!(re_ok, "{upid}");
    let t = wait_task(&c, &root, &api, upid).await;
    assert_eq!(t["exitstatus"], "OK");
    let (_, v) = root
        .get(&c, &format!("{api}/nodes/pve1/qemu/100/status/current"))
        .await;
    assert_eq!(v["data"]["status"], "stopped");
    let (code, _) = root
        .post(
            &c,
            &format!("{api}/nodes/pve1/qemu/100/status/shutdown"),
            &[],
        )
        .await;
    assert_eq!(code, 500);
    for action in ["start", "suspend", "resume", "reset", "shutdown"] {
        let (code, v) = root
            .post(
                &c,
                &format!("{api}/nodes/pve1/qemu/100/status/{action}"),
                &[],
            )
            .await;
        assert_eq!(code, 200, "{action}: {v}");
        assert_eq!(
            wait_task(&c, &root, &api, v["data"].as_str().unwrap()).await["exitstatus"],
            "OK",
            "{action}"
        );
    }

    // Config: PUT is synchronous, POST returns a task; bad values are 400s.
    let (code, _, v) = root
        .send(
            &c,
            reqwest::Method::PUT,
            &format!("{api}/nodes/pve1/qemu/100/config"),
            &[("memory", "2048"), ("cores", "2")],
        )
        .await;
    assert_eq!((code, &v["data"]), (200, &Value::Null));
    let (code, v) = root
        .post(
            &c,
            &format!("{api}/nodes/pve1/qemu/100/config"),
            &[("name", "web2")],
        )
        .await;
    assert_eq!(code, 200);
    wait_task(&c, &root, &api, v["data"].as_str().unwrap()).await;
    let (_, v) = root
        .get(&c, &format!("{api}/nodes/pve1/qemu/100/config"))
        .await;
    assert_eq!(
        (
            &v["data"]["memory"],
            &v["data"]["cores"],
            &v["data"]["name"]
        ),
        (&json!("2048"), &json!(2), &json!("web2"))
    );
    let (code, _, v) = root
        .send(
            &c,
            reqwest::Method::PUT,
            &format!("{api}/nodes/pve1/qemu/100/config"),
            &[("memory", "lots")],
        )
        .await;
    assert_eq!(code, 400);
    assert!(v["errors"]["memory"].is_string());

    // Create from ISO, into a pool; the id is now taken.
    let (code, v) = root
        .post(
            &c,
            &format!("{api}/nodes/pve2/qemu"),
            &[
                ("vmid", "102"),
                ("name", "fresh"),
                ("memory", "1024"),
                ("cores", "2"),
                ("scsi0", "local-lvm:8"),
                ("ide2", "local:iso/debian.iso,media=cdrom"),
                ("pool", "alice"),
            ],
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        wait_task(&c, &root, &api, v["data"].as_str().unwrap()).await["type"],
        "qmcreate"
    );
    let (code, _) = root
        .post(&c, &format!("{api}/nodes/pve2/qemu"), &[("vmid", "102")])
        .await;
    assert_eq!(code, 500);

    // Clone: linked from a template, full to another node; linked from a non-template fails.
    let (code, v) = root
        .post(
            &c,
            &format!("{api}/nodes/pve1/qemu/9000/clone"),
            &[("newid", "103"), ("name", "linked"), ("full", "0")],
        )
        .await;
    assert_eq!(code, 200, "{v}");
    wait_task(&c, &root, &api, v["data"].as_str().unwrap()).await;
    let (code, v) = root
        .post(
            &c,
            &format!("{api}/nodes/pve1/qemu/100/clone"),
            &[
                ("newid", "104"),
                ("name", "copy"),
                ("full", "1"),
                ("target", "pve2"),
                ("pool", "alice"),
            ],
        )
        .await;
    assert_eq!(code, 200, "{v}");
    wait_task(&c, &root, &api, v["data"].as_str().unwrap()).await;
    let (code, _) = root
        .get(&c, &format!("{api}/nodes/pve2/qemu/104/config"))
        .await;
    assert_eq!(code, 200);
    let (code, _) = root
        .post(
            &c,
            &format!("{api}/nodes/pve1/qemu/100/clone"),
            &[("newid", "105"), ("full", "0")],
        )
        .await;
    assert_eq!(code, 500);

    // Pools.
    let (code, _) = root
        .post(
            &c,
            &format!("{api}/pools"),
            &[("poolid", "bob"), ("comment", "Bob")],
        )
        .await;
    assert_eq!(code, 200);
    let (_, v) = root.get(&c, &format!("{api}/pools")).await;
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["poolid"] == "bob" && p["comment"] == "Bob")
    );
    let (_, v) = root.get(&c, &format!("{api}/pools/alice")).await;
    let members = v["data"]["members"].as_array().unwrap();
    assert!(
        members
            .iter()
            .any(|m| m["id"] == "qemu/102" && m["vmid"] == json!(102) && m["node"] == "pve2")
    );

    // Delete with purge: refused while running, fine when stopped.
    let (_, v) = root
        .post(&c, &format!("{api}/nodes/pve1/qemu/100/status/start"), &[])
        .await;
    wait_task(&c, &root, &api, v["data"].as_str().unwrap()).await;
    let (code, _, _) = root
        .send(
            &c,
            reqwest::Method::DELETE,
            &format!("{api}/nodes/pve1/qemu/100?purge=1"),
            &[],
        )
        .await;
    assert_eq!(code, 500);
    let (code, _, v) = root
        .send(
            &c,
            reqwest::Method::DELETE,
            &format!("{api}/nodes/pve2/qemu/104?purge=1&destroy-unreferenced-disks=1"),
            &[],
        )
        .await;
    assert_eq!(code, 200, "{v}");
    wait_task(&c, &root, &api, v["data"].as_str().unwrap()).await;
    let (code, _) = root
        .get(&c, &format!("{api}/nodes/pve2/qemu/104/config"))
        .await;
    assert_eq!(code, 500);
}

#[tokio::test]
async fn csrf_and_token_rules() {
    let sim = builder().plain_http().spawn("127.0.0.1:0").await.unwrap();
    let api = sim.api_url();
    let c = client();
    let alice = session(&c, &api, "alice@pve", "alicepw").await;
    let url = format!("{api}/nodes/pve1/qemu/100/status/suspend");
    let r = c
        .post(&url)
        .header("Cookie", alice.cookie())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .post(&url)
        .header("Cookie", alice.cookie())
        .header("CSRFPreventionToken", "0000:bogus")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The reason phrase carries PVE's message (checked with a raw request).
    let reason = raw_status_line(sim.addr(), &format!("POST /api2/json/nodes/pve1/qemu/100/status/suspend HTTP/1.1\r\nHost: x\r\nCookie: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", alice.cookie())).await;
    assert_eq!(
        reason,
        "HTTP/1.1 401 Permission check failed (invalid csrf token)"
    );
    // GET needs no CSRF token.
    assert_eq!(
        alice
            .get(&c, &format!("{api}/nodes/pve1/qemu/100/config"))
            .await
            .0,
        200
    );
    assert_eq!(alice.post(&c, &url, &[]).await.0, 200);
    // An API token needs no CSRF token.
    let r = c
        .post(format!("{api}/nodes/pve1/qemu/100/status/resume"))
        .header("Authorization", "PVEAPIToken=alice@pve!ci=s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let upid: Value = r.json().await.unwrap();
    assert!(
        upid["data"]
            .as_str()
            .unwrap()
            .ends_with(":qmresume:100:alice@pve!ci:")
    );
    let r = c
        .get(format!("{api}/version"))
        .header("Authorization", "PVEAPIToken=alice@pve!ci=wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // 403 carries the path and privilege.
    let reason = raw_status_line(sim.addr(), &format!("GET /api2/json/nodes/pve2/qemu/101/config HTTP/1.1\r\nHost: x\r\nCookie: {}\r\nConnection: close\r\n\r\n", alice.cookie())).await;
    assert_eq!(
        reason,
        "HTTP/1.1 403 Permission check failed (/vms/101, VM.Audit)"
    );
}

async fn raw_status_line(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn tickets_expire_after_two_hours_and_renew() {
    let sim = builder().plain_http().spawn("127.0.0.1:0").await.unwrap();
    let api = sim.api_url();
    let c = client();
    let alice = session(&c, &api, "alice@pve", "alicepw").await;
    sim.clock().advance(3600);
    assert_eq!(alice.get(&c, &format!("{api}/version")).await.0, 200);
    // Renew by posting the ticket as the password.
    let (code, v) = login(&c, &api, "alice@pve", &alice.ticket).await;
    assert_eq!(code, 200);
    let renewed = Session {
        ticket: v["data"]["ticket"].as_str().unwrap().into(),
        csrf: v["data"]["CSRFPreventionToken"].as_str().unwrap().into(),
    };
    assert_ne!(renewed.ticket, alice.ticket);
    sim.clock().advance(3601);
    assert_eq!(alice.get(&c, &format!("{api}/version")).await.0, 401);
    assert_eq!(login(&c, &api, "alice@pve", &alice.ticket).await.0, 401);
    assert_eq!(renewed.get(&c, &format!("{api}/version")).await.0, 200);
}

#[tokio::test]
async fn cluster_resources_follow_acls() {
    let sim = builder().plain_http().spawn("127.0.0.1:0").await.unwrap();
    let api = sim.api_url();
    let c = client();
    let ids = |v: &Value| -> Vec<u64> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["vmid"].as_u64().unwrap())
            .collect()
    };
    let alice = session(&c, &api, "alice@pve", "alicepw").await;
    let (_, v) = alice
        .get(&c, &format!("{api}/cluster/resources?type=vm"))
        .await;
    assert_eq!(ids(&v), vec![100]);
    let r = &v["data"][0];
    assert_eq!(
        (&r["id"], &r["type"], &r["node"], &r["pool"]),
        (
            &json!("qemu/100"),
            &json!("qemu"),
            &json!("pve1"),
            &json!("alice")
        )
    );
    let bob = session(&c, &api, "bob@pve", "bobpw").await;
    assert_eq!(
        ids(&bob
            .get(&c, &format!("{api}/cluster/resources?type=vm"))
            .await
            .1),
        vec![101]
    );
    let carol = session(&c, &api, "carol@pve", "carolpw").await;
    assert!(
        ids(&carol
            .get(&c, &format!("{api}/cluster/resources?type=vm"))
            .await
            .1)
        .is_empty()
    );
    assert_eq!(
        carol
            .get(&c, &format!("{api}/nodes/pve1/qemu/100/status/current"))
            .await
            .0,
        403
    );
    let root = session(&c, &api, "root@pam", "rootpw").await;
    assert_eq!(
        ids(&root
            .get(&c, &format!("{api}/cluster/resources?type=vm"))
            .await
            .1),
        vec![100, 101, 9000]
    );
    assert_eq!(
        root.get(&c, &format!("{api}/cluster/resources?type=bogus"))
            .await
            .0,
        400
    );
    // Permissions for the caller.
    let (_, v) = alice
        .get(&c, &format!("{api}/access/permissions?path=/vms/100"))
        .await;
    assert_eq!(v["data"]["/vms/100"]["VM.Console"], json!(1));
    let (_, v) = bob.get(&c, &format!("{api}/access/permissions")).await;
    assert_eq!(v["data"]["/vms/101"], json!({"VM.Audit": 1}));
    // Bob may see 101 but not open its console, nor power it.
    assert_eq!(
        bob.post(&c, &format!("{api}/nodes/pve2/qemu/101/status/start"), &[])
            .await
            .0,
        403
    );
}

fn vnc_response(password: &str, challenge: &[u8]) -> Vec<u8> {
    let mut c = [0u8; 16];
    c.copy_from_slice(challenge);
    porthole_pve_sim::console::vnc_auth_response(password, &c).to_vec()
}

#[tokio::test]
async fn vncproxy_window_and_vnc_auth() {
    let sim = builder().plain_http().spawn("127.0.0.1:0").await.unwrap();
    let api = sim.api_url();
    let c = client();
    let alice = session(&c, &api, "alice@pve", "alicepw").await;
    let proxy = |with_password: bool| {
        let form: Vec<(&str, &str)> = if with_password {
            vec![("websocket", "1"), ("generate-password", "1")]
        } else {
            vec![("websocket", "1")]
        };
        let alice = &alice;
        let c = &c;
        let url = format!("{api}/nodes/pve1/qemu/100/vncproxy");
        async move { alice.post(c, &url, &form).await }
    };
    let (code, v) = proxy(true).await;
    assert_eq!(code, 200, "{v}");
    let d = &v["data"];
    for k in ["port", "ticket", "user", "upid", "cert", "password"] {
        assert!(!d[k].is_null(), "vncproxy lacks {k}");
    }
    assert!(
        d["upid"]
            .as_str()
            .unwrap()
            .contains(":vncproxy:100:alice@pve:")
    );
    let ws_path = |d: &Value| {
        let q = serde_urlencoded::to_string([
            ("port", d["port"].as_str().unwrap()),
            ("vncticket", d["ticket"].as_str().unwrap()),
        ])
        .unwrap();
        format!("/api2/json/nodes/pve1/qemu/100/vncwebsocket?{q}")
    };

    // Too late: 11 s after vncproxy the listener is gone.
    sim.clock().advance(11);
    assert_eq!(
        ws_connect(&sim, &alice.cookie(), &ws_path(d)).await.err(),
        Some(502)
    );
    sim.clock().advance(-11);
    // And a listener is used once.
    assert!(
        ws_connect(&sim, &alice.cookie(), &ws_path(d))
            .await
            .is_err()
    );

    // In time, with the generated password: RFB with VNC authentication, then the guest's
    // ServerInit.
    let (_, v) = proxy(true).await;
    let d = v["data"].clone();
    let mut ws = ws_connect(&sim, &alice.cookie(), &ws_path(&d))
        .await
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_n(&mut ws, &mut buf, 12).await, b"RFB 003.008\n");
    ws.send(Message::Binary(b"RFB 003.008\n".to_vec().into()))
        .await
        .unwrap();
    assert_eq!(read_n(&mut ws, &mut buf, 2).await, vec![1, 2]);
    ws.send(Message::Binary(vec![2].into())).await.unwrap();
    let challenge = read_n(&mut ws, &mut buf, 16).await;
    ws.send(Message::Binary(
        vnc_response(d["password"].as_str().unwrap(), &challenge).into(),
    ))
    .await
    .unwrap();
    assert_eq!(read_n(&mut ws, &mut buf, 4).await, vec![0, 0, 0, 0]);
    ws.send(Message::Binary(vec![1].into())).await.unwrap(); // ClientInit, shared
    let init = read_n(&mut ws, &mut buf, 24).await;
    assert_eq!(&init[..4], &[2, 128, 1, 224]); // 640×480 from the fake guest

    // A wrong password is refused with a reason.
    let (_, v) = proxy(false).await;
    let d = v["data"].clone();
    assert!(d["password"].is_null());
    let mut ws = ws_connect(&sim, &alice.cookie(), &ws_path(&d))
        .await
        .unwrap();
    let mut buf = Vec::new();
    read_n(&mut ws, &mut buf, 12).await;
    ws.send(Message::Binary(b"RFB 003.008\n".to_vec().into()))
        .await
        .unwrap();
    read_n(&mut ws, &mut buf, 2).await;
    ws.send(Message::Binary(vec![2].into())).await.unwrap();
    let challenge = read_n(&mut ws, &mut buf, 16).await;
    ws.send(Message::Binary(vnc_response("nope", &challenge).into()))
        .await
        .unwrap();
    assert_eq!(read_n(&mut ws, &mut buf, 4).await, vec![0, 0, 0, 1]);

    // Carol has no VM.Console.
    let carol = session(&c, &api, "carol@pve", "carolpw").await;
    assert_eq!(
        carol
            .post(
                &c,
                &format!("{api}/nodes/pve1/qemu/100/vncproxy"),
                &[("websocket", "1")]
            )
            .await
            .0,
        403
    );
}

#[tokio::test]
async fn termproxy_login_and_framing_on_fake_backend() {
    let sim = builder().plain_http().spawn("127.0.0.1:0").await.unwrap();
    let api = sim.api_url();
    let c = client();
    let alice = session(&c, &api, "alice@pve", "alicepw").await;
    termproxy_read_until(&sim, &alice, &c, "fake-guest ready\r\nhello\n", true).await;

    // A wrong login line gets no OK: the socket closes.
    let (_, v) = alice
        .post(&c, &format!("{api}/nodes/pve1/qemu/100/termproxy"), &[])
        .await;
    let d = &v["data"];
    let q = serde_urlencoded::to_string([
        ("port", d["port"].to_string()),
        ("vncticket", d["ticket"].as_str().unwrap().to_owned()),
    ])
    .unwrap();
    let mut ws = ws_connect(
        &sim,
        &alice.cookie(),
        &format!("/api2/json/nodes/pve1/qemu/100/vncwebsocket?{q}"),
    )
    .await
    .unwrap();
    ws.send(Message::Text("alice@pve:wrong\n".into()))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap();
    assert!(
        matches!(next, None | Some(Ok(Message::Close(_))) | Some(Err(_))),
        "{next:?}"
    );
}
