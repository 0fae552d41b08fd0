//! The plane's driver for a node run by an agent: the [`Driver`] trait over mutual TLS.
//!
//! The plane reaches the agent; the agent never has to be reachable by users. Every call
//! checks first whether the node answered its recent heartbeats, so actions on a node that
//! is down fail at once with [`DriverError::Unreachable`] instead of waiting for a timeout.
//! Consoles come back as [`ConsoleEndpoint::Piped`]: a socket pair fed from the agent's
//! console WebSocket, so the gateway treats them as it treats any other console.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use porthole_core::driver::{
    BootOrder, Capacity, ConsoleEndpoint, ConsoleKind, Driver, DriverError, PipedConsole,
    PowerState, Progress, VmDefinition,
};
use porthole_core::node::{Capabilities, NodeKind};
use porthole_core::{IsoId, Resources, Snapshot, SnapshotName, VmId};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::pki::{self, CertInfo};
use crate::tls::{self, Identity, PeerCheck};
use crate::wire::{
    BootMediaRequest, ConsoleControl, CreateEvent, Health, ShutdownRequest, VNC_PASSWORD_HEADER,
    WireError,
};

/// How long a heartbeat may take.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long without an answer makes a node offline. With a heartbeat every second this
/// marks a silent node offline within about 6 s.
pub const OFFLINE_AFTER: Duration = Duration::from_secs(4);
/// How long an ordinary call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a create may go without a line of progress.
const CREATE_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest piece of console input relayed at once.
const CHUNK: usize = 64 * 1024;

/// What changed at a heartbeat.
#[derive(Debug)]
pub enum Heartbeat {
    /// The node answered, as it did before.
    Steady(Health),
    /// The node answered after being offline (or for the first time since the plane started).
    CameOnline(Health),
    /// The node stopped answering.
    WentOffline(String),
    /// Still no answer.
    StillOffline,
}

#[derive(Debug)]
struct Liveness {
    online: bool,
    /// The agent started again since the last heartbeat, so what it holds must be compared
    /// again even if it never looked offline.
    restarted: bool,
    last_answer: Option<Instant>,
    since: SystemTime,
    capacity: Option<Capacity>,
    problem: Option<String>,
}

/// The TLS set-up calls to one agent go out with.
#[derive(Debug, Clone)]
struct Channel {
    http: reqwest::Client,
    tls: Arc<rustls::ClientConfig>,
}

impl Channel {
    /// Presenting `identity`, accepting only node `node`'s certificates whose serial is in
    /// `serials`.
    fn new(
        node: &str,
        ca: &rustls::pki_types::CertificateDer<'static>,
        identity: &Identity,
        serials: &Arc<RwLock<HashSet<String>>>,
    ) -> Result<Channel, tls::TlsError> {
        let allowed = Arc::clone(serials);
        let check: PeerCheck = Arc::new(move |info: &CertInfo| {
            if allowed
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&info.serial)
            {
                Ok(())
            } else {
                Err(format!(
                    "certificate {} is revoked or was never issued to this node",
                    info.serial
                ))
            }
        });
        let config =
            tls::client_config(ca, &pki::node_identity(node), Some(identity), Some(check))?;
        Ok(Channel {
            http: tls::http_client(config.clone(), CONNECT_TIMEOUT)?,
            tls: Arc::new(config),
        })
    }
}

/// The plane's driver for one agent node.
#[derive(Debug)]
pub struct AgentDriver {
    node: String,
    address: RwLock<String>,
    ca: rustls::pki_types::CertificateDer<'static>,
    channel: RwLock<Channel>,
    serials: Arc<RwLock<HashSet<String>>>,
    liveness: Mutex<Liveness>,
    findings: Mutex<Vec<String>>,
}

impl AgentDriver {
    /// A driver for node `node` at `address` (`https://HOST:PORT`), accepting only a server
    /// certificate from `ca` for that node whose serial is in `serials`, and presenting the
    /// plane's `identity`.
    pub fn new(
        node: &str,
        address: &str,
        ca: &rustls::pki_types::CertificateDer<'static>,
        identity: &Identity,
        serials: impl IntoIterator<Item = String>,
    ) -> Result<Arc<AgentDriver>, tls::TlsError> {
        let serials = Arc::new(RwLock::new(serials.into_iter().collect::<HashSet<_>>()));
        let channel = Channel::new(node, ca, identity, &serials)?;
        Ok(Arc::new(AgentDriver {
            node: node.to_owned(),
            address: RwLock::new(address.trim_end_matches('/').to_owned()),
            ca: ca.clone(),
            channel: RwLock::new(channel),
            serials,
            liveness: Mutex::new(Liveness {
                online: false,
                restarted: false,
                last_answer: None,
                since: SystemTime::now(),
                capacity: None,
                problem: Some("no heartbeat answered yet".into()),
            }),
            findings: Mutex::default(),
        }))
    }

