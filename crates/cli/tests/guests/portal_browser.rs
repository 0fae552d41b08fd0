//! The portal in a real browser (headless Chromium through playwright-core, on a phone-sized
//! screen), against a real plane and QEMU guest: a member's journey from login to a deleted
//! VM, and an admin's. What the browser reports is checked against the API and the guest.

use std::io::{BufRead, BufReader};

use porthole_api::AddSshKeyRequest;
use porthole_testing::server::*;
use porthole_testing::web::{browser_script, script_event};
use serde_json::Value;

/// Runs web/tests/journey.mjs with `env` and returns its events; fails if it did.
fn journey(server: &Server, user: &str, password: &str, env: &[(&str, &str)]) -> Vec<Value> {
    let out = tempfile::tempdir().unwrap();
    let mut child = browser_script("journey.mjs", server, user, password, out.path())
        .envs(env.iter().copied())
        .spawn()
        .expect("node is installed by scripts/setup");
    let events: Vec<Value> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(|line| script_event(&line.unwrap()))
        .collect();
    let status = child.wait().unwrap();
    let shots: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        status.success() && events.last().is_some_and(|e| e["done"] == true),
        "the journey failed: {events:#?}\nscreenshots: {shots:?}\nserver log:\n{}",
        server.log()
    );
    events
}

/// The first event that has `key`.
fn event<'a>(events: &'a [Value], key: &str) -> &'a Value {
    events
        .iter()
        .find_map(|e| e.get(key))
        .unwrap_or_else(|| panic!("no {key} event in {events:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_creates_uses_renews_and_deletes_a_vm_in_the_browser() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let nina = member(&server, &admin, "nina").await;
    nina.add_ssh_key(&AddSshKeyRequest {
        name: None,
        public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKilrEre+sGjyMD1naB/hcvXTbvH6CS97OjBYa3LZ2Pb nina@laptop".into(),
    })
    .await
    .unwrap();

    let events = journey(
        &server,
        "nina",
        "nina-password",
        &[("JOURNEY", "member"), ("VM_NAME", "ninas-vm")],
    );

    // The page showed the guest's login once; the guest applied it (cloud-init), with the
    // key from nina's profile.
    let created = event(&events, "created");
    assert_eq!(created, "ninas-vm");
    let login = events.iter().find(|e| e.get("created").is_some()).unwrap();
    assert_eq!(login["user"], "nina");
    assert_eq!(login["password"].as_str().unwrap().len(), 24);
    assert_eq!(
        event(&events, "console"),
        "porthole-guest cloud-init: hostname=ninas-vm user=nina password=set keys=1"
    );
    let renewed = event(&events, "renewed").as_str().unwrap();
    assert!(
        renewed.starts_with("renewed: it now expires on"),
        "{renewed}"
    );
    assert!(
        event(&events, "refused")
            .as_str()
            .unwrap()
            .contains("type the VM's name")
    );

    // What the browser did, the plane did: the VM is gone, and each step is on record.
    eventually(
        std::time::Duration::from_secs(60),
        "the VM deleted",
        || async { nina.vms().await.unwrap().is_empty().then_some(()) },
    )
    .await;
    let audit = admin.audit_log(200).await.unwrap();
    for action in ["login", "vm.create", "vm.renew", "vm.delete"] {
        assert!(
            audit
                .iter()
                .any(|e| e.actor == "nina" && e.action == action && e.outcome == "ok"),
            "{action} missing from the audit log"
        );
    }
    assert!(audit.iter().any(|e| e.actor == "nina"
        && e.action == "vm.delete"
        && e.outcome == "ok"
        && e.target_name.as_deref() == Some("ninas-vm")));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_raises_a_limit_and_approves_an_iso_in_the_browser() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let omar = member(&server, &admin, "omar").await;
    // An installer ISO, imported but not yet approved: members cannot see it.
    let dir = tempfile::tempdir().unwrap();
    import_iso(
        &server,
        &server.admin_token().await,
        dir.path(),
        "installer",
    );
    assert!(omar.isos().await.unwrap().is_empty());
    assert_eq!(omar.me().await.unwrap().limits.cores, 4);

    let events = journey(
        &server,
        "admin",
        ADMIN_PASSWORD,
        &[
            ("JOURNEY", "admin"),
            ("MEMBER", "omar"),
            ("ISO", "installer"),
        ],
    );
    assert_eq!(event(&events, "limits"), "limits of omar saved");
    assert_eq!(event(&events, "approved"), "installer approved for members");
    assert_eq!(event(&events, "audit_has_limits"), true);
    assert_eq!(event(&events, "audit_has_approve"), true);

    // The member sees both at once.
    assert_eq!(omar.me().await.unwrap().limits.cores, 6);
    let isos = omar.isos().await.unwrap();
    assert_eq!(
        isos.iter()
            .map(|i| (i.name.as_str(), i.approved))
            .collect::<Vec<_>>(),
        [("installer", true)]
    );
}
