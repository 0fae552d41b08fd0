//! [`QemuBackend`]: each simulated VM is a real `qemu-system-x86_64` under TCG, booting the
//! project's test guest (`target/guest`, see `guest/build.sh`) directly from its kernel and
//! initrd. VNC (no password) and the first serial port listen on unix sockets in a private
//! directory; a serial tap keeps the output from boot on so no console byte is missed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, broadcast};
use tokio::task::JoinHandle;

use crate::backend::{Backend, BackendError, ConsoleStream, PowerState, VmSpec};

/// How much serial output the tap keeps for late viewers.
const SCROLLBACK: usize = 64 * 1024;

/// Runs real QEMU guests; every guest is killed when the backend is dropped.
#[derive(Debug)]
pub struct QemuBackend {
    guest: PathBuf,
    work: tempfile::TempDir,
    vms: Mutex<BTreeMap<u32, QemuVm>>,
}

#[derive(Debug)]
struct QemuVm {
    spec: VmSpec,
    dir: PathBuf,
    child: Option<Child>,
    tap: Option<Arc<SerialTap>>,
    paused: bool,
}

impl QemuVm {
    fn halt(&mut self) {
        if let Some(tap) = self.tap.take() {
            tap.reader.abort();
        }
        if let Some(mut child) = self.child.take() {
            // start_kill only signals; the child is reaped by tokio in the background.
            let _ = child.start_kill();
        }
        self.paused = false;
    }
}

impl Drop for QemuVm {
    fn drop(&mut self) {
        self.halt();
    }
}

#[derive(Debug)]
struct SerialTap {
    scrollback: std::sync::Mutex<Vec<u8>>,
    live: broadcast::Sender<Bytes>,
    writer: Mutex<OwnedWriteHalf>,
    reader: JoinHandle<()>,
}

impl QemuBackend {
    /// A backend booting the guest in `guest` (a directory with `vmlinuz`, `initrd.img` and
    /// `cmdline`).
    pub fn new(guest: impl Into<PathBuf>) -> Result<Self, BackendError> {
        let guest = guest.into();
        for f in ["vmlinuz", "initrd.img"] {
            if !guest.join(f).is_file() {
                return Err(BackendError(format!(
                    "{} is missing",
                    guest.join(f).display()
                )));
            }
        }
        Ok(Self {
            guest,
            work: tempfile::tempdir()?,
            vms: Mutex::new(BTreeMap::new()),
        })
    }

    /// A backend from `PORTHOLE_TEST_GUEST`, or `None` if that is unset.
    pub fn from_env() -> Option<Result<Self, BackendError>> {
        std::env::var_os("PORTHOLE_TEST_GUEST").map(|dir| Self::new(PathBuf::from(dir)))
    }

    fn command(&self, vm: &QemuVm) -> Result<Command, BackendError> {
        let cmdline = std::fs::read_to_string(self.guest.join("cmdline"))
            .unwrap_or_else(|_| "console=ttyS0 console=tty0 quiet panic=-1".into());
        let sock = |name: &str| vm.dir.join(name).display().to_string();
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args([
            "-accel",
            "tcg",
            "-nodefaults",
            "-nic",
            "none",
            "-display",
            "none",
        ])
        .args(["-vga", "std", "-no-reboot"])
        .args(["-m", &vm.spec.memory.clamp(128, 1024).to_string()])
        .args(["-smp", &vm.spec.cores.clamp(1, 4).to_string()])
        .args(["-vnc", &format!("unix:{}", sock("vnc.sock"))])
        .args([
            "-serial",
            &format!("unix:{},server=on,wait=off", sock("serial.sock")),
        ])
        .args([
            "-qmp",
            &format!("unix:{},server=on,wait=off", sock("qmp.sock")),
        ])
        .arg("-kernel")
        .arg(self.guest.join("vmlinuz"))
        .arg("-initrd")
        .arg(self.guest.join("initrd.img"))
        .args(["-append", cmdline.trim()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(vm.dir.join("qemu.log"))?)
        .kill_on_drop(true);
        Ok(cmd)
    }
}

/// Connects to a unix socket QEMU is about to create, retrying for a few seconds.
async fn connect_retry(path: &Path) -> Result<UnixStream, BackendError> {
    let mut last = None;
    for _ in 0..250 {
        match UnixStream::connect(path).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(BackendError(format!(
        "cannot connect to {}: {}",
        path.display(),
        last.map(|e| e.to_string()).unwrap_or_default()
    )))
}

/// Runs one QMP command over a fresh connection.
async fn qmp(dir: &Path, command: &str) -> Result<(), BackendError> {
    let stream = UnixStream::connect(dir.join("qmp.sock")).await?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let _greeting = lines.next_line().await?;
    for cmd in ["qmp_capabilities", command] {
        write
            .write_all(format!("{{\"execute\":\"{cmd}\"}}\n").as_bytes())
            .await?;
        loop {
            let line = lines
                .next_line()
                .await?
                .ok_or_else(|| BackendError("QMP closed".into()))?;
            if line.contains("\"return\"") {
                break;
            }
            if line.contains("\"error\"") {
                return Err(BackendError(format!("QMP {cmd}: {line}")));
            }
        }
    }
    Ok(())
}

async fn attach_tap(dir: &Path) -> Result<Arc<SerialTap>, BackendError> {
    let stream = connect_retry(&dir.join("serial.sock")).await?;
    let (mut read, writer) = stream.into_split();
    let (live, _) = broadcast::channel(1024);
    let tap = Arc::new_cyclic(|weak: &std::sync::Weak<SerialTap>| {
        let weak = weak.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = read.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let Some(tap) = weak.upgrade() else { break };
                let chunk = Bytes::copy_from_slice(&buf[..n]);
                let Ok(mut sb) = tap.scrollback.lock() else {
                    break;
                };
                sb.extend_from_slice(&chunk);
                let excess = sb.len().saturating_sub(SCROLLBACK);
                sb.drain(..excess);
                let _ = tap.live.send(chunk);
            }
        });
        SerialTap {
            scrollback: std::sync::Mutex::new(Vec::new()),
            live,
            writer: Mutex::new(writer),
            reader,
        }
    });
    Ok(tap)
}