    /// Presents the plane's renewed `identity` from the next connection on.
    pub fn set_identity(&self, identity: &Identity) -> Result<(), tls::TlsError> {
        let channel = Channel::new(&self.node, &self.ca, identity, &self.serials)?;
        *self.channel.write().unwrap_or_else(|e| e.into_inner()) = channel;
        Ok(())
    }

    fn http(&self) -> reqwest::Client {
        self.channel
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .http
            .clone()
    }

    /// Asks the agent to drop its cached copy of an image the plane no longer keeps;
    /// `kind` is `templates` or `isos`. The agent refuses while a VM there uses it.
    pub async fn evict(&self, kind: &str, id: &str) -> Result<(), DriverError> {
        self.call::<(), ()>(Method::DELETE, &format!("/v1/cache/{kind}/{id}"), None)
            .await
    }

    /// Accepts the certificate with `serial` from now on (after a renewal).
    pub fn allow(&self, serial: String) {
        self.serials
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(serial);
    }

    /// Notes that the agent (re)started: the next answer is treated as a reconnect.
    pub fn restarted(&self) {
        self.state().restarted = true;
    }

    /// Reaches the agent at `address` from now on.
    pub fn set_address(&self, address: &str) {
        *self.address.write().unwrap_or_else(|e| e.into_inner()) =
            address.trim_end_matches('/').to_owned();
    }

    /// Where the agent is reached.
    pub fn address(&self) -> String {
        self.address
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the node answers, since when it has been so, and why not.
    pub fn liveness(&self) -> (bool, SystemTime, Option<String>) {
        let state = self.state();
        (state.online, state.since, state.problem.clone())
    }

    /// Records what the plane found when the node last came back: VMs only one side knows.
    pub fn set_findings(&self, findings: Vec<String>) {
        *self.findings.lock().unwrap_or_else(|e| e.into_inner()) = findings;
    }

    /// What the plane found when the node last came back.
    pub fn findings(&self) -> Vec<String> {
        self.findings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Liveness> {
        self.liveness.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the agent how it is, and records the answer.
    pub async fn heartbeat(&self) -> Heartbeat {
        let answer = self
            .request::<Health, ()>(Method::GET, "/v1/health", None, HEARTBEAT_TIMEOUT)
            .await;
        let mut state = self.state();
        match answer {
            Ok(health) => {
                state.last_answer = Some(Instant::now());
                state.capacity = Some(health.capacity);
                state.problem = None;
                if state.online && !state.restarted {
                    Heartbeat::Steady(health)
                } else {
                    if !state.online {
                        state.online = true;
                        state.since = SystemTime::now();
                    }
                    state.restarted = false;
                    Heartbeat::CameOnline(health)
                }
            }
            Err(e) => {
                let why = e.to_string();
                state.problem = Some(why.clone());
                let silent_for = state.last_answer.map(|t| t.elapsed());
                if state.online && silent_for.is_none_or(|d| d >= OFFLINE_AFTER) {
                    state.online = false;
                    state.since = SystemTime::now();
                    state.capacity = None;
                    Heartbeat::WentOffline(why)
                } else {
                    Heartbeat::StillOffline
                }
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address())
    }

    /// Fails at once if the node is offline.
    fn ensure_online(&self) -> Result<(), DriverError> {
        match self.unavailable() {
            Some(why) => Err(DriverError::Unreachable(why)),
            None => Ok(()),
        }
    }

    async fn request<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T, DriverError> {
        let mut request = self.http().request(method, self.url(path)).timeout(timeout);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = self.send(request).await?;
        response.json().await.map_err(|e| self.unreachable(&e))
    }

    /// Sends `request`: the response if it succeeded, else the agent's refusal as the
    /// driver error it stands for.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, DriverError> {
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.refusal(response).await)
        }
    }

    async fn call<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, DriverError> {
        self.ensure_online()?;
        self.request(method, path, body, CALL_TIMEOUT).await
    }

    fn unreachable(&self, error: &reqwest::Error) -> DriverError {
        DriverError::Unreachable(format!(
            "node {}: {}",
            self.node,
            porthole_core::error_chain(error)
        ))
    }

    async fn refusal(&self, response: reqwest::Response) -> DriverError {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        match serde_json::from_str::<WireError>(&text) {
            Ok(wire) => wire.into(),
            Err(_) => DriverError::failed(
                "agent request",
                format!("node {} answered {status}: {text}", self.node),
            ),
        }
    }

    async fn power(&self, vm: VmId, action: &str) -> Result<(), DriverError> {
        self.call::<(), ()>(Method::POST, &format!("/v1/vms/{vm}/power/{action}"), None)
            .await
    }

    /// Connects to a console WebSocket on the agent.
    async fn open_console(&self, vm: VmId, kind: ConsoleKind) -> Result<PipedConsole, DriverError> {
        self.ensure_online()?;
        let kind_name = match kind {
            ConsoleKind::Vnc => "vnc",
            ConsoleKind::Serial => "serial",
        };
        let url = self
            .url(&format!("/v1/vms/{vm}/console/{kind_name}"))
            .replacen("https://", "wss://", 1);
        let failed =
            |message: String| DriverError::Unreachable(format!("node {}: {message}", self.node));
        let request = url
            .as_str()
            .into_client_request()
            .map_err(|e| failed(e.to_string()))?;
        let tls = Arc::clone(&self.channel.read().unwrap_or_else(|e| e.into_inner()).tls);
        let connector = tokio_tungstenite::Connector::Rustls(tls);
        let connect =
            tokio_tungstenite::connect_async_tls_with_config(request, None, true, Some(connector));
        let (socket, response) = match tokio::time::timeout(CALL_TIMEOUT, connect).await {
            Err(_) => return Err(failed("the console did not open in time".into())),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
                let body = response.body().as_deref().unwrap_or_default();
                return Err(match serde_json::from_slice::<WireError>(body) {
                    Ok(wire) => wire.into(),
                    Err(_) => failed(format!("console refused with {}", response.status())),
                });
            }
            Ok(Err(e)) => return Err(failed(format!("console connection failed: {e}"))),
            Ok(Ok(opened)) => opened,
        };
        let password = response
            .headers()
            .get(VNC_PASSWORD_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| DriverError::io("making a console socket pair", e))?;
        let (resize, resizes) = mpsc::channel(8);
        tokio::spawn(pump(socket, theirs, resizes));
        Ok(PipedConsole {
            stream: ours,
            password,
            resize: (kind == ConsoleKind::Serial).then_some(resize),
        })
    }
}

