//! porthole's built-in node: QEMU processes on this host.
//!
//! Each VM lives in its own directory under the driver's root, named by its id:
//! `vm.json` (the definition, written last at create), `disk.qcow2`, `seed.iso` (cloud-init
//! data, if the VM has any; see [`seed`]), the QMP, VNC and serial unix sockets, `qemu.pid`
//! and `qemu.log`. Deleting a VM removes the directory, so nothing is left behind.
//!
//! Snapshots are internal qcow2 snapshots of `disk.qcow2` ([`snapshot`]): through QMP jobs,
//! with memory, while QEMU runs; through `qemu-img` while it does not. Boot media changes
//! ([`Driver::set_boot_media`]) are stored in `vm.json` and apply at the next start.
//!
//! Starting a VM goes:
//! 1. launch QEMU daemonized and paused (`-S`), so it survives porthole restarts;
//! 2. attach the [`serial::SerialTap`] before the guest can print anything;
//! 3. `cont` over QMP.
//!
//! On [`QemuDriver::open`], every VM whose QEMU still runs is re-adopted: its serial tap is
//! re-attached and nothing is started again.

pub mod accel;
pub mod control;
pub mod image;
pub mod process;
pub mod qmp;
pub mod seed;
pub mod serial;
pub mod snapshot;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use porthole_core::driver::{
    BootMedia, BootOrder, Capacity, ConsoleEndpoint, ConsoleKind, Driver, DriverError, NoProgress,
    PowerState, Progress, VmDefinition,
};
use porthole_core::ids::{IsoId, VmId};
use porthole_core::image::{ImageFile, ImageFiles};
use porthole_core::node::{Capabilities, ImageHome, NodeKind};
use porthole_core::snapshot::{Snapshot, SnapshotName};
use porthole_core::spec::Resources;
use serde_json::json;

pub use accel::{Accel, AccelChoice};
use control::ConsoleControl;
use image::{ImageError, SnapshotOp};
use process::{BootFiles, LaunchError, VmFiles};
use qmp::{Qmp, QmpError};
use seed::SeedError;
use serial::SerialTap;
use snapshot::{SnapshotError, SnapshotInfo};

/// How long a VNC password set for a connection stays valid.
pub const VNC_PASSWORD_TTL: Duration = Duration::from_secs(30);

/// How long `stop` waits for QEMU to exit after `quit` before killing it.
const QUIT_GRACE: Duration = Duration::from_secs(5);

/// How the driver runs QEMU.
#[derive(Clone, Debug)]
pub struct QemuConfig {
    /// Where VM directories live.
    pub root: PathBuf,
    /// The `qemu-system-x86_64` binary.
    pub qemu: PathBuf,
    /// KVM or TCG; see [`accel::probe`].
    pub accel: Accel,
    /// Where the files of the plane's templates and ISOs are found on this host: the plane's
    /// own, or a cache of copies.
    pub images: Arc<dyn ImageFiles>,
}

/// What the QEMU driver can do: everything the plane asks of a node.
pub const CAPABILITIES: Capabilities = Capabilities {
    images: ImageHome::Plane,
    resize: true,
    live_disk_growth: true,
    snapshots: true,
    boot_media: true,
    consoles: &[ConsoleKind::Vnc, ConsoleKind::Serial],
    console_output: true,
};

/// What this host has: its CPU threads, its memory, and the size of the file system
/// under `root`.
fn host_capacity(root: &Path) -> Capacity {
    const MIB: u64 = 1024 * 1024;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .unwrap_or(0);
    let disk_bytes = nix::sys::statvfs::statvfs(root)
        .map(|fs| fs.blocks() * fs.fragment_size())
        .unwrap_or(0);
    Capacity {
        cores: u32::try_from(cores).unwrap_or(u32::MAX),
        memory_mib: memory_kib / 1024,
        disk_gib: disk_bytes / (1024 * MIB),
    }
}

/// The local QEMU node.
#[derive(Debug)]
pub struct QemuDriver {
    config: QemuConfig,
    taps: Mutex<HashMap<VmId, Arc<SerialTap>>>,
    controls: Mutex<HashMap<VmId, Arc<ConsoleControl>>>,
    locks: Mutex<HashMap<VmId, Arc<tokio::sync::Mutex<()>>>>,
    capacity: Capacity,
}

