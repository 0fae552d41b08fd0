//! The VM lifecycle end to end, on real QEMU guests: create from the demo template, see the
//! guest boot on its serial console, stop, start, the other power actions, resize, delete,
//! and nothing left behind.

use std::time::Duration;

use porthole_api::UpdateVmRequest;
use porthole_core::VmState;
use porthole_testing::server::*;

#[tokio::test]
async fn create_boot_stop_start_delete_leaves_nothing() {
    let server = Server::start().await;
    let admin = server.admin().await;

    let created = admin.create_vm(&demo_vm("life")).await.unwrap();
    assert_eq!(created.vm.state, VmState::Creating);
    let job = succeed(&admin, &created.job).await;
    assert_eq!(job.progress, 1.0);
    let id = created.vm.id;
    assert_eq!(admin.vm(id).await.unwrap().state, VmState::Running);
    console_shows(&admin, id, "porthole-guest ready").await;
    assert_eq!(server.qemu_pids_of(id).len(), 1);
    // The guest announces itself on the VGA screen as well as on the serial port.
    eventually(
        Duration::from_secs(30),
        "the marker on the VGA screen",
        || async {
            vga_text(&server, id)
                .contains("porthole-guest ready")
                .then_some(())
        },
    )
    .await;

    let stop = admin.vm_action(id, "stop").await.unwrap().job;
    succeed(&admin, &stop).await;
    assert_eq!(admin.vm(id).await.unwrap().state, VmState::Stopped);
    assert!(
        server.qemu_pids_of(id).is_empty(),
        "QEMU still runs after stop"
    );

    let start = admin.vm_action(id, "start").await.unwrap().job;
    succeed(&admin, &start).await;
    assert_eq!(admin.vm(id).await.unwrap().state, VmState::Running);
    // A fresh boot after the stop: the guest prints its marker again on a fresh console.
    console_shows(&admin, id, "porthole-guest ready").await;
    assert_eq!(server.qemu_pids_of(id).len(), 1);

    let delete = admin.delete_vm(id).await.unwrap().job;
    assert_eq!(admin.vm(id).await.unwrap().state, VmState::Deleting);
    succeed(&admin, &delete).await;
    assert_eq!(admin.vm(id).await.unwrap_err().status(), Some(404));
    assert!(
        server.qemu_pids_of(id).is_empty(),
        "QEMU still runs after delete"
    );
    assert_eq!(
        server.vm_files(),
        Vec::<std::path::PathBuf>::new(),
        "files left behind"
    );
}

#[tokio::test]
async fn power_actions_resize_and_acpi_shutdown() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let vm = running_vm(&admin, "power").await;
    let state = async |action: &str| {
        let job = admin.vm_action(vm.id, action).await.unwrap().job;
        succeed(&admin, &job).await;
        admin.vm(vm.id).await.unwrap().state
    };
    // The guest boots fully first, so that its readiness after the reset is a second banner:
    // a power button pressed before the rebooted guest listens for it would go unheard.
    let banner = "porthole-guest ready";
    console_shows(&admin, vm.id, banner).await;
    assert_eq!(state("suspend").await, VmState::Paused);
    assert_eq!(state("resume").await, VmState::Running);
    assert_eq!(state("reset").await, VmState::Running);
    eventually(
        Duration::from_secs(90),
        "the banner again after the reset",
        || async {
            let output = admin.console_output(vm.id).await.unwrap();
            (output.matches(banner).count() >= 2).then_some(())
        },
    )
    .await;

    // The disk grows while the guest runs.
    let grown = admin
        .update_vm(
            vm.id,
            &UpdateVmRequest {
                disk_gib: Some(3),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(grown.disk_gib, 3);

    // The demo guest honours the ACPI power button and powers off well before the 20 s
    // fallback would pull the plug.
    let started = std::time::Instant::now();
    assert_eq!(state("shutdown").await, VmState::Stopped);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "shutdown fell back to a hard stop"
    );
    console_shows(&admin, vm.id, "power button pressed").await;
    assert!(server.qemu_pids_of(vm.id).is_empty());

    // Cores and memory change while stopped and apply at the next start.
    let resized = admin
        .update_vm(
            vm.id,
            &UpdateVmRequest {
                cores: Some(2),
                memory_mib: Some(384),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((resized.cores, resized.memory_mib), (2, 384));
    assert_eq!(state("start").await, VmState::Running);
    let pids = server.qemu_pids_of(vm.id);
    assert_eq!(pids.len(), 1);
    let cmdline = std::fs::read_to_string(format!("/proc/{}/cmdline", pids[0]))
        .unwrap()
        .replace('\0', " ");
    assert!(
        cmdline.contains("-smp 2") && cmdline.contains("-m 384M"),
        "{cmdline}"
    );
}

#[tokio::test]
async fn a_vm_whose_qemu_died_shows_as_stopped() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let vm = running_vm(&admin, "died").await;
    let pid = server.qemu_pids_of(vm.id)[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually(
        Duration::from_secs(15),
        "the VM to show as stopped",
        || async { (admin.vm(vm.id).await.unwrap().state == VmState::Stopped).then_some(()) },
    )
    .await;
    let start = admin.vm_action(vm.id, "start").await.unwrap().job;
    succeed(&admin, &start).await;
    assert_eq!(server.qemu_pids_of(vm.id).len(), 1);
}

#[tokio::test]
async fn cli_creates_shows_and_deletes_with_json_output() {
    let server = Server::start().await;
    let token = server.admin_token().await;

    let (code, out, err) = server.cli(
        &token,
        &["vm", "create", "clivm", "--template", "demo", "--wait"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "clivm is running");

    let (code, out, _) = server.cli(&token, &["vm", "list"]);
    assert_eq!(code, 0);
    let row = out
        .lines()
        .find(|l| l.starts_with("clivm"))
        .expect("listed");
    assert!(
        row.contains("running") && row.contains("template demo"),
        "{row}"
    );

    let (code, out, _) = server.cli(&token, &["vm", "show", "clivm", "--output", "json"]);
    assert_eq!(code, 0);
    let vm: porthole_api::Vm = serde_json::from_str(&out).unwrap();
    assert_eq!((vm.name.as_str(), vm.state), ("clivm", VmState::Running));

    let (code, _, err) = server.cli(&token, &["vm", "start", "clivm"]);
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "porthole: cannot start a VM that is running");

    let (code, out, err) = server.cli(&token, &["vm", "delete", "clivm", "--wait"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "clivm deleted");
    assert!(server.vm_files().is_empty());
}