/// Relays between the agent's console WebSocket and the gateway's socket until either ends.
async fn pump<S>(
    socket: tokio_tungstenite::WebSocketStream<S>,
    mut local: UnixStream,
    mut resizes: mpsc::Receiver<(u16, u16)>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut tx, mut rx) = socket.split();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let outgoing = tokio::select! {
            read = local.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => Message::binary(buf[..n].to_vec()),
            },
            message = rx.next() => match message {
                Some(Ok(Message::Binary(data))) => {
                    if local.write_all(&data).await.is_err() { break; }
                    continue;
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => continue,
            },
            Some((cols, rows)) = resizes.recv() => {
                let control = ConsoleControl::Resize { cols, rows };
                Message::text(serde_json::to_string(&control).unwrap_or_default())
            }
        };
        if tx.send(outgoing).await.is_err() {
            break;
        }
    }
    let _ = tx.send(Message::Close(None)).await;
}

#[async_trait]
impl Driver for AgentDriver {
    fn kind(&self) -> NodeKind {
        NodeKind::Agent
    }

    /// An agent's host runs the QEMU driver.
    fn capabilities(&self) -> Capabilities {
        porthole_qemu::CAPABILITIES
    }

    fn capacity(&self) -> Option<Capacity> {
        let state = self.state();
        state.online.then_some(state.capacity).flatten()
    }

    fn unavailable(&self) -> Option<String> {
        let state = self.state();
        if state.online {
            return None;
        }
        let since = rfc3339(state.since);
        Some(match &state.problem {
            Some(why) => format!("node {} is offline since {since}: {why}", self.node),
            None => format!("node {} is offline since {since}", self.node),
        })
    }