impl QemuDriver {
    /// Opens the node rooted at `config.root`, creating it if needed, and re-adopts every VM
    /// whose QEMU still runs.
    pub async fn open(config: QemuConfig) -> Result<Self, DriverError> {
        create_private_dir(&config.root)?;
        let probe = VmFiles::new(&config.root, VmId::random()).longest_socket_path();
        if probe.as_os_str().len() > process::MAX_SOCKET_PATH {
            return Err(DriverError::failed(
                "open the node",
                format!(
                    "the data directory {} is too deep: VM socket paths would be {} bytes, and \
                     unix sockets allow {}; choose a shorter --data-dir",
                    config.root.display(),
                    probe.as_os_str().len(),
                    process::MAX_SOCKET_PATH
                ),
            ));
        }
        let capacity = host_capacity(&config.root);
        let driver = Self {
            config,
            capacity,
            taps: Mutex::default(),
            controls: Mutex::default(),
            locks: Mutex::default(),
        };
        for id in driver.vm_ids()? {
            let files = driver.files(id);
            if process::running_pid(&files.pidfile()).is_some() {
                match SerialTap::connect(&files.serial()).await {
                    Ok(tap) => {
                        driver.taps().insert(id, tap);
                        if let Err(e) = driver.control(id).connect().await {
                            tracing::warn!(vm = %id, error = %e, "running QEMU has no console control port");
                        }
                        tracing::info!(vm = %id, "re-adopted running QEMU");
                    }
                    Err(e) => {
                        tracing::warn!(vm = %id, error = %e, "running QEMU has no serial socket");
                    }
                }
            }
        }
        Ok(driver)
    }

    /// The accelerator guests run under.
    pub fn accel(&self) -> Accel {
        self.config.accel
    }

    fn files(&self, id: VmId) -> VmFiles {
        VmFiles::new(&self.config.root, id)
    }

    /// VM `id`'s console control port.
    fn control(&self, id: VmId) -> Arc<ConsoleControl> {
        let mut controls = self.controls.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.files(id).console_control();
        Arc::clone(
            controls
                .entry(id)
                .or_insert_with(|| Arc::new(ConsoleControl::new(path))),
        )
    }

    fn taps(&self) -> std::sync::MutexGuard<'_, HashMap<VmId, Arc<SerialTap>>> {
        self.taps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serialises operations on one VM.
    fn lock(&self, id: VmId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(locks.entry(id).or_default())
    }

    fn vm_ids(&self) -> Result<Vec<VmId>, DriverError> {
        let entries = std::fs::read_dir(&self.config.root)
            .map_err(|e| DriverError::io(format!("listing {}", self.config.root.display()), e))?;
        Ok(entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .collect())
    }

