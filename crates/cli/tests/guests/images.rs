//! Importing templates and ISOs, from files and URLs, and booting VMs from them. Rejected
//! images leave no file behind.

use porthole_api::CreateVmRequest;
use porthole_core::VmState;
use porthole_testing::guest::make_iso;
use porthole_testing::server::*;
use std::path::Path;
use std::process::{Command, Stdio};

fn write_random(path: &Path, bytes: usize) {
    let mut data = vec![0u8; bytes];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(path, data).unwrap();
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Files under templates/, isos/ and incoming/.
fn image_files(server: &Server) -> Vec<std::path::PathBuf> {
    ["templates", "isos", "incoming"]
        .iter()
        .flat_map(|d| files_under(&server.data_dir.join(d)))
        .collect()
}

#[tokio::test]
async fn templates_import_from_files_and_urls_and_boot() {
    let server = Server::start().await;
    let token = server.admin_token().await;
    let admin = server.admin().await;
    let work = tempfile::tempdir().unwrap();
    let raw = work.path().join("base.raw");
    write_random(&raw, 8 << 20);

    let (code, out, err) = server.cli(
        &token,
        &[
            "template",
            "import",
            raw.to_str().unwrap(),
            "--name",
            "rawbase",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "imported template rawbase (raw)");

    // The same bytes over HTTP, streamed through the CLI without a temporary copy.
    let mut http = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", "0"])
        .current_dir(work.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let port = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(http.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 12345 (http://127.0.0.1:12345/) ..."
        line.split("port ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    let url = format!("http://127.0.0.1:{port}/base.raw");
    let (code, _, err) = server.cli(&token, &["template", "import", &url, "--name", "fromurl"]);
    http.kill().unwrap();
    http.wait().unwrap();
    assert_eq!(code, 0, "{err}");

    let templates = admin.templates().await.unwrap();
    let by_name = |n: &str| templates.iter().find(|t| t.name == n).unwrap().clone();
    assert_eq!(by_name("rawbase").sha256, sha256(&raw));
    assert_eq!(by_name("fromurl").sha256, sha256(&raw));
    assert_eq!(by_name("rawbase").boot, "disk");

    // A disk-boot template makes a VM whose overlay sits on the raw base.
    let vm = admin
        .create_vm(&CreateVmRequest {
            template: Some("rawbase".into()),
            ..demo_vm("rawvm")
        })
        .await
        .unwrap();
    succeed(&admin, &vm.job).await;
    assert_eq!(admin.vm(vm.vm.id).await.unwrap().state, VmState::Running);
    let overlay = server
        .data_dir
        .join("vms")
        .join(vm.vm.id.to_string())
        .join("disk.qcow2");
    let info = Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(&overlay)
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["backing-filename-format"], "raw");
    assert!(
        std::fs::metadata(&overlay).unwrap().len() < 1 << 20,
        "overlay copied the base"
    );

    // A template in use cannot be deleted; once unused it can, with its files.
    assert_eq!(
        admin.delete_template("rawbase").await.unwrap_err().status(),
        Some(409)
    );
    succeed(&admin, &admin.delete_vm(vm.vm.id).await.unwrap().job).await;
    let before = image_files(&server).len();
    admin.delete_template("rawbase").await.unwrap();
    assert!(image_files(&server).len() < before);
    assert!(
        admin
            .templates()
            .await
            .unwrap()
            .iter()
            .all(|t| t.name != "rawbase")
    );
}

#[tokio::test]
async fn bad_images_are_refused_and_leave_nothing() {
    let server = Server::start().await;
    let token = server.admin_token().await;
    let work = tempfile::tempdir().unwrap();
    let before = image_files(&server);

    // A qcow2 with a backing file would let an image read host files.
    let sneaky = work.path().join("sneaky.qcow2");
    let status = Command::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "-b",
            "/etc/hostname",
        ])
        .arg(&sneaky)
        .arg("64M")
        .status()
        .unwrap();
    assert!(status.success());
    let refuse = |args: &[&str], expected: &str| {
        let (code, _, err) = server.cli(&token, args);
        assert_eq!(code, 1, "{args:?} was accepted");
        assert!(err.contains(expected), "{args:?}: {err}");
    };
    refuse(
        &[
            "template",
            "import",
            sneaky.to_str().unwrap(),
            "--name",
            "sneaky",
        ],
        "disk: image has a backing file",
    );

    let raw = work.path().join("ok.raw");
    write_random(&raw, 1 << 20);
    let text = work.path().join("notakernel");
    std::fs::write(&text, "hello").unwrap();
    refuse(
        &[
            "template",
            "import",
            raw.to_str().unwrap(),
            "--name",
            "badkernel",
            "--kernel",
            text.to_str().unwrap(),
        ],
        "kernel: is not an x86 Linux kernel",
    );
    refuse(
        &[
            "template",
            "import",
            raw.to_str().unwrap(),
            "--name",
            "Bad_Name",
        ],
        "name: may contain only",
    );
    refuse(
        &[
            "template",
            "import",
            raw.to_str().unwrap(),
            "--name",
            "demo",
        ],
        "already",
    );
    let empty = work.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    refuse(
        &[
            "template",
            "import",
            empty.to_str().unwrap(),
            "--name",
            "empty",
        ],
        "disk: is empty",
    );
    refuse(
        &["iso", "import", raw.to_str().unwrap(), "--name", "notiso"],
        "iso: is not an ISO 9660 image",
    );

    assert_eq!(image_files(&server), before, "a refused import left files");
    let admin = server.admin().await;
    assert_eq!(admin.templates().await.unwrap().len(), 1);
    assert!(admin.isos().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_vm_boots_from_an_imported_iso_with_a_blank_disk() {
    let server = Server::start().await;
    let token = server.admin_token().await;
    let admin = server.admin().await;
    let work = tempfile::tempdir().unwrap();
    let iso = make_iso(
        work.path(),
        "test",
        "PORTHOLE",
        &[("README", "porthole test ISO")],
    );

    let (code, out, err) = server.cli(
        &token,
        &[
            "iso",
            "import",
            iso.to_str().unwrap(),
            "--name",
            "installer",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "imported ISO installer");

    let request = CreateVmRequest {
        template: None,
        iso: Some("installer".into()),
        disk_gib: 2,
        ..demo_vm("isovm")
    };
    let created = admin.create_vm(&request).await.unwrap();
    succeed(&admin, &created.job).await;
    let vm = admin.vm(created.vm.id).await.unwrap();
    assert_eq!(
        (vm.state, vm.iso.as_deref(), vm.disk_gib),
        (VmState::Running, Some("installer"), 2)
    );
    let pid = server.qemu_pids_of(vm.id)[0];
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .replace('\0', " ");
    assert!(
        cmdline.contains("media=cdrom") && cmdline.contains("ide-cd,drive=cdrom0,bootindex=1"),
        "{cmdline}"
    );

    assert_eq!(
        admin.delete_iso("installer").await.unwrap_err().status(),
        Some(409),
        "ISO in use"
    );
    succeed(&admin, &admin.delete_vm(vm.id).await.unwrap().job).await;
    assert!(server.vm_files().is_empty());
    admin.delete_iso("installer").await.unwrap();
    assert!(files_under(&server.data_dir.join("isos")).is_empty());
}
