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
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use porthole_core::driver::SharedConsole;
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
    state: Mutex<TapState>,
    input: tokio::sync::Mutex<OwnedWriteHalf>,
}

#[derive(Debug)]
struct TapState {
    scrollback: VecDeque<u8>,
    /// The live feed; dropped when QEMU closes the port, which ends every viewer's feed.
    live: Option<broadcast::Sender<Bytes>>,
}

impl SerialTap {
    /// Connects to the serial socket at `path` and starts collecting output.
    pub async fn connect(path: &Path) -> std::io::Result<Arc<Self>> {
        let stream = UnixStream::connect(path).await?;
        let (mut read, write) = stream.into_split();
        let tap = Arc::new(Self {
            state: Mutex::new(TapState {
                scrollback: VecDeque::with_capacity(SCROLLBACK_BYTES),
                live: Some(broadcast::channel(LIVE_BACKLOG).0),
            }),
            input: tokio::sync::Mutex::new(write),
        });
        let reader = Arc::clone(&tap);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n @ 1..) = read.read(&mut buf).await {
                reader.record(&buf[..n]);
            }
            reader.state().live = None;
        });
        Ok(tap)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TapState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, chunk: &[u8]) {
        let mut state = self.state();
        state.scrollback.extend(chunk);
        let excess = state.scrollback.len().saturating_sub(SCROLLBACK_BYTES);
        state.scrollback.drain(..excess);
        // Sent under the lock, so `attach` sees each chunk either in the scrollback or in its
        // feed, never both and never neither. Nobody listening is normal.
        if let Some(live) = &state.live {
            let _ = live.send(Bytes::copy_from_slice(chunk));
        }
    }

    /// The most recent output, oldest byte first.
    pub fn scrollback(&self) -> Vec<u8> {
        self.attach_now().0
    }

    fn attach_now(&self) -> (Vec<u8>, broadcast::Receiver<Bytes>) {
        let state = self.state();
        // A closed port gives a feed that ends at once.
        let live = match &state.live {
            Some(live) => live.subscribe(),
            None => broadcast::channel(1).1,
        };
        (state.scrollback.iter().copied().collect(), live)
    }

    /// Whether QEMU still holds the other end.
    pub fn is_open(&self) -> bool {
        self.state().live.is_some()
    }
}

#[async_trait::async_trait]
impl SharedConsole for SerialTap {
    fn attach(&self) -> (Vec<u8>, broadcast::Receiver<Bytes>) {
        self.attach_now()
    }

    async fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.input.lock().await.write_all(bytes).await
    }

    fn is_open(&self) -> bool {
        SerialTap::is_open(self)
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
        let tap = SerialTap::connect(&path).await.unwrap();
        let (mut guest, _) = listener.accept().await.unwrap();
        let (earlier, mut live) = tap.attach();
        assert!(earlier.is_empty());

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
        // Every viewer's feed ends when the port closes, and late viewers get an ended feed
        // with the last output still in the scrollback.
        let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                if let Err(broadcast::error::RecvError::Closed) = live.recv().await {
                    return;
                }
            }
        });
        ended.await.expect("the live feed did not end");
        assert!(!tap.is_open());
        let (scrollback, mut late) = tap.attach();
        assert!(scrollback.ends_with(b"login: "));
        assert!(matches!(
            late.recv().await,
            Err(broadcast::error::RecvError::Closed)
        ));
    }
}