#[async_trait]
impl Backend for QemuBackend {
    async fn create(&self, vmid: u32, spec: &VmSpec) -> Result<(), BackendError> {
        let dir = self.work.path().join(vmid.to_string());
        std::fs::create_dir_all(&dir)?;
        let vm = QemuVm {
            spec: spec.clone(),
            dir,
            child: None,
            tap: None,
            paused: false,
        };
        self.vms.lock().await.insert(vmid, vm);
        Ok(())
    }

    async fn start(&self, vmid: u32) -> Result<(), BackendError> {
        let mut vms = self.vms.lock().await;
        let vm = vms
            .get_mut(&vmid)
            .ok_or_else(|| BackendError(format!("VM {vmid} unknown")))?;
        if let Some(child) = vm.child.as_mut()
            && child.try_wait()?.is_none()
        {
            return Err(BackendError(format!("VM {vmid} already running")));
        }
        vm.halt();
        for s in ["vnc.sock", "serial.sock", "qmp.sock"] {
            let _ = std::fs::remove_file(vm.dir.join(s));
        }
        let child = self.command(vm)?.spawn()?;
        vm.child = Some(child);
        match attach_tap(&vm.dir).await {
            Ok(tap) => vm.tap = Some(tap),
            Err(e) => {
                vm.halt();
                let log = std::fs::read_to_string(vm.dir.join("qemu.log")).unwrap_or_default();
                return Err(BackendError(format!("start failed: {e}: {}", log.trim())));
            }
        }
        Ok(())
    }

    async fn stop(&self, vmid: u32) -> Result<(), BackendError> {
        let mut vms = self.vms.lock().await;
        if let Some(vm) = vms.get_mut(&vmid) {
            vm.halt();
        }
        Ok(())
    }

    async fn suspend(&self, vmid: u32) -> Result<(), BackendError> {
        let mut vms = self.vms.lock().await;
        let vm = vms
            .get_mut(&vmid)
            .ok_or_else(|| BackendError(format!("VM {vmid} unknown")))?;
        qmp(&vm.dir, "stop").await?;
        vm.paused = true;
        Ok(())
    }

    async fn resume(&self, vmid: u32) -> Result<(), BackendError> {
        let mut vms = self.vms.lock().await;
        let vm = vms
            .get_mut(&vmid)
            .ok_or_else(|| BackendError(format!("VM {vmid} unknown")))?;
        qmp(&vm.dir, "cont").await?;
        vm.paused = false;
        Ok(())
    }

    async fn destroy(&self, vmid: u32) -> Result<(), BackendError> {
        let vm = self.vms.lock().await.remove(&vmid);
        if let Some(vm) = vm {
            let dir = vm.dir.clone();
            drop(vm);
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(())
    }

    async fn status(&self, vmid: u32) -> Result<PowerState, BackendError> {
        let mut vms = self.vms.lock().await;
        let Some(vm) = vms.get_mut(&vmid) else {
            return Ok(PowerState::Stopped);
        };
        let alive = match vm.child.as_mut() {
            Some(child) => child.try_wait()?.is_none(),
            None => false,
        };
        Ok(match (alive, vm.paused) {
            (false, _) => PowerState::Stopped,
            (true, true) => PowerState::Paused,
            (true, false) => PowerState::Running,
        })
    }

    async fn vnc_stream(&self, vmid: u32) -> Result<ConsoleStream, BackendError> {
        let dir = {
            let vms = self.vms.lock().await;
            let vm = vms
                .get(&vmid)
                .ok_or_else(|| BackendError(format!("VM {vmid} unknown")))?;
            vm.dir.clone()
        };
        Ok(Box::new(UnixStream::connect(dir.join("vnc.sock")).await?))
    }

    async fn serial_stream(&self, vmid: u32) -> Result<ConsoleStream, BackendError> {
        let tap = {
            let vms = self.vms.lock().await;
            let vm = vms
                .get(&vmid)
                .ok_or_else(|| BackendError(format!("VM {vmid} unknown")))?;
            vm.tap
                .clone()
                .ok_or_else(|| BackendError(format!("VM {vmid} not running")))?
        };
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let (mut from_viewer, mut to_viewer) = tokio::io::split(theirs);
        let (backlog, mut rx) = {
            let sb = tap
                .scrollback
                .lock()
                .map_err(|_| BackendError("poisoned".into()))?;
            (sb.clone(), tap.live.subscribe())
        };
        tokio::spawn(async move {
            if to_viewer.write_all(&backlog).await.is_err() {
                return;
            }
            loop {
                match rx.recv().await {
                    Ok(chunk) => {
                        if to_viewer.write_all(&chunk).await.is_err() {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        let input_tap = tap.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            while let Ok(n) = from_viewer.read(&mut buf).await {
                if n == 0
                    || input_tap
                        .writer
                        .lock()
                        .await
                        .write_all(&buf[..n])
                        .await
                        .is_err()
                {
                    break;
                }
            }
        });
        Ok(Box::new(ours))
    }
}
