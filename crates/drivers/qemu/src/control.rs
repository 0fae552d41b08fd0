//! The console control port: how a viewer's terminal size reaches the guest.
//!
//! QEMU exposes a virtio-serial port named `org.porthole.console.0` on a unix socket; the
//! guest's console agent applies each `ROWS COLS` line it reads to its serial console. The
//! driver keeps one connection open for as long as the VM runs, because QEMU passes bytes to
//! the guest only while a host client is connected: a line written on a connection that
//! closes at once can be lost while the agent is not reading.

use std::path::PathBuf;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

/// The host end of one VM's console control port.
#[derive(Debug)]
pub struct ConsoleControl {
    path: PathBuf,
    stream: tokio::sync::Mutex<Option<UnixStream>>,
}

impl ConsoleControl {
    /// The control port at `path`, not yet connected.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            stream: tokio::sync::Mutex::new(None),
        }
    }

    /// Connects now, so the guest's agent finds its host end connected from the start.
    pub async fn connect(&self) -> std::io::Result<()> {
        let mut stream = self.stream.lock().await;
        *stream = Some(UnixStream::connect(&self.path).await?);
        Ok(())
    }

    /// Tells the guest its console is `cols` x `rows`, reconnecting once if the connection
    /// broke (QEMU restarted).
    pub async fn send_size(&self, cols: u16, rows: u16) -> std::io::Result<()> {
        let line = format!("{rows} {cols}\n");
        let mut stream = self.stream.lock().await;
        for attempt in 0..2 {
            if stream.is_none() {
                *stream = Some(UnixStream::connect(&self.path).await?);
            }
            let connected = stream.as_mut().expect("connected above");
            match connected.write_all(line.as_bytes()).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt == 1 => return Err(e),
                Err(_) => *stream = None,
            }
        }
        unreachable!("the loop returns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;
    use tokio::net::UnixListener;

    #[tokio::test]
    async fn sizes_go_out_on_one_connection_and_survive_a_reconnect() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let control = ConsoleControl::new(path.clone());
        control.connect().await.unwrap();
        let (first, _) = listener.accept().await.unwrap();
        control.send_size(80, 24).await.unwrap();
        control.send_size(132, 43).await.unwrap();
        let mut lines = tokio::io::BufReader::new(first).lines();
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("24 80"));
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("43 132"));
        // The old end goes away (QEMU restarted); the next size reconnects.
        drop(lines);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let sent = tokio::spawn(async move {
            // The first write may still land in the dead socket's buffer; keep sending until
            // one arrives on the new connection.
            for _ in 0..5 {
                let _ = control.send_size(100, 30).await;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        });
        let (second, _) = listener.accept().await.unwrap();
        let mut lines = tokio::io::BufReader::new(second).lines();
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("30 100"));
        sent.await.unwrap();
    }
}
