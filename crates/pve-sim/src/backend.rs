//! What stands behind a simulated VM: a [`Backend`] runs (or pretends to run) the guest and
//! hands out its consoles. [`FakeBackend`] is in memory; `QemuBackend` runs real guests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};

/// A connected console byte stream.
pub trait ConsoleIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ConsoleIo for T {}

/// A boxed console stream.
pub type ConsoleStream = Box<dyn ConsoleIo>;

/// What a backend needs to build a guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmSpec {
    /// The VM's name.
    pub name: String,
    /// Memory in MiB.
    pub memory: u64,
    /// Virtual CPU cores.
    pub cores: u32,
}

/// A guest's power state, as the backend sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerState {
    /// Not running.
    Stopped,
    /// Running.
    Running,
    /// Paused (suspended to RAM).
    Paused,
}

/// Why a backend operation failed; the message becomes the task's exit status.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

impl From<std::io::Error> for BackendError {
    fn from(e: std::io::Error) -> Self {
        BackendError(e.to_string())
    }
}

/// Runs guests for the simulator. Every call names the VM by its id.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Prepares a guest (no process yet).
    async fn create(&self, vmid: u32, spec: &VmSpec) -> Result<(), BackendError>;
    /// Starts the guest.
    async fn start(&self, vmid: u32) -> Result<(), BackendError>;
    /// Stops the guest at once.
    async fn stop(&self, vmid: u32) -> Result<(), BackendError>;
    /// Pauses the guest.
    async fn suspend(&self, vmid: u32) -> Result<(), BackendError>;
    /// Resumes a paused guest.
    async fn resume(&self, vmid: u32) -> Result<(), BackendError>;
    /// Stops the guest if needed and forgets it.
    async fn destroy(&self, vmid: u32) -> Result<(), BackendError>;
    /// The guest's power state.
    async fn status(&self, vmid: u32) -> Result<PowerState, BackendError>;
    /// A stream connected to the guest's VNC server, which needs no password.
    async fn vnc_stream(&self, vmid: u32) -> Result<ConsoleStream, BackendError>;
    /// A stream connected to the guest's first serial port.
    async fn serial_stream(&self, vmid: u32) -> Result<ConsoleStream, BackendError>;
}

/// An in-memory backend: power states only, a fake VNC server (security None, a 640×480
/// framebuffer) and a fake serial console that greets with `fake-guest ready` and echoes.
#[derive(Debug, Default, Clone)]
pub struct FakeBackend {
    vms: Arc<Mutex<BTreeMap<u32, PowerState>>>,
}

/// The line the fake serial console prints first.
pub const FAKE_SERIAL_BANNER: &str = "fake-guest ready\r\n";

impl FakeBackend {
    /// An empty fake backend.
    pub fn new() -> Self {
        Self::default()
    }

    fn set(&self, vmid: u32, from: &[PowerState], to: PowerState) -> Result<(), BackendError> {
        let mut vms = self
            .vms
            .lock()
            .map_err(|_| BackendError("poisoned".into()))?;
        let state = vms.entry(vmid).or_insert(PowerState::Stopped);
        if !from.contains(state) {
            return Err(BackendError(format!("VM {vmid} is {state:?}")));
        }
        *state = to;
        Ok(())
    }

    fn running(&self, vmid: u32) -> Result<(), BackendError> {
        let vms = self
            .vms
            .lock()
            .map_err(|_| BackendError("poisoned".into()))?;
        match vms.get(&vmid) {
            Some(PowerState::Running | PowerState::Paused) => Ok(()),
            _ => Err(BackendError(format!("VM {vmid} not running"))),
        }
    }
}

#[async_trait]
impl Backend for FakeBackend {
    async fn create(&self, vmid: u32, _spec: &VmSpec) -> Result<(), BackendError> {
        let mut vms = self
            .vms
            .lock()
            .map_err(|_| BackendError("poisoned".into()))?;
        vms.insert(vmid, PowerState::Stopped);
        Ok(())
    }
    async fn start(&self, vmid: u32) -> Result<(), BackendError> {
        self.set(vmid, &[PowerState::Stopped], PowerState::Running)
    }
    async fn stop(&self, vmid: u32) -> Result<(), BackendError> {
        self.set(
            vmid,
            &[PowerState::Stopped, PowerState::Running, PowerState::Paused],
            PowerState::Stopped,
        )
    }
    async fn suspend(&self, vmid: u32) -> Result<(), BackendError> {
        self.set(vmid, &[PowerState::Running], PowerState::Paused)
    }
    async fn resume(&self, vmid: u32) -> Result<(), BackendError> {
        self.set(vmid, &[PowerState::Paused], PowerState::Running)
    }
    async fn destroy(&self, vmid: u32) -> Result<(), BackendError> {
        let mut vms = self
            .vms
            .lock()
            .map_err(|_| BackendError("poisoned".into()))?;
        vms.remove(&vmid);
        Ok(())
    }
    async fn status(&self, vmid: u32) -> Result<PowerState, BackendError> {
        let vms = self
            .vms
            .lock()
            .map_err(|_| BackendError("poisoned".into()))?;
        Ok(vms.get(&vmid).copied().unwrap_or(PowerState::Stopped))
    }
    async fn vnc_stream(&self, vmid: u32) -> Result<ConsoleStream, BackendError> {
        self.running(vmid)?;
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        tokio::spawn(fake_vnc_server(theirs));
        Ok(Box::new(ours))
    }
    async fn serial_stream(&self, vmid: u32) -> Result<ConsoleStream, BackendError> {
        self.running(vmid)?;
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            if theirs
                .write_all(FAKE_SERIAL_BANNER.as_bytes())
                .await
                .is_err()
            {
                return;
            }
            let mut buf = [0u8; 1024];
            while let Ok(n) = theirs.read(&mut buf).await {
                if n == 0 || theirs.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
        Ok(Box::new(ours))
    }
}

/// A minimal RFB 3.8 server: security None, then ServerInit for a 640×480 32-bit screen;
/// afterwards it reads and discards what the client sends.
async fn fake_vnc_server(mut io: DuplexStream) -> std::io::Result<()> {
    io.write_all(b"RFB 003.008\n").await?;
    let mut version = [0u8; 12];
    io.read_exact(&mut version).await?;
    io.write_all(&[1, 1]).await?; // one security type: None
    let mut choice = [0u8; 1];
    io.read_exact(&mut choice).await?;
    io.write_all(&0u32.to_be_bytes()).await?; // SecurityResult OK
    let mut shared = [0u8; 1];
    io.read_exact(&mut shared).await?;
    let name = b"fake";
    let mut init = Vec::new();
    init.extend_from_slice(&640u16.to_be_bytes());
    init.extend_from_slice(&480u16.to_be_bytes());
    // bpp 32, depth 24, little endian, true colour, max 255/255/255, shifts 16/8/0, padding.
    init.extend_from_slice(&[32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]);
    init.extend_from_slice(&u32::try_from(name.len()).unwrap_or(0).to_be_bytes());
    init.extend_from_slice(name);
    io.write_all(&init).await?;
    let mut sink = [0u8; 1024];
    while io.read(&mut sink).await? > 0 {}
    Ok(())
}