    fn load_definition(&self, id: VmId) -> Result<VmDefinition, DriverError> {
        let path = self.files(id).definition();
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DriverError::NotFound(id));
            }
            Err(e) => return Err(DriverError::io(format!("reading {}", path.display()), e)),
        };
        serde_json::from_slice(&text).map_err(|e| {
            DriverError::io(
                format!("parsing {}", path.display()),
                std::io::Error::other(e),
            )
        })
    }

    fn save_definition(&self, def: &VmDefinition) -> Result<(), DriverError> {
        let path = self.files(def.id).definition();
        let text = serde_json::to_vec_pretty(def).expect("definitions always serialise");
        write_atomically(&path, &text)
    }

    /// Runs one QMP command against a running VM.
    async fn qmp(
        &self,
        id: VmId,
        operation: &'static str,
        command: &str,
        arguments: Option<serde_json::Value>,
    ) -> Result<(), DriverError> {
        let files = self.files(id);
        if process::running_pid(&files.pidfile()).is_none() {
            return Err(not_running(operation));
        }
        let mut qmp = Qmp::connect(&files.qmp())
            .await
            .map_err(|e| qmp_error(operation, e))?;
        qmp.run(command, arguments)
            .await
            .map_err(|e| qmp_error(operation, e))
    }

    /// Whether VM `id`'s QEMU runs (or is suspended).
    fn is_running(&self, id: VmId) -> bool {
        process::running_pid(&self.files(id).pidfile()).is_some()
    }

    /// The main disk's snapshots: from the running QEMU if there is one, else from the
    /// image. Must hold the VM lock.
    async fn snapshot_list(
        &self,
        id: VmId,
        operation: &'static str,
    ) -> Result<Vec<SnapshotInfo>, DriverError> {
        let files = self.files(id);
        if self.is_running(id) {
            snapshot::list(&files.qmp())
                .await
                .map_err(|e| snapshot_error(operation, e))
        } else {
            image::snapshots(&files.disk())
                .await
                .map_err(|e| image_error(operation, e))
        }
    }

    /// The snapshot named `name`, or [`DriverError::SnapshotNotFound`]. Must hold the VM
    /// lock.
    async fn find_snapshot(
        &self,
        id: VmId,
        name: &SnapshotName,
        operation: &'static str,
    ) -> Result<SnapshotInfo, DriverError> {
        self.snapshot_list(id, operation)
            .await?
            .into_iter()
            .find(|s| s.name == name.as_str())
            .ok_or_else(|| DriverError::SnapshotNotFound {
                vm: id,
                name: name.to_string(),
            })
    }

    /// Starts QEMU, attaches the serial tap, then lets the guest run. Must hold the VM lock.
    async fn boot(&self, id: VmId) -> Result<(), DriverError> {
        let files = self.files(id);
        if process::running_pid(&files.pidfile()).is_none() {
            let def = self.load_definition(id)?;
            if let Some(ci) = &def.cloud_init
                && !files.seed().exists()
            {
                seed::write(&files.seed(), id, ci)
                    .await
                    .map_err(|e| seed_error("start", e))?;
            }
            let boot = self.boot_files(&def, &NoProgress).await?;
            process::launch(&self.config.qemu, self.config.accel, &files, &def, &boot)
                .await
                .map_err(launch_error)?;
        }
        let tap_is_live = self.taps().get(&id).is_some_and(|tap| tap.is_open());
        if !tap_is_live {
            match SerialTap::connect(&files.serial()).await {
                Ok(tap) => {
                    self.taps().insert(id, tap);
                }
                Err(e) => {
                    process::kill_hard(&files.pidfile());
                    return Err(DriverError::io("attaching the serial console", e));
                }
            }
            // Connected before the guest runs, so its console agent finds a host end.
            if let Err(e) = self.control(id).connect().await {
                tracing::warn!(vm = %id, error = %e, "cannot connect the console control port");
            }
        }
        let mut qmp = Qmp::connect(&files.qmp())
            .await
            .map_err(|e| qmp_error("start", e))?;
        let status = qmp
            .query_status()
            .await
            .map_err(|e| qmp_error("start", e))?;
        // `prelaunch` is a fresh QEMU started with -S. A VM the user suspended stays paused.
        if status.status == "prelaunch" {
            qmp.run("cont", None)
                .await
                .map_err(|e| qmp_error("start", e))?;
        }
        Ok(())
    }

    /// The files on this host that `def` boots from besides its disk, fetched first if this
    /// host has no copy yet. An ISO must be an existing file, so a VM is never left unable
    /// to start.
    async fn boot_files(
        &self,
        def: &VmDefinition,
        progress: &dyn Progress,
    ) -> Result<BootFiles, DriverError> {
        let images = &self.config.images;
        let cdrom = match process::cdrom(def) {
            Some(iso) => Some(self.iso(iso, progress).await?),
            None => None,
        };
        let (kernel, initrd) = match &def.boot {
            BootMedia::Template {
                id,
                direct_boot: Some(direct),
                ..
            } => {
                let kernel = images
                    .path(ImageFile::TemplateKernel(*id), progress)
                    .await?;
                let initrd = match direct.initrd {
                    true => Some(
                        images
                            .path(ImageFile::TemplateInitrd(*id), progress)
                            .await?,
                    ),
                    false => None,
                };
                (Some(kernel), initrd)
            }
            _ => (None, None),
        };
        Ok(BootFiles {
            cdrom,
            kernel,
            initrd,
        })
    }

    /// ISO `id`'s file on this host, checked to be one.
    async fn iso(&self, id: IsoId, progress: &dyn Progress) -> Result<PathBuf, DriverError> {
        let path = self
            .config
            .images
            .path(ImageFile::Iso(id), progress)
            .await?;
        check_iso(&path)?;
        Ok(path)
    }

    /// Ends QEMU: `quit` first, SIGKILL if it lingers. Must hold the VM lock.
    async fn halt(&self, id: VmId) -> Result<(), DriverError> {
        let files = self.files(id);
        let pidfile = files.pidfile();
        if process::running_pid(&pidfile).is_some() {
            if let Ok(mut qmp) = Qmp::connect(&files.qmp()).await {
                // QEMU may close the socket before answering; the wait below is what counts.
                let _ = qmp.run("quit", None).await;
            }
            if !process::wait_for_exit(&pidfile, QUIT_GRACE).await {
                tracing::warn!(vm = %id, "QEMU ignored quit; killing it");
                process::kill_hard(&pidfile);
                if !process::wait_for_exit(&pidfile, QUIT_GRACE).await {
                    return Err(DriverError::Timeout {
                        operation: "stop".into(),
                        seconds: 10,
                    });
                }
            }
        }
        // The closed tap keeps the last output (why did it stop?) until the next start.
        Ok(())
    }
}

