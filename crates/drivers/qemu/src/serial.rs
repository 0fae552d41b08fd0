//! The serial console tap.
//!
//! QEMU's serial socket accepts one client and drops output while nobody is connected. So
//! the driver connects a tap to it before the guest's CPUs start (QEMU is started paused) and
//! keeps it until the VM is started again or deleted, so the last words of a stopped guest
//! stay readable:
//! 1. every byte the guest writes lands in a bounded scrollback and is broadcast to live
//!    viewers;
//! 2. viewers write input through the tap, so any number of them can share the one port.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::broadcast;

/// How much recent output a new viewer is shown.
pub const SCROLLBACK_BYTES: usize = 64 * 1024;

/// Chunks a slow viewer may fall behind before it misses output.
const LIVE_BACKLOG: usize = 1024;

/// A connection to one VM's serial port, shared by every viewer.
#[derive(Debug)]
pub struct SerialTap {
    scrollback: Mutex<VecDeque<u8>>,
    live: broadcast::Sender<Bytes>,
    input: tokio::sync::Mutex<OwnedWriteHalf>,
    open: AtomicBool,
}

impl SerialTap {
    /// Connects to the serial socket at `path` and starts collecting output.
    pub async fn attach(path: &Path) -> std::io::Result<Arc<Self>> {
        let stream = UnixStream::connect(path).await?;
        let (mut read, write) = stream.into_split();
        let tap = Arc::new(Self {
            scrollback: Mutex::new(VecDeque::with_capacity(SCROLLBACK_BYTES)),
            live: broadcast::channel(LIVE_BACKLOG).0,
            input: tokio::sync::Mutex::new(write),
            open: AtomicBool::new(true),
        });
        let reader = Arc::clone(&tap);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n @ 1..) = read.read(&mut buf).await {
                reader.record(&buf[..n]);
            }
            reader.open.store(false, Ordering::Release);
        });
        Ok(tap)
    }

    fn record(&self, chunk: &[u8]) {
        {
            let mut scrollback = self.scrollback.lock().unwrap_or_else(|e| e.into_inner());
            scrollback.extend(chunk);
            let excess = scrollback.len().saturating_sub(SCROLLBACK_BYTES);
            scrollback.drain(..excess);
        }
        // Nobody listening is normal.
        let _ = self.live.send(Bytes::copy_from_slice(chunk));
    }

    /// The most recent output, oldest byte first.
    pub fn scrollback(&self) -> Vec<u8> {
        let scrollback = self.scrollback.lock().unwrap_or_else(|e| e.into_inner());
        scrollback.iter().copied().collect()
    }

    /// A live feed of output from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Bytes> {
        self.live.subscribe()
    }

    /// Sends `bytes` to the guest's serial port.
    pub async fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.input.lock().await.write_all(bytes).await
    }

    /// Whether QEMU still holds the other end.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    #[tokio::test]
    async fn keeps_bounded_scrollback_and_relays_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial");
        let listener = UnixListener::bind(&path).unwrap();
        let tap = SerialTap::attach(&path).await.unwrap();
        let (mut guest, _) = listener.accept().await.unwrap();
        let mut live = tap.subscribe();

        let filler = vec![b'x'; SCROLLBACK_BYTES];
        guest.write_all(b"boot log start\n").await.unwrap();
        guest.write_all(&filler).await.unwrap();
        guest.write_all(b"login: ").await.unwrap();
        let mut seen = 0;
        while seen < 15 + SCROLLBACK_BYTES + 7 {
            seen += live.recv().await.unwrap().len();
        }
        let scrollback = tap.scrollback();
        assert_eq!(scrollback.len(), SCROLLBACK_BYTES);
        assert!(scrollback.ends_with(b"login: "));
        assert!(!scrollback.starts_with(b"boot"));

        tap.write(b"root\n").await.unwrap();
        let mut typed = [0u8; 5];
        guest.read_exact(&mut typed).await.unwrap();
        assert_eq!(&typed, b"root\n");

        drop(guest);
        drop(listener);
        for _ in 0..100 {
            if !tap.is_open() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("tap did not notice the closed socket");
    }
}
