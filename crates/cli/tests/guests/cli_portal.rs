//! The self-service portal through the CLI binary: limits, groups, SSH keys, template
//! approval, guest logins, renewal and the audit log. A real plane and a real QEMU guest.

use std::path::Path;
use std::process::Command;

use porthole_api::{AuditEntry, CreateVmResponse, Group, Job, SshKey, Template, User, Vm};
use porthole_core::JobState;
use porthole_testing::server::*;
use serde::de::DeserializeOwned;

/// Runs the CLI and asserts it succeeded; returns stdout.
fn ok(server: &Server, token: &str, args: &[&str]) -> String {
    let (code, out, err) = server.cli(token, args);
    assert_eq!(code, 0, "porthole {}: {err}", args.join(" "));
    out
}

/// Runs the CLI with `--output json` and decodes what it printed.
fn json<T: DeserializeOwned>(server: &Server, token: &str, args: &[&str]) -> T {
    let mut args = args.to_vec();
    args.extend(["--output", "json"]);
    let out = ok(server, token, &args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Runs the CLI, asserts it failed with exit 1 and one line on stderr; returns that line.
fn fails(server: &Server, token: &str, args: &[&str]) -> String {
    let (code, out, err) = server.cli(token, args);
    assert_eq!(
        code,
        1,
        "porthole {} should fail: {out}{err}",
        args.join(" ")
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("porthole: "), "{err}");
    err.trim().to_owned()
}

fn keygen(dir: &Path) -> String {
    let key = dir.join("k");
    let status = Command::new("ssh-keygen")
        .args(["-t", "ed25519", "-N", "", "-q", "-C", "alice@laptop", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen is installed");
    assert!(status.success());
    let listed = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(dir.join("k.pub"))
        .output()
        .unwrap();
    // "256 SHA256:... alice@laptop (ED25519)"
    String::from_utf8(listed.stdout)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn portal_commands_drive_limits_groups_keys_approval_guests_and_audit() {
    let server = Server::start().await;
    let admin_token = server.admin_token().await;
    let admin = server.admin().await;
    let alice_client = member(&server, &admin, "alice").await;
    let alice = alice_client.token().unwrap().to_owned();
    let (server, admin) = (&server, admin_token.as_str());
    let show = |name: &str| json::<User>(server, admin, &["user", "show", name]);

    // User limits: parts not given keep their override; `inherit` clears one.
    ok(
        server,
        admin,
        &[
            "user", "limits", "alice", "--cores", "3", "--memory", "2048",
        ],
    );
    let user = show("alice");
    assert_eq!(
        (
            user.limit_overrides.cores,
            user.limit_overrides.memory_mib,
            user.limit_overrides.disk_gib
        ),
        (Some(3), Some(2048), None)
    );
    assert_eq!((user.limits.cores, user.limits.memory_mib), (3, 2048));
    let out = ok(server, admin, &["user", "limits", "alice", "--disk", "20"]);
    assert!(
        out.contains("3 cores") && out.contains("20 GiB disk"),
        "{out}"
    );
    ok(
        server,
        admin,
        &["user", "limits", "alice", "--cores", "inherit"],
    );
    let user = show("alice");
    assert_eq!(
        (
            user.limit_overrides.cores,
            user.limit_overrides.memory_mib,
            user.limit_overrides.disk_gib
        ),
        (None, Some(2048), Some(20))
    );
    let err = fails(server, admin, &["user", "limits", "alice"]);
    assert!(err.contains("--cores"), "{err}");
    let (code, _, err) = server.cli(admin, &["user", "limits", "alice", "--cores", "lots"]);
    assert_eq!(code, 2, "clap refuses it");
    assert!(err.contains("inherit"), "{err}");
    let err = fails(
        server,
        &alice,
        &["user", "limits", "alice", "--cores", "64"],
    );
    assert!(
        err.contains("admin"),
        "members cannot raise their limits: {err}"
    );

    // Groups: limits apply to members without an override of their own.
    let out = ok(server, admin, &["group", "create", "students"]);
    assert_eq!(out.trim(), "created group students");
    ok(
        server,
        admin,
        &["group", "limits", "students", "--cores", "2"],
    );
    ok(
        server,
        admin,
        &["group", "limits", "students", "--memory", "4096"],
    );
    let out = ok(server, admin, &["group", "add", "students", "alice"]);
    assert_eq!(out.trim(), "alice is in group students");
    let groups: Vec<Group> = json(server, admin, &["group", "list"]);
    let students = groups.iter().find(|g| g.name == "students").unwrap();
    assert_eq!(
        (
            students.limits.cores,
            students.limits.memory_mib,
            &students.members
        ),
        (Some(2), Some(4096), &vec!["alice".to_owned()]),
        "--memory kept --cores"
    );
    let user = show("alice");
    assert_eq!(user.groups, ["students"]);
    assert_eq!(user.limits.cores, 2, "from the group");
    ok(server, admin, &["group", "create", "spare"]);
    ok(server, admin, &["group", "add", "spare", "alice"]);
    ok(server, admin, &["group", "remove", "spare", "alice"]);
    ok(server, admin, &["group", "delete", "spare"]);
    let out = ok(server, admin, &["user", "list"]);
    let row = out.lines().find(|l| l.starts_with("alice")).unwrap();
    assert!(
        row.contains("member") && row.contains("students") && row.contains("0/2"),
        "{row}"
    );
    let out = ok(server, &alice, &["user", "me"]);
    assert!(out.contains("0 of 2 in use"), "{out}");
    let err = fails(server, admin, &["user", "set", "alice", "--role", "boss"]);
    assert!(err.contains("--role must be member or admin"), "{err}");
    let out = ok(
        server,
        admin,
        &["user", "set", "alice", "--email", "alice@example.net"],
    );
    assert_eq!(out.trim(), "alice: email alice@example.net");

    // SSH keys on the profile: add, list, delete by fingerprint; bad files are refused.
    let dir = tempfile::tempdir().unwrap();
    let fingerprint = keygen(dir.path());
    let public = dir.path().join("k.pub");
    let public = public.to_str().unwrap();
    let out = ok(
        server,
        &alice,
        &["ssh-key", "add", public, "--name", "laptop"],
    );
    assert_eq!(out.trim(), format!("added SSH key laptop ({fingerprint})"));
    let keys: Vec<SshKey> = json(server, &alice, &["ssh-key", "list"]);
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0].name.as_str(), keys[0].fingerprint.as_str()),
        ("laptop", fingerprint.as_str())
    );
    let out = ok(server, &alice, &["ssh-key", "list"]);
    assert!(
        out.contains("laptop") && out.contains("ssh-ed25519"),
        "{out}"
    );
    let bad = dir.path().join("bad.pub");
    std::fs::write(&bad, "this is not a key\n").unwrap();
    let err = fails(server, &alice, &["ssh-key", "add", bad.to_str().unwrap()]);
    assert!(err.contains("public_key"), "{err}");
    let private = dir.path().join("k");
    let err = fails(
        server,
        &alice,
        &["ssh-key", "add", private.to_str().unwrap()],
    );
    assert!(err.contains("is a private key"), "{err}");
    let err = fails(server, &alice, &["ssh-key", "delete", "nosuchkey"]);
    assert!(err.contains("porthole ssh-key list"), "{err}");
    let out = ok(server, &alice, &["ssh-key", "delete", &fingerprint]);
    assert_eq!(
        out.trim(),
        format!("deleted SSH key laptop ({fingerprint})")
    );
    let keys: Vec<SshKey> = json(server, &alice, &["ssh-key", "list"]);
    assert!(keys.is_empty());

    // Template approval: members neither see nor use a revoked template.
    let template: Template = json(server, admin, &["template", "approve", "demo", "--revoke"]);
    assert!(!template.approved);
    let visible: Vec<Template> = json(server, &alice, &["template", "list"]);
    assert!(visible.is_empty(), "{visible:?}");
    fails(
        server,
        &alice,
        &["vm", "create", "nope", "--template", "demo"],
    );
    let out = ok(server, admin, &["template", "approve", "demo"]);
    assert!(out.contains("approved: members may"), "{out}");
    let out = ok(server, &alice, &["template", "list"]);
    let row = out.lines().find(|l| l.starts_with("demo")).unwrap();
    assert!(row.contains("yes"), "{row}");
    let err = fails(server, &alice, &["template", "approve", "demo"]);
    assert!(err.contains("admin"), "{err}");

    // A VM with a key from a file: the guest login is in the JSON, once.
    let created: CreateVmResponse = json(
        server,
        &alice,
        &[
            "vm",
            "create",
            "guest1",
            "--template",
            "demo",
            "--memory",
            "256",
            "--ssh-key",
            public,
        ],
    );
    let login = created
        .guest_login
        .expect("a template VM has a guest login");
    assert_eq!(login.user, "alice");
    assert!(login.ssh_keys >= 1, "{login:?}");
    assert!(login.password.len() >= 12, "{login:?}");
    let err = fails(
        server,
        &alice,
        &[
            "vm",
            "create",
            "guest2",
            "--template",
            "demo",
            "--ssh-key",
            bad.to_str().unwrap(),
        ],
    );
    assert!(err.contains("ssh_keys"), "{err}");
    let job: Job = json(
        server,
        &alice,
        &["job", "show", &created.job.id.to_string(), "--wait"],
    );
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);

    // Expiry: shown, renewed, exempted (admins only) and back.
    let vm: Vm = json(server, &alice, &["vm", "show", "guest1"]);
    let expires = vm.expires_at.expect("a new VM expires");
    let out = ok(server, &alice, &["vm", "show", "guest1"]);
    assert!(out.contains("expires"), "{out}");
    let out = ok(server, &alice, &["vm", "renew", "guest1"]);
    assert!(out.starts_with("guest1 expires at "), "{out}");
    let renewed: Vm = json(server, &alice, &["vm", "renew", "guest1"]);
    assert!(renewed.expires_at.unwrap() >= expires);
    let err = fails(server, &alice, &["vm", "exempt", "guest1"]);
    assert!(err.contains("only admins"), "{err}");
    let out = ok(server, admin, &["vm", "exempt", "guest1"]);
    assert_eq!(out.trim(), "guest1 is exempt from expiry");
    let out = ok(server, admin, &["vm", "list"]);
    let row = out.lines().find(|l| l.starts_with("guest1")).unwrap();
    assert!(row.contains("exempt"), "{row}");
    let vm: Vm = json(server, admin, &["vm", "exempt", "guest1", "--off"]);
    assert!(!vm.expiry_exempt && vm.expires_at.is_some());

    let out = ok(server, &alice, &["vm", "delete", "guest1", "--wait"]);
    assert_eq!(out.trim(), "guest1 deleted");

    // For people, the login goes to stderr, so stdout stays the one result line; with
    // --wait in JSON, it joins the VM.
    let (code, out, err) = server.cli(
        &alice,
        &[
            "vm",
            "create",
            "guest2",
            "-t",
            "demo",
            "--memory",
            "256",
            "--ssh-key",
            public,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.trim().starts_with("creating guest2 (job "), "{out}");
    assert_eq!(out.trim().lines().count(), 1, "{out}");
    for text in [
        "guest login for guest2",
        "user:     alice",
        "password: ",
        "1 key accepted",
        "shown only now",
    ] {
        assert!(err.contains(text), "{text:?} in {err}");
    }
    let waited: serde_json::Value = json(
        server,
        &alice,
        &[
            "vm",
            "create",
            "guest3",
            "-t",
            "demo",
            "--memory",
            "256",
            "--guest-user",
            "ops",
            "--wait",
        ],
    );
    assert_eq!(waited["name"], "guest3");
    assert_eq!(waited["state"], "running");
    assert_eq!(waited["guest_login"]["user"], "ops");
    assert_eq!(waited["guest_login"]["ssh_keys"], 0);
    for vm in ["guest2", "guest3"] {
        ok(server, &alice, &["vm", "delete", vm, "--wait"]);
    }

    // The audit log records it all; members may not read it.
    let entries: Vec<AuditEntry> = json(server, admin, &["audit", "--limit", "1000"]);
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    for action in [
        "user.limits",
        "user.update",
        "group.create",
        "group.limits",
        "group.add_member",
        "group.remove_member",
        "group.delete",
        "ssh_key.add",
        "ssh_key.delete",
        "template.approve",
        "template.unapprove",
        "vm.create",
        "vm.renew",
        "vm.update",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    let mine: Vec<AuditEntry> = json(server, admin, &["audit", "--actor", "alice"]);
    assert!(!mine.is_empty() && mine.iter().all(|e| e.actor == "alice"));
    assert!(
        mine.iter()
            .any(|e| e.action == "ssh_key.add" && e.outcome == "ok")
    );
    let out = ok(server, admin, &["audit", "--limit", "5"]);
    let mut lines = out.lines();
    assert!(
        lines.next().unwrap().starts_with("TIME"),
        "a table with a header: {out}"
    );
    assert_eq!(lines.count(), 5);
    let err = fails(server, &alice, &["audit"]);
    assert!(err.contains("admin"), "{err}");
}
