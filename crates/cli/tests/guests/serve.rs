//! `porthole serve` itself: choosing the accelerator, owning its data directory, and the
//! first admin account.

use std::process::{Command, Stdio};

use porthole_testing::porthole_binary;
use porthole_testing::server::*;

#[tokio::test]
async fn the_accelerator_is_probed_once_logged_and_used() {
    let server = Server::start_with_accel("auto", &[]).await;
    let log = server.log();
    let choices: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("chose the guest accelerator"))
        .collect();
    assert_eq!(choices.len(), 1, "{log}");
    let health = server.anonymous().health().await.unwrap();
    assert!(
        choices[0].contains(&format!("accel=\"{}\"", health.accel)),
        "{}",
        choices[0]
    );
    if std::path::Path::new("/dev/kvm").exists() && health.accel == "tcg" {
        // KVM is present but broken on these machines: the reason must say the probe failed.
        assert!(
            choices[0].contains("KVM probe guest failed"),
            "{}",
            choices[0]
        );
    }
    let admin = server.admin().await;
    let vm = running_vm(&admin, "accel").await;
    let pid = server.qemu_pids_of(vm.id)[0];
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .replace('\0', " ");
    assert!(
        cmdline.contains(&format!("-accel {}", health.accel)),
        "{cmdline}"
    );
    console_shows(&admin, vm.id, "porthole-guest ready").await;
}

#[tokio::test]
async fn a_second_plane_on_the_same_data_dir_is_refused() {
    let server = Server::start().await;
    let output = Command::new(porthole_binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--accel",
            "tcg",
            "--data-dir",
        ])
        .arg(&server.data_dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("another porthole (pid") && err.contains("stop it first"),
        "{err}"
    );
    // The first plane is unharmed.
    server.anonymous().health().await.unwrap();
}

#[tokio::test]
async fn without_a_configured_password_the_admin_password_is_printed_once() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let serve = |dir: &std::path::Path| {
        Command::new(porthole_binary())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--accel",
                "tcg",
                "--data-dir",
            ])
            .arg(dir.join("d"))
            .env_remove("PORTHOLE_ADMIN_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = read_until_serving(serve(dir.path()));
    let password = first
        .lines()
        .find_map(|l| l.trim().strip_prefix("password: "))
        .unwrap_or_else(|| panic!("no password printed:\n{first}"))
        .to_owned();
    assert_eq!(password.len(), 24);
    let second = read_until_serving(serve(dir.path()));
    assert!(!second.contains("password:"), "printed twice:\n{second}");
    assert!(
        !first
            .lines()
            .any(|l| l.contains("INFO") && l.contains(&password)),
        "password in a log line"
    );
}

/// Reads a plane's stderr until it serves, then stops it and returns what it wrote.
fn read_until_serving(mut child: std::process::Child) -> String {
    use std::io::BufRead;
    let mut text = String::new();
    let reader = std::io::BufReader::new(child.stderr.take().unwrap());
    for line in reader.lines() {
        let line = line.unwrap();
        text.push_str(&line);
        text.push('\n');
        if line.starts_with("porthole: serving on") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    text
}
