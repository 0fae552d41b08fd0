//! A small typed QMP client over a unix socket.
//!
//! QMP goes:
//! 1. the server sends a greeting `{"QMP": {...}}`;
//! 2. the client sends `qmp_capabilities` and gets `{"return": {}}`;
//! 3. each `{"execute": ...}` gets exactly one `{"return": ...}` or `{"error": ...}`, while
//!    asynchronous `{"event": ...}` lines may arrive in between and are skipped here.
//!
//! One connection is opened per command. QEMU serves one QMP client at a time, connecting
//! costs well under a millisecond on a unix socket, and no connection state has to survive
//! a restart of porthole. Replies this client has no type for stay available as raw JSON
//! through [`Qmp::execute_raw`].

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// How long one QMP exchange may take before the VM is considered unresponsive.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a QMP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be reached: QEMU is not running, or not yet listening.
    #[error("cannot connect to QMP")]
    Connect(#[source] std::io::Error),
    /// The connection broke mid-exchange.
    #[error("QMP connection failed")]
    Io(#[source] std::io::Error),
    /// QEMU closed the connection, usually because it is exiting.
    #[error("QEMU closed the QMP connection")]
    Closed,
    /// QEMU did not answer in time (seconds waited).
    #[error("QEMU did not answer QMP within {0} s")]
    Timeout(u64),
    /// QEMU sent something that is not QMP.
    #[error("unexpected QMP message: {0}")]
    Protocol(String),
    /// QEMU refused the command.
    #[error("{class}: {desc}")]
    Command {
        /// QMP's error class, e.g. `GenericError`.
        class: String,
        /// QEMU's description.
        desc: String,
    },
}

/// The reply to `query-status`.
#[derive(Debug, Clone, Deserialize)]
pub struct StatusInfo {
    /// Whether the guest's CPUs run.
    pub running: bool,
    /// QEMU's run state, e.g. `running`, `paused`, `prelaunch`.
    pub status: String,
}

/// A connected, capabilities-negotiated QMP session.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    timeout: Duration,
}

impl Qmp {
    /// Connects to the QMP socket at `path` and negotiates capabilities.
    pub async fn connect(path: &Path) -> Result<Self, QmpError> {
        let stream = UnixStream::connect(path).await.map_err(QmpError::Connect)?;
        let (read, writer) = stream.into_split();
        let mut qmp = Self {
            reader: BufReader::new(read),
            writer,
            timeout: EXCHANGE_TIMEOUT,
        };
        let greeting = qmp.read_message().await?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!(
                "expected a greeting, got {greeting}"
            )));
        }
        qmp.execute_raw("qmp_capabilities", None).await?;
        Ok(qmp)
    }

    /// Lets each later exchange take up to `timeout` instead of the default 10 s, for
    /// commands that keep QEMU's main loop busy (such as saving a snapshot's memory).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Runs `command` and decodes its reply as `T`.
    pub async fn execute<T: DeserializeOwned>(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<T, QmpError> {
        let value = self.execute_raw(command, arguments).await?;
        serde_json::from_value(value.clone())
            .map_err(|e| QmpError::Protocol(format!("{command} returned {value}: {e}")))
    }

    /// Runs `command` and returns its reply as raw JSON.
    pub async fn execute_raw(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QmpError> {
        let mut request = json!({ "execute": command });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let mut line = request.to_string();
        line.push('\n');
        let timeout = self.timeout;
        tokio::time::timeout(timeout, async {
            self.writer
                .write_all(line.as_bytes())
                .await
                .map_err(QmpError::Io)?;
            loop {
                let mut message = self.read_message().await?;
                if message.get("event").is_some() {
                    continue;
                }
                if let Some(value) = message.get_mut("return") {
                    return Ok(value.take());
                }
                if let Some(error) = message.get("error") {
                    let field = |name: &str| {
                        error
                            .get(name)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned()
                    };
                    return Err(QmpError::Command {
                        class: field("class"),
                        desc: field("desc"),
                    });
                }
                return Err(QmpError::Protocol(message.to_string()));
            }
        })
        .await
        .map_err(|_| QmpError::Timeout(timeout.as_secs()))?
    }

    /// `query-status`: whether and how the guest runs.
    pub async fn query_status(&mut self) -> Result<StatusInfo, QmpError> {
        self.execute("query-status", None).await
    }

    /// Runs a command whose reply carries no data.
    pub async fn run(&mut self, command: &str, arguments: Option<Value>) -> Result<(), QmpError> {
        self.execute_raw(command, arguments).await.map(drop)
    }

    async fn read_message(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        let read = tokio::time::timeout(self.timeout, self.reader.read_line(&mut line))
            .await
            .map_err(|_| QmpError::Timeout(self.timeout.as_secs()))?
            .map_err(QmpError::Io)?;
        if read == 0 {
            return Err(QmpError::Closed);
        }
        serde_json::from_str(&line).map_err(|e| QmpError::Protocol(format!("{e}: {line}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// A scripted QMP server: sends the greeting, then answers each request line with the
    /// next canned reply (events may precede a reply).
    async fn scripted_server(
        path: &Path,
        replies: Vec<&'static str>,
    ) -> tokio::task::JoinHandle<()> {
        let listener = UnixListener::bind(path).unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            write
                .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
                .await
                .unwrap();
            for reply in replies {
                if lines.next_line().await.unwrap().is_none() {
                    return;
                }
                write.write_all(reply.as_bytes()).await.unwrap();
            }
        })
    }

    #[tokio::test]
    async fn negotiates_skips_events_and_decodes_replies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp");
        let server = scripted_server(
            &path,
            vec![
                "{\"return\": {}}\n",
                "{\"event\": \"RESUME\", \"timestamp\": {}}\n{\"return\": {\"running\": true, \"status\": \"running\", \"singlestep\": false}}\n",
                "{\"error\": {\"class\": \"GenericError\", \"desc\": \"nope\"}}\n",
            ],
        )
        .await;
        let mut qmp = Qmp::connect(&path).await.unwrap();
        let status = qmp.query_status().await.unwrap();
        assert!(status.running);
        assert_eq!(status.status, "running");
        let err = qmp.run("cont", None).await.unwrap_err();
        assert_eq!(err.to_string(), "GenericError: nope");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn reports_a_closed_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp");
        let server = scripted_server(&path, vec!["{\"return\": {}}\n"]).await;
        let mut qmp = Qmp::connect(&path).await.unwrap();
        server.await.unwrap();
        assert!(matches!(
            qmp.run("stop", None).await,
            Err(QmpError::Closed | QmpError::Io(_))
        ));
    }

    #[tokio::test]
    async fn a_missing_socket_is_a_connect_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Qmp::connect(&dir.path().join("absent")).await.unwrap_err();
        assert!(matches!(err, QmpError::Connect(_)));
    }
}
