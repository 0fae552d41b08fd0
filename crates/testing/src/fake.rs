//! A driver that keeps its VMs in memory, for tests of the plane that boot no guest.
//!
//! It follows the [`Driver`] contract as the QEMU driver does (the same contract tests run
//! against both, see [`crate::contract`]): every operation is idempotent where the contract
//! says so, power actions refuse VMs that do not run, images are found by identity through
//! the plane's [`ImageFiles`] (a missing one is refused before anything is kept), and it
//! states the QEMU driver's capabilities. Its serial console is a shared, echoing line
//! device that prints the guest's banner at every start; its VNC console is a minimal RFB
//! server offering security type None.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use porthole_core::driver::{
    BootMedia, BootOrder, ConsoleEndpoint, ConsoleKind, Driver, DriverError, PipedConsole,
    PowerState, Progress, SharedConsole, VmDefinition,
};
use porthole_core::image::{ImageFile, ImageFiles};
use porthole_core::node::{Capabilities, NodeKind};
use porthole_core::{Capacity, IsoId, Resources, Snapshot, SnapshotName, VmId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;

/// What the fake guest prints on its serial console when it boots, as the test guest does.
pub const BANNER: &str = "porthole-guest ready";

/// One VM the fake keeps.
#[derive(Debug)]
struct FakeVm {
    def: VmDefinition,
    power: PowerState,
    snapshots: Vec<Snapshot>,
    serial: Arc<FakeSerial>,
    starts: u32,
}

/// The in-memory node.
#[derive(Debug)]
pub struct FakeDriver {
    images: Arc<dyn ImageFiles>,
    vms: Mutex<BTreeMap<VmId, FakeVm>>,
    capacity: Capacity,
}

impl FakeDriver {
    /// A node with no VMs, finding images through `images`.
    pub fn new(images: Arc<dyn ImageFiles>) -> Arc<FakeDriver> {
        Arc::new(FakeDriver {
            images,
            vms: Mutex::default(),
            capacity: Capacity {
                cores: 8,
                memory_mib: 16_384,
                disk_gib: 500,
            },
        })
    }

    fn vms(&self) -> std::sync::MutexGuard<'_, BTreeMap<VmId, FakeVm>> {
        self.vms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `change` on VM `id`, or fails with [`DriverError::NotFound`].
    fn with<T>(
        &self,
        id: VmId,
        change: impl FnOnce(&mut FakeVm) -> Result<T, DriverError>,
    ) -> Result<T, DriverError> {
        match self.vms().get_mut(&id) {
            Some(vm) => change(vm),
            None => Err(DriverError::NotFound(id)),
        }
    }

    /// VM `id`'s power state, if the fake has it (for tests' own checks).
    pub fn power(&self, id: VmId) -> Option<PowerState> {
        self.vms().get(&id).map(|vm| vm.power)
    }

    /// How many VMs the fake keeps (for tests' own checks).
    pub fn len(&self) -> usize {
        self.vms().len()
    }

    /// Whether the fake keeps no VM.
    pub fn is_empty(&self) -> bool {
        self.vms().is_empty()
    }

    /// VM `id`'s definition as the fake keeps it.
    pub fn definition(&self, id: VmId) -> Option<VmDefinition> {
        self.vms().get(&id).map(|vm| vm.def.clone())
    }

    /// Powers VM `id` off as if its guest had shut itself down (for the reconciler).
    pub fn power_off_from_inside(&self, id: VmId) {
        if let Some(vm) = self.vms().get_mut(&id) {
            vm.power = PowerState::Stopped;
        }
    }

    /// The files a definition boots from, fetched (checked) as the QEMU driver does.
    async fn check_images(
        &self,
        def: &VmDefinition,
        progress: &dyn Progress,
    ) -> Result<(), DriverError> {
        let mut files = Vec::new();
        match &def.boot {
            BootMedia::Template {
                id, direct_boot, ..
            } => {
                files.push(ImageFile::TemplateDisk(*id));
                if let Some(direct) = direct_boot {
                    files.push(ImageFile::TemplateKernel(*id));
                    if direct.initrd {
                        files.push(ImageFile::TemplateInitrd(*id));
                    }
                }
            }
            BootMedia::Iso { id } => files.push(ImageFile::Iso(*id)),
            BootMedia::NodeTemplate { reference } => {
                return Err(DriverError::BadImage(format!(
                    "template {reference:?} belongs to another kind of node"
                )));
            }
        }
        files.extend(def.cdrom.map(ImageFile::Iso));
        for file in files {
            self.images.path(file, progress).await?;
        }
        Ok(())
    }
}

fn not_running(operation: &'static str) -> DriverError {
    DriverError::failed(operation, "the VM is not running")
}

#[async_trait]
impl Driver for FakeDriver {
    fn kind(&self) -> NodeKind {
        NodeKind::Qemu
    }

    fn capabilities(&self) -> Capabilities {
        porthole_qemu::CAPABILITIES
    }

    fn capacity(&self) -> Option<Capacity> {
        Some(self.capacity)
    }

    async fn create(&self, def: &VmDefinition, progress: &dyn Progress) -> Result<(), DriverError> {
        if let Some(ci) = &def.cloud_init {
            ci.validate()?;
        }
        self.check_images(def, progress).await?;
        progress.update(0.9, "saving the definition");
        let mut vms = self.vms();
        vms.entry(def.id).or_insert_with(|| FakeVm {
            def: def.clone(),
            power: PowerState::Stopped,
            snapshots: Vec::new(),
            serial: FakeSerial::new(),
            starts: 0,
        });
        Ok(())
    }

    async fn start(&self, vm: VmId) -> Result<(), DriverError> {
        self.with(vm, |vm| {
            if vm.power == PowerState::Stopped {
                vm.power = PowerState::Running;
                vm.starts += 1;
                vm.serial = FakeSerial::new();
                vm.serial.print(&format!("{BANNER}\r\n# "));
            }
            Ok(())
        })
    }

    async fn stop(&self, vm: VmId) -> Result<(), DriverError> {
        self.with(vm, |vm| {
            vm.power = PowerState::Stopped;
            vm.serial.close();
            Ok(())
        })
    }

    async fn shutdown(&self, vm: VmId, _timeout: Duration) -> Result<(), DriverError> {
        self.stop(vm).await
    }

    async fn reset(&self, vm: VmId) -> Result<(), DriverError> {
        self.with(vm, |vm| match vm.power {
            PowerState::Stopped => Err(not_running("reset")),
            _ => {
                vm.serial.print(&format!("{BANNER}\r\n# "));
                Ok(())
            }
        })
    }

    async fn suspend(&self, vm: VmId) -> Result<(), DriverError> {
        self.with(vm, |vm| match vm.power {
            PowerState::Stopped => Err(not_running("suspend")),
            _ => {
                vm.power = PowerState::Paused;
                Ok(())
            }
        })
    }

    async fn resume(&self, vm: VmId) -> Result<(), DriverError> {
        self.with(vm, |vm| match vm.power {
            PowerState::Stopped => Err(not_running("resume")),
            _ => {
                vm.power = PowerState::Running;
                Ok(())
            }
        })
    }

    async fn delete(&self, vm: VmId) -> Result<(), DriverError> {
        if let Some(gone) = self.vms().remove(&vm) {
            gone.serial.close();
        }
        Ok(())
    }

    async fn status(&self, vm: VmId) -> Result<PowerState, DriverError> {
        self.with(vm, |vm| Ok(vm.power))
    }

    async fn inventory(&self) -> Result<Vec<(VmId, PowerState)>, DriverError> {
        Ok(self.vms().iter().map(|(id, vm)| (*id, vm.power)).collect())
    }

    async fn resize(&self, vm: VmId, resources: Resources) -> Result<(), DriverError> {
        self.with(vm, |vm| {
            if resources.disk_gib < vm.def.resources.disk_gib {
                return Err(DriverError::failed("resize", "disks can only grow"));
            }
            vm.def.resources = resources;
            Ok(())
        })
    }

    async fn console(&self, vm: VmId, kind: ConsoleKind) -> Result<ConsoleEndpoint, DriverError> {
        let serial = self.with(vm, |vm| match vm.power {
            PowerState::Stopped => Err(not_running("console")),
            _ => Ok(Arc::clone(&vm.serial)),
        })?;
        match kind {
            ConsoleKind::Serial => Ok(ConsoleEndpoint::Shared(serial)),
            ConsoleKind::Vnc => {
                let (ours, theirs) = tokio::net::UnixStream::pair()
                    .map_err(|e| DriverError::io("making a console socket pair", e))?;
                tokio::spawn(serve_rfb(theirs));
                Ok(ConsoleEndpoint::Piped(PipedConsole {
                    stream: ours,
                    password: None,
                    resize: None,
                }))
            }
        }
    }

    async fn resize_console(&self, vm: VmId, cols: u16, rows: u16) -> Result<(), DriverError> {
        self.with(vm, |vm| match vm.power {
            PowerState::Stopped => Err(not_running("console resize")),
            _ => {
                vm.serial.print(&format!("[size {cols}x{rows}]\r\n"));
                Ok(())
            }
        })
    }

    async fn console_output(&self, vm: VmId) -> Result<Vec<u8>, DriverError> {
        self.with(vm, |vm| Ok(vm.serial.scrollback()))
    }

    async fn set_boot_media(
        &self,
        vm: VmId,
        cdrom: Option<IsoId>,
        order: BootOrder,
    ) -> Result<(), DriverError> {
        if let Some(iso) = cdrom {
            self.images
                .path(ImageFile::Iso(iso), &porthole_core::driver::NoProgress)
                .await?;
        }
        self.with(vm, |vm| {
            vm.def.cdrom = cdrom;
            vm.def.boot_order = order;
            Ok(())
        })
    }

    async fn snapshot_create(&self, vm: VmId, name: &SnapshotName) -> Result<(), DriverError> {
        self.with(vm, |vm| {
            if vm.snapshots.iter().any(|s| s.name == name.as_str()) {
                return Err(DriverError::Conflict {
                    operation: "snapshot".into(),
                    reason: format!("a snapshot called {:?} exists already", name.as_str()),
                });
            }
            let with_memory = vm.power != PowerState::Stopped;
            vm.snapshots.push(Snapshot {
                name: name.to_string(),
                created_at: chrono::Utc::now(),
                vm_state_size: if with_memory { 1 << 20 } else { 0 },
            });
            Ok(())
        })
    }

    async fn snapshots(&self, vm: VmId) -> Result<Vec<Snapshot>, DriverError> {
        self.with(vm, |vm| Ok(vm.snapshots.clone()))
    }

    async fn snapshot_rollback(&self, vm: VmId, name: &SnapshotName) -> Result<(), DriverError> {
        self.with(vm, |vm| {
            let snapshot = vm
                .snapshots
                .iter()
                .find(|s| s.name == name.as_str())
                .ok_or_else(|| DriverError::SnapshotNotFound {
                    vm: vm.def.id,
                    name: name.to_string(),
                })?;
            if vm.power != PowerState::Stopped && !snapshot.includes_ram() {
                return Err(DriverError::Conflict {
                    operation: "snapshot rollback".into(),
                    reason: "the snapshot holds no memory; stop the VM first".into(),
                });
            }
            Ok(())
        })
    }

    async fn snapshot_delete(&self, vm: VmId, name: &SnapshotName) -> Result<(), DriverError> {
        self.with(vm, |vm| {
            let before = vm.snapshots.len();
            vm.snapshots.retain(|s| s.name != name.as_str());
            if vm.snapshots.len() == before {
                return Err(DriverError::SnapshotNotFound {
                    vm: vm.def.id,
                    name: name.to_string(),
                });
            }
            Ok(())
        })
    }
}

/// A fake guest's serial line: what it printed, a live feed, and an echo of what it gets.
/// Closing it (the VM stopped) ends the feed, as QEMU's serial port hanging up does.
#[derive(Debug)]
pub struct FakeSerial {
    state: Mutex<SerialState>,
}

#[derive(Debug)]
struct SerialState {
    scrollback: Vec<u8>,
    feed: Option<broadcast::Sender<Bytes>>,
}

impl FakeSerial {
    fn new() -> Arc<FakeSerial> {
        Arc::new(FakeSerial {
            state: Mutex::new(SerialState {
                scrollback: Vec::new(),
                feed: Some(broadcast::channel(256).0),
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SerialState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn print(&self, text: &str) {
        let mut state = self.state();
        state.scrollback.extend_from_slice(text.as_bytes());
        if let Some(feed) = &state.feed {
            let _ = feed.send(Bytes::copy_from_slice(text.as_bytes()));
        }
    }

    fn close(&self) {
        self.state().feed = None;
    }

    fn scrollback(&self) -> Vec<u8> {
        self.state().scrollback.clone()
    }
}

#[async_trait]
impl SharedConsole for FakeSerial {
    fn attach(&self) -> (Vec<u8>, broadcast::Receiver<Bytes>) {
        let state = self.state();
        let feed = match &state.feed {
            Some(feed) => feed.subscribe(),
            // Already hung up: a feed that is closed from the start.
            None => broadcast::channel(1).1,
        };
        (state.scrollback.clone(), feed)
    }

    async fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        if self.state().feed.is_none() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the VM stopped",
            ));
        }
        // A line discipline's echo: what the viewer types comes back.
        self.print(&String::from_utf8_lossy(bytes));
        Ok(())
    }

    fn is_open(&self) -> bool {
        self.state().feed.is_some()
    }
}

/// A minimal RFB 3.8 server: security type None, then a 64x48 screen named `fake`. It
/// reads and drops whatever the viewer sends after that.
async fn serve_rfb(mut stream: tokio::net::UnixStream) -> std::io::Result<()> {
    stream.write_all(b"RFB 003.008\n").await?;
    let mut version = [0u8; 12];
    stream.read_exact(&mut version).await?;
    stream.write_all(&[1, 1]).await?;
    let mut chosen = [0u8; 1];
    stream.read_exact(&mut chosen).await?;
    stream.write_all(&0u32.to_be_bytes()).await?;
    let mut shared = [0u8; 1];
    stream.read_exact(&mut shared).await?;
    let mut init = Vec::new();
    init.extend_from_slice(&64u16.to_be_bytes());
    init.extend_from_slice(&48u16.to_be_bytes());
    // 32 bits per pixel, depth 24, little endian, true colour, 8 bits per channel.
    init.extend_from_slice(&[32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]);
    init.extend_from_slice(&4u32.to_be_bytes());
    init.extend_from_slice(b"fake");
    stream.write_all(&init).await?;
    let mut sink = [0u8; 4096];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}