#[async_trait]
impl Driver for QemuDriver {
    fn kind(&self) -> NodeKind {
        NodeKind::Qemu
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    fn capacity(&self) -> Option<Capacity> {
        Some(self.capacity)
    }

    /// Creates the disk, the cloud-init seed (if the definition has cloud-init data) and
    /// `vm.json`, in that order. Invalid cloud-init data or a missing CD-ROM image is refused
    /// before anything is written.
    async fn create(&self, def: &VmDefinition, progress: &dyn Progress) -> Result<(), DriverError> {
        if let Some(ci) = &def.cloud_init {
            ci.validate()?;
        }
        if let BootMedia::NodeTemplate { reference } = &def.boot {
            return Err(DriverError::BadImage(format!(
                "template {reference:?} belongs to another kind of node; a QEMU node clones \
                 only templates imported into porthole"
            )));
        }
        // Every file the VM needs is on this host before anything is written, fetched now
        // if it was not: the rest of the create and every start are then local.
        let fetching = Scaled {
            inner: progress,
            to: 0.5,
        };
        let base = match &def.boot {
            BootMedia::Template { id, format, .. } => Some((
                self.config
                    .images
                    .path(ImageFile::TemplateDisk(*id), &fetching)
                    .await?,
                *format,
            )),
            _ => None,
        };
        self.boot_files(def, &fetching).await?;
        let lock = self.lock(def.id);
        let _held = lock.lock().await;
        let files = self.files(def.id);
        if files.definition().exists() && files.disk().exists() {
            return Ok(());
        }
        let result = async {
            create_private_dir(files.dir())?;
            progress.update(0.6, "creating the disk");
            let staged = files.dir().join("disk.qcow2.partial");
            let size = def.resources.disk_bytes();
            match &base {
                Some((disk, format)) => image::create_overlay(disk, *format, &staged, size).await,
                None => image::create_blank(&staged, size).await,
            }
            .map_err(|e| image_error("creating the disk", e))?;
            std::fs::rename(&staged, files.disk())
                .map_err(|e| DriverError::io(format!("renaming {}", staged.display()), e))?;
            if let Some(ci) = &def.cloud_init {
                progress.update(0.8, "writing the cloud-init seed");
                seed::write(&files.seed(), def.id, ci)
                    .await
                    .map_err(|e| seed_error("create", e))?;
            }
            progress.update(0.9, "saving the definition");
            self.save_definition(def)
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_dir_all(files.dir());
        }
        result
    }

    async fn start(&self, vm: VmId) -> Result<(), DriverError> {
        let lock = self.lock(vm);
        let _held = lock.lock().await;
        self.boot(vm).await
    }

    async fn stop(&self, vm: VmId) -> Result<(), DriverError> {
        let lock = self.lock(vm);
        let _held = lock.lock().await;
        self.halt(vm).await
    }

    async fn shutdown(&self, vm: VmId, timeout: Duration) -> Result<(), DriverError> {
        let lock = self.lock(vm);
        let _held = lock.lock().await;
        let pidfile = self.files(vm).pidfile();
        if process::running_pid(&pidfile).is_none() {
            return Ok(());
        }
        self.qmp(vm, "shutdown", "system_powerdown", None).await?;
        if !process::wait_for_exit(&pidfile, timeout).await {
            tracing::info!(vm = %vm, timeout_s = timeout.as_secs(), "guest ignored ACPI shutdown; stopping it");
        }
        self.halt(vm).await
    }

    async fn reset(&self, vm: VmId) -> Result<(), DriverError> {
        let lock = self.lock(vm);
        let _held = lock.lock().await;
        self.qmp(vm, "reset", "system_reset", None).await
    }

    async fn suspend(&self, vm: VmId) -> Result<(), DriverError> {
        let lock = self.lock(vm);
        let _held = lock.lock().await;
        self.qmp(vm, "suspend", "stop", None).await
    }

    async fn resume(&self, vm: VmId) -> Result<(), DriverError> {
        let lock = self.lock(vm);
        let _held = lock.lock().await;
        self.qmp(vm, "resume", "cont", None).await
    }

    async fn delete(&self, vm: VmId) -> Result<(), DriverError> {
        let lock = self.lock(vm);
        let held = lock.lock().await;
        self.halt(vm).await?;
        let dir = self.files(vm).dir().to_owned();
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DriverError::io(format!("removing {}", dir.display()), e)),
        }
        self.taps().remove(&vm);
        self.controls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&vm);
        drop(held);
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&vm);
        Ok(())
    }

    async fn status(&self, vm: VmId) -> Result<PowerState, DriverError> {
        let files = self.files(vm);
        if !files.definition().exists() {
            return Err(DriverError::NotFound(vm));
        }
        if process::running_pid(&files.pidfile()).is_none() {
            return Ok(PowerState::Stopped);
        }
        let status = async {
            let mut qmp = Qmp::connect(&files.qmp()).await?;
            qmp.query_status().await
        }
        .await;
        match status {
            Ok(status) if status.running => Ok(PowerState::Running),
            Ok(_) => Ok(PowerState::Paused),
            // It exited between the two checks.
            Err(_) if process::running_pid(&files.pidfile()).is_none() => Ok(PowerState::Stopped),
            Err(e) => Err(qmp_error("status", e)),
        }
    }

    async fn inventory(&self) -> Result<Vec<(VmId, PowerState)>, DriverError> {
        let mut vms = Vec::new();
        for id in self.vm_ids()? {
            match self.status(id).await {
                Ok(state) => vms.push((id, state)),
                // A directory without a definition is a create that never finished.
                Err(DriverError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(vms)
    }

    async fn resize(&self, vm: VmId, resources: Resources) -> Result<(), DriverError> {
        let lock = self.lock(vm);
        let _held = lock.lock().await;
        let mut def = self.load_definition(vm)?;
        let files = self.files(vm);
        if resources.disk_gib < def.resources.disk_gib {
            return Err(DriverError::failed("resize", "disks can only grow"));
        }
        if resources.disk_gib > def.resources.disk_gib {
            let size = resources.disk_bytes();
            if process::running_pid(&files.pidfile()).is_some() {
                let mut qmp = Qmp::connect(&files.qmp())
                    .await
                    .map_err(|e| qmp_error("resize", e))?;
                qmp.run(
                    "block_resize",
                    Some(json!({ "device": "disk0", "size": size })),
                )
                .await
                .map_err(|e| qmp_error("resize", e))?;
            } else {
                image::grow(&files.disk(), size)
                    .await
                    .map_err(|e| image_error("resize", e))?;
            }
        }
        def.resources = resources;
        self.save_definition(&def)
    }

    /// VNC: a fresh password, valid for [`VNC_PASSWORD_TTL`], set over QMP for the caller's
    /// next connection; connections already open are kept. Serial: the shared tap.
    async fn console(&self, vm: VmId, kind: ConsoleKind) -> Result<ConsoleEndpoint, DriverError> {
        let files = self.files(vm);
        match kind {
            ConsoleKind::Vnc => {
                let password = vnc_password();
                let set = json!({ "protocol": "vnc", "password": password, "connected": "keep" });
                self.qmp(vm, "console", "set_password", Some(set)).await?;
                let expiry = format!("+{}", VNC_PASSWORD_TTL.as_secs());
                let expire = json!({ "protocol": "vnc", "time": expiry });
                self.qmp(vm, "console", "expire_password", Some(expire))
                    .await?;
                Ok(ConsoleEndpoint::Unix {
                    path: files.vnc(),
                    password: Some(password),
                })
            }
            ConsoleKind::Serial => {
                if process::running_pid(&files.pidfile()).is_none() {
                    return Err(not_running("console"));
                }
                match self.taps().get(&vm) {
                    Some(tap) if tap.is_open() => Ok(ConsoleEndpoint::Shared(Arc::clone(tap) as _)),
                    _ => Err(not_running("console")),
                }
            }
        }
    }

    async fn resize_console(&self, vm: VmId, cols: u16, rows: u16) -> Result<(), DriverError> {
        if process::running_pid(&self.files(vm).pidfile()).is_none() {
            return Err(not_running("console resize"));
        }
        self.control(vm)
            .send_size(cols, rows)
            .await
            .map_err(|e| DriverError::io("sending the console size to the guest", e))
    }

    async fn console_output(&self, vm: VmId) -> Result<Vec<u8>, DriverError> {
        if !self.files(vm).definition().exists() {
            return Err(DriverError::NotFound(vm));
        }
        Ok(self
            .taps()
            .get(&vm)
            .map(|tap| tap.scrollback())
            .unwrap_or_default())
    }

    async fn set_boot_media(
        &self,
        vm: VmId,
        cdrom: Option<IsoId>,
        order: BootOrder,
    ) -> Result<(), DriverError> {
        if let Some(iso) = cdrom {
            self.iso(iso, &NoProgress).await?;
        }
        let lock = self.lock(vm);
        let _held = lock.lock().await;
        let mut def = self.load_definition(vm)?;
        def.cdrom = cdrom;
        def.boot_order = order;
        self.save_definition(&def)
    }

    /// Running: a `snapshot-save` job (disk, memory and device state). Stopped: `qemu-img
    /// snapshot -c` (disk only).
    async fn snapshot_create(&self, vm: VmId, name: &SnapshotName) -> Result<(), DriverError> {
        const OPERATION: &str = "snapshot";
        let lock = self.lock(vm);
        let _held = lock.lock().await;
        self.load_definition(vm)?;
        let existing = self.snapshot_list(vm, OPERATION).await?;
        if existing.iter().any(|s| s.name == name.as_str()) {
            return Err(DriverError::Conflict {
                operation: OPERATION.into(),
                reason: format!(
                    "VM {vm} already has a snapshot named {:?}; choose another name or delete \
                     that snapshot first",
                    name.as_str()
                ),
            });
        }
        let files = self.files(vm);
        if self.is_running(vm) {
            snapshot::save(&files.qmp(), name.as_str())
                .await
                .map_err(|e| snapshot_error(OPERATION, e))
        } else {
            image::snapshot(&files.disk(), SnapshotOp::Create, name.as_str())
                .await
                .map_err(|e| image_error(OPERATION, e))
        }
    }

    async fn snapshots(&self, vm: VmId) -> Result<Vec<Snapshot>, DriverError> {
        let lock = self.lock(vm);
        let _held = lock.lock().await;
        self.load_definition(vm)?;
        Ok(self
            .snapshot_list(vm, "list snapshots")
            .await?
            .iter()
            .map(SnapshotInfo::to_snapshot)
            .collect())
    }

    /// Running: a `snapshot-load` job, which needs a snapshot with memory state. Stopped:
    /// `qemu-img snapshot -a`, which restores the disk of any snapshot (a snapshot's memory,
    /// if it has any, is not used: the VM boots from the restored disk).
    async fn snapshot_rollback(&self, vm: VmId, name: &SnapshotName) -> Result<(), DriverError> {
        const OPERATION: &str = "snapshot rollback";
        let lock = self.lock(vm);
        let _held = lock.lock().await;
        self.load_definition(vm)?;
        let found = self.find_snapshot(vm, name, OPERATION).await?;
        let files = self.files(vm);
        if self.is_running(vm) {
            if found.vm_state_size == 0 {
                return Err(DriverError::Conflict {
                    operation: OPERATION.into(),
                    reason: format!(
                        "snapshot {:?} of VM {vm} was taken while it was stopped and holds no \
                         memory, so the running VM cannot resume from it; stop the VM, then roll \
                         back",
                        name.as_str()
                    ),
                });
            }
            snapshot::load(&files.qmp(), name.as_str())
                .await
                .map_err(|e| snapshot_error(OPERATION, e))
        } else {
            image::snapshot(&files.disk(), SnapshotOp::Apply, name.as_str())
                .await
                .map_err(|e| image_error(OPERATION, e))
        }
    }

    async fn snapshot_delete(&self, vm: VmId, name: &SnapshotName) -> Result<(), DriverError> {
        const OPERATION: &str = "snapshot delete";
        let lock = self.lock(vm);
        let _held = lock.lock().await;
        self.load_definition(vm)?;
        self.find_snapshot(vm, name, OPERATION).await?;
        let files = self.files(vm);
        if self.is_running(vm) {
            snapshot::delete(&files.qmp(), name.as_str())
                .await
                .map_err(|e| snapshot_error(OPERATION, e))
        } else {
            image::snapshot(&files.disk(), SnapshotOp::Delete, name.as_str())
                .await
                .map_err(|e| image_error(OPERATION, e))
        }
    }
}

fn not_running(operation: &'static str) -> DriverError {
    DriverError::failed(operation, "the VM is not running")
}

/// A random VNC password. VNC authentication uses at most 8 characters.
fn vnc_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 8];
    rand::fill(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

fn qmp_error(operation: &'static str, error: QmpError) -> DriverError {
    DriverError::hypervisor(operation, error)
}

fn launch_error(error: LaunchError) -> DriverError {
    DriverError::hypervisor("start", error)
}

fn seed_error(operation: &'static str, error: SeedError) -> DriverError {
    match error {
        SeedError::Invalid(e) => DriverError::Invalid(e),
        SeedError::Io { context, source } => DriverError::Io { context, source },
        other => DriverError::hypervisor(operation, other),
    }
}

fn snapshot_error(operation: &'static str, error: SnapshotError) -> DriverError {
    match error {
        SnapshotError::Timeout(_) => DriverError::Timeout {
            operation: operation.into(),
            seconds: snapshot::JOB_TIMEOUT.as_secs(),
        },
        other => DriverError::hypervisor(operation, other),
    }
}

/// Refuses a CD-ROM image that is not an existing file, so a VM is never left unable to
/// start.
fn check_iso(path: &Path) -> Result<(), DriverError> {
    if path.is_absolute() && path.is_file() {
        Ok(())
    } else {
        Err(DriverError::BadImage(format!(
            "the CD-ROM image {} is not an existing file",
            path.display()
        )))
    }
}

/// A slice `[0, to]` of a create's progress, for the images it fetches first.
struct Scaled<'a> {
    inner: &'a dyn Progress,
    to: f32,
}

impl Progress for Scaled<'_> {
    fn update(&self, fraction: f32, step: &str) {
        self.inner.update(self.to * fraction.clamp(0.0, 1.0), step);
    }
}

fn image_error(operation: &'static str, error: ImageError) -> DriverError {
    match error {
        ImageError::Rejected(why) => DriverError::BadImage(why),
        other => DriverError::hypervisor(operation, other),
    }
}

/// Creates `dir` (and parents) readable only by porthole's user.
fn create_private_dir(dir: &Path) -> Result<(), DriverError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| DriverError::io(format!("creating {}", dir.display()), e))
}

/// Replaces `path` with `contents` so that a crash leaves either the old or the new file.
fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), DriverError> {
    let staged = path.with_extension("partial");
    let io = |e| DriverError::io(format!("writing {}", path.display()), e);
    std::fs::write(&staged, contents).map_err(io)?;
    std::fs::File::open(&staged)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&staged, path).map_err(io)
}
