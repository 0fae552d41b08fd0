//! `kill -9` of the plane at the worst moments: while VMs run, and in the middle of creating
//! one. Nothing may be orphaned, started twice, or left half-done.

use std::collections::HashSet;
use std::time::Duration;

use porthole_core::{JobState, VmState};
use porthole_testing::server::*;

#[tokio::test]
async fn crash_while_running_readopts_the_same_qemu() {
    let mut server = Server::start().await;
    let admin = server.admin().await;
    let kept = running_vm(&admin, "kept").await;
    let lost = running_vm(&admin, "lost").await;
    console_shows(&admin, kept.id, "porthole-guest ready").await;
    let kept_pids = server.qemu_pids_of(kept.id);
    assert_eq!(kept_pids.len(), 1);

    server.kill9();
    // One guest dies while no plane watches it.
    let lost_pid = server.qemu_pids_of(lost.id)[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(lost_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert_eq!(
        server.qemu_pids_of(kept.id),
        kept_pids,
        "QEMU must outlive the plane"
    );

    server.restart().await;
    let admin = server.admin().await;
    assert_eq!(admin.vm(kept.id).await.unwrap().state, VmState::Running);
    assert_eq!(admin.vm(lost.id).await.unwrap().state, VmState::Stopped);
    assert_eq!(
        server.qemu_pids_of(kept.id),
        kept_pids,
        "re-adopted, not restarted"
    );
    assert!(server.log().contains("re-adopted running QEMU"));

    // The re-adopted VM is fully managed: its console is tapped again and actions work.
    let reset = admin.vm_action(kept.id, "reset").await.unwrap().job;
    succeed(&admin, &reset).await;
    console_shows(&admin, kept.id, "porthole-guest ready").await;
    let start = admin.vm_action(kept.id, "start").await;
    assert_eq!(start.unwrap_err().status(), Some(409));
    assert_eq!(server.qemu_pids_of(kept.id), kept_pids);
}

#[tokio::test]
async fn crash_while_creating_is_resumed_or_rolled_back() {
    let mut server = Server::start().await;
    let resumed = |log: &str| {
        log.matches("resuming jobs an earlier run left unfinished")
            .count()
    };
    let mut interrupted_mid_job = 0;
    let mut ids = Vec::new();
    for (i, delay_ms) in [0u64, 15, 30, 45, 60, 80, 100, 130, 170, 220]
        .into_iter()
        .enumerate()
    {
        let admin = server.admin().await;
        let created = admin
            .create_vm(&demo_vm(&format!("crash{i}")))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        server.kill9();
        let before = resumed(&server.log());
        server.restart().await;
        if resumed(&server.log()) > before {
            interrupted_mid_job += 1;
        }
        let admin = server.admin().await;
        let job = finish(&admin, &created.job, Duration::from_secs(90)).await;
        let id = created.vm.id;
        match job.state {
            JobState::Succeeded => {
                assert_eq!(admin.vm(id).await.unwrap().state, VmState::Running);
                assert_eq!(
                    server.qemu_pids_of(id).len(),
                    1,
                    "exactly one QEMU for {id}"
                );
                ids.push(id);
            }
            JobState::Failed => {
                assert_eq!(admin.vm(id).await.unwrap_err().status(), Some(404));
                assert!(server.qemu_pids_of(id).is_empty());
                assert!(!server.data_dir.join("vms").join(id.to_string()).exists());
            }
            other => panic!("job still {other} after restart"),
        }
    }
    eprintln!("{interrupted_mid_job} of 10 kills landed while the create job ran");
    assert!(
        interrupted_mid_job > 0,
        "no kill landed while a create job ran; adjust the delays"
    );

    // Nothing orphaned: every VM directory and every QEMU process belongs to a VM row.
    let admin = server.admin().await;
    let known: HashSet<String> = admin
        .vms()
        .await
        .unwrap()
        .iter()
        .map(|vm| vm.id.to_string())
        .collect();
    assert_eq!(known.len(), ids.len());
    for dir in std::fs::read_dir(server.data_dir.join("vms")).unwrap() {
        let name = dir.unwrap().file_name().to_string_lossy().into_owned();
        assert!(known.contains(&name), "orphaned VM directory {name}");
    }
    assert_eq!(
        server.qemu_pids().len(),
        ids.len(),
        "orphaned QEMU processes"
    );
    assert!(
        std::fs::read_dir(server.data_dir.join("incoming"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[tokio::test]
async fn a_create_that_fails_rolls_back_completely() {
    let server = Server::start().await;
    let admin = server.admin().await;
    // Take the template's base image away behind porthole's back: the overlay cannot be made.
    let templates = server.data_dir.join("templates");
    let template_dir = std::fs::read_dir(&templates)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::rename(template_dir.join("disk"), template_dir.join("disk.moved")).unwrap();

    let created = admin.create_vm(&demo_vm("doomed")).await.unwrap();
    let job = finish(&admin, &created.job, Duration::from_secs(60)).await;
    assert_eq!(job.state, JobState::Failed);
    let error = job.error.unwrap();
    assert!(
        error.contains("rolled back") && error.contains("backing"),
        "{error}"
    );
    assert_eq!(
        admin.vm(created.vm.id).await.unwrap_err().status(),
        Some(404)
    );
    assert!(server.vm_files().is_empty(), "{:?}", server.vm_files());
    assert!(server.qemu_pids().is_empty());
}