    async fn create(&self, def: &VmDefinition, progress: &dyn Progress) -> Result<(), DriverError> {
        self.ensure_online()?;
        let response = self
            .send(self.http().post(self.url("/v1/vms")).json(def))
            .await?;
        let mut body = response.bytes_stream();
        let mut pending = Vec::new();
        loop {
            let chunk = tokio::time::timeout(CREATE_IDLE_TIMEOUT, body.next())
                .await
                .map_err(|_| DriverError::Timeout {
                    operation: "create on the agent".into(),
                    seconds: CREATE_IDLE_TIMEOUT.as_secs(),
                })?;
            let Some(chunk) = chunk else {
                return Err(DriverError::Unreachable(format!(
                    "node {} closed the create stream before it finished",
                    self.node
                )));
            };
            pending.extend_from_slice(&chunk.map_err(|e| self.unreachable(&e))?);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                match serde_json::from_slice::<CreateEvent>(&line) {
                    Ok(CreateEvent::Progress { fraction, step }) => {
                        progress.update(fraction, &step);
                    }
                    Ok(CreateEvent::Done) => return Ok(()),
                    Ok(CreateEvent::Failed { error }) => return Err(error.into()),
                    Err(e) => {
                        return Err(DriverError::failed(
                            "create on the agent",
                            format!("node {} sent an unreadable line: {e}", self.node),
                        ));
                    }
                }
            }
        }
    }

    async fn start(&self, vm: VmId) -> Result<(), DriverError> {
        self.power(vm, "start").await
    }

    async fn stop(&self, vm: VmId) -> Result<(), DriverError> {
        self.power(vm, "stop").await
    }

    async fn shutdown(&self, vm: VmId, timeout: Duration) -> Result<(), DriverError> {
        self.ensure_online()?;
        let request = ShutdownRequest {
            timeout_secs: timeout.as_secs(),
        };
        let path = format!("/v1/vms/{vm}/shutdown");
        self.request(Method::POST, &path, Some(&request), timeout + CALL_TIMEOUT)
            .await
    }

    async fn reset(&self, vm: VmId) -> Result<(), DriverError> {
        self.power(vm, "reset").await
    }

    async fn suspend(&self, vm: VmId) -> Result<(), DriverError> {
        self.power(vm, "suspend").await
    }

    async fn resume(&self, vm: VmId) -> Result<(), DriverError> {
        self.power(vm, "resume").await
    }

    async fn delete(&self, vm: VmId) -> Result<(), DriverError> {
        self.call::<(), ()>(Method::DELETE, &format!("/v1/vms/{vm}"), None)
            .await
    }

    async fn status(&self, vm: VmId) -> Result<PowerState, DriverError> {
        self.call::<_, ()>(Method::GET, &format!("/v1/vms/{vm}"), None)
            .await
    }

    async fn inventory(&self) -> Result<Vec<(VmId, PowerState)>, DriverError> {
        self.ensure_online()?;
        let health: Health = self
            .request::<_, ()>(Method::GET, "/v1/health", None, HEARTBEAT_TIMEOUT * 2)
            .await?;
        Ok(health.inventory)
    }

    async fn resize(&self, vm: VmId, resources: Resources) -> Result<(), DriverError> {
        self.call(
            Method::POST,
            &format!("/v1/vms/{vm}/resources"),
            Some(&resources),
        )
        .await
    }

    async fn console(&self, vm: VmId, kind: ConsoleKind) -> Result<ConsoleEndpoint, DriverError> {
        Ok(ConsoleEndpoint::Piped(self.open_console(vm, kind).await?))
    }

    async fn console_output(&self, vm: VmId) -> Result<Vec<u8>, DriverError> {
        self.ensure_online()?;
        let path = format!("/v1/vms/{vm}/console-output");
        let response = self
            .send(self.http().get(self.url(&path)).timeout(CALL_TIMEOUT))
            .await?;
        Ok(response
            .bytes()
            .await
            .map_err(|e| self.unreachable(&e))?
            .to_vec())
    }

    async fn set_boot_media(
        &self,
        vm: VmId,
        cdrom: Option<IsoId>,
        order: BootOrder,
    ) -> Result<(), DriverError> {
        let request = BootMediaRequest { cdrom, order };
        self.call(
            Method::POST,
            &format!("/v1/vms/{vm}/boot-media"),
            Some(&request),
        )
        .await
    }

    async fn snapshot_create(&self, vm: VmId, name: &SnapshotName) -> Result<(), DriverError> {
        let body = serde_json::json!({ "name": name });
        self.call(
            Method::POST,
            &format!("/v1/vms/{vm}/snapshots"),
            Some(&body),
        )
        .await
    }

    async fn snapshots(&self, vm: VmId) -> Result<Vec<Snapshot>, DriverError> {
        self.call::<_, ()>(Method::GET, &format!("/v1/vms/{vm}/snapshots"), None)
            .await
    }

    async fn snapshot_rollback(&self, vm: VmId, name: &SnapshotName) -> Result<(), DriverError> {
        let path = format!("/v1/vms/{vm}/snapshots/{}/rollback", name.as_str());
        self.call::<(), ()>(Method::POST, &path, None).await
    }

    async fn snapshot_delete(&self, vm: VmId, name: &SnapshotName) -> Result<(), DriverError> {
        let path = format!("/v1/vms/{vm}/snapshots/{}", name.as_str());
        self.call::<(), ()>(Method::DELETE, &path, None).await
    }
}

/// `time` as RFC 3339 in UTC, to the second.
fn rfc3339(time: SystemTime) -> String {
    let seconds = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{seconds} s after the epoch"))
}
