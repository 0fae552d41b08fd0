//! A QEMU node for the driver's tests: a [`QemuDriver`] on a fresh root, booting the
//! project's test guest (built by `guest/build.sh`) under TCG, with helpers to type at its
//! serial shell and wait for output.
//!
//! A [`Node`] kills every QEMU under its root when dropped, so a failing test leaves nothing
//! running (QEMU daemonizes, so it would otherwise outlive the test).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use porthole_core::driver::{
    BootMedia, BootOrder, ConsoleEndpoint, ConsoleKind, DirectBoot, DiskFormat, Driver,
    DriverError, NoProgress, Progress, VmDefinition,
};
use porthole_core::image::{ImageFile, ImageFiles};
use porthole_core::{CloudInit, IsoId, Resources, TemplateId, VmId, VmName};
use porthole_qemu::process::{VmFiles, kill_hard};
use porthole_qemu::{Accel, QemuConfig, QemuDriver};

use crate::guest::guest_dir;

/// The shell prompt of the test guest's serial console.
pub const PROMPT: &str = "porthole-guest:/# ";

/// How long a guest may take to boot or answer under TCG on a busy machine.
pub const GUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The images a test node boots from: the test guest as the one template
/// ([`GUEST_TEMPLATE`]), and the ISOs a test registers.
#[derive(Debug, Default)]
pub struct GuestImages {
    isos: Mutex<HashMap<IsoId, PathBuf>>,
}

/// The test guest's template id in [`GuestImages`].
pub const GUEST_TEMPLATE: TemplateId =
    TemplateId::from_u128(0x0b2c_3a1e_8a8e_4a36_9d1f_2b1c_1c1d_1e1f);

impl GuestImages {
    /// Makes the ISO at `path` available to the node, and returns its id.
    pub fn add_iso(&self, path: &Path) -> IsoId {
        let id = IsoId::random();
        self.isos.lock().unwrap().insert(id, path.to_owned());
        id
    }
}

#[async_trait]
impl ImageFiles for GuestImages {
    async fn path(
        &self,
        file: ImageFile,
        _progress: &dyn Progress,
    ) -> Result<PathBuf, DriverError> {
        let guest = guest_dir();
        let path = match file {
            ImageFile::TemplateDisk(GUEST_TEMPLATE) => Some(guest.join("disk.qcow2")),
            ImageFile::TemplateKernel(GUEST_TEMPLATE) => Some(guest.join("vmlinuz")),
            ImageFile::TemplateInitrd(GUEST_TEMPLATE) => Some(guest.join("initrd.img")),
            ImageFile::Iso(id) => self.isos.lock().unwrap().get(&id).cloned(),
            _ => None,
        };
        path.ok_or_else(|| DriverError::BadImage(format!("the test has no {file}")))
    }
}

/// A QEMU node on a temporary root.
#[derive(Debug)]
pub struct Node {
    pub driver: Arc<QemuDriver>,
    pub root: PathBuf,
    /// What its VMs boot from.
    pub images: Arc<GuestImages>,
    _temp: tempfile::TempDir,
}

impl Node {
    /// A fresh node whose guests run under TCG.
    pub async fn new() -> Node {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("vms");
        let images = Arc::new(GuestImages::default());
        let driver = QemuDriver::open(QemuConfig {
            root: root.clone(),
            qemu: "qemu-system-x86_64".into(),
            accel: Accel::Tcg,
            images: Arc::clone(&images) as _,
        })
        .await
        .unwrap();
        Node {
            driver: Arc::new(driver),
            root,
            images,
            _temp: temp,
        }
    }

    /// VM `id`'s files.
    pub fn files(&self, id: VmId) -> VmFiles {
        VmFiles::new(&self.root, id)
    }

    /// Creates a VM from the test guest (direct kernel boot, its data disk as disk0).
    pub async fn create(&self, cloud_init: Option<CloudInit>) -> VmDefinition {
        let def = guest_definition(cloud_init);
        self.driver.create(&def, &NoProgress).await.unwrap();
        def
    }

    /// The serial console output so far (the tap's scrollback, which the tests never fill).
    pub async fn output(&self, vm: VmId) -> Vec<u8> {
        self.driver.console_output(vm).await.unwrap()
    }

    /// Waits until the serial output from byte `from` on contains `needle`; returns the
    /// output length just past it.
    pub async fn wait_for(&self, vm: VmId, from: usize, needle: &str) -> usize {
        let deadline = Instant::now() + GUEST_TIMEOUT;
        let needle = needle.as_bytes();
        loop {
            let output = self.output(vm).await;
            let tail = output.get(from..).unwrap_or_default();
            if let Some(at) = tail.windows(needle.len()).position(|w| w == needle) {
                return from + at + needle.len();
            }
            assert!(
                Instant::now() < deadline,
                "{:?} did not appear on the serial console; it shows:\n{}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(tail)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the guest's banner and then its shell prompt.
    pub async fn wait_for_shell(&self, vm: VmId) -> usize {
        let at = self.wait_for(vm, 0, "porthole-guest ready").await;
        self.wait_for(vm, at, PROMPT).await
    }

    /// Types `line` and a newline at the serial shell, and returns where its output starts.
    pub async fn type_line(&self, vm: VmId, line: &str) -> usize {
        let from = self.output(vm).await.len();
        let ConsoleEndpoint::Shared(console) =
            self.driver.console(vm, ConsoleKind::Serial).await.unwrap()
        else {
            panic!("the serial console is not shared");
        };
        console.write(format!("{line}\n").as_bytes()).await.unwrap();
        from
    }

    /// Runs `command` at the serial shell and waits for it to finish, returning its output
    /// (with the echoed command line). `command` must not itself print `__done_<n>__`.
    pub async fn run(&self, vm: VmId, command: &str) -> String {
        // The marker is computed by the shell, so the echoed command line does not match it.
        let n: u32 = rand_number();
        let line = format!("{command}; echo __done_$(({n} + 1))__");
        let from = self.type_line(vm, &line).await;
        let end = self
            .wait_for(vm, from, &format!("__done_{}__", n + 1))
            .await;
        String::from_utf8_lossy(&self.output(vm).await[from..end]).into_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for entry in entries.flatten() {
                kill_hard(&entry.path().join("qemu.pid"));
            }
        }
    }
}

fn rand_number() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    1000 + nanos % 1_000_000
}

/// A definition for the test guest ([`GUEST_TEMPLATE`]).
pub fn guest_definition(cloud_init: Option<CloudInit>) -> VmDefinition {
    let cmdline = std::fs::read_to_string(guest_dir().join("cmdline")).unwrap();
    VmDefinition {
        id: VmId::random(),
        name: VmName::parse("test").unwrap(),
        resources: Resources {
            cores: 1,
            memory_mib: 256,
            disk_gib: 1,
        },
        boot: BootMedia::Template {
            id: GUEST_TEMPLATE,
            format: DiskFormat::Qcow2,
            direct_boot: Some(DirectBoot {
                initrd: true,
                cmdline: Some(cmdline.trim().to_owned()),
            }),
        },
        cloud_init,
        cdrom: None,
        boot_order: BootOrder::Disk,
        owner: None,
    }
}
