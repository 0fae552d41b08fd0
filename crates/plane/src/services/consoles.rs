//! Console access: tickets, the checks at connect time, and running sessions.
//!
//! 1. [`mint_vm_ticket`] / [`mint_external_ticket`]: a user who may open a console gets a
//!    ticket bound to them, the console and its kind, valid at most 30 s.
//! 2. [`redeem`]: at WebSocket connect, the ticket is consumed (whatever happens next) and
//!    every binding is checked again: the user still exists and still has access, the VM
//!    still runs on the node it ran on, the path names the ticket's console and kind. The
//!    console's address is resolved now from the VM's current state, never carried in the
//!    ticket, so an address that moved to another VM cannot be reached (nova CVE-2013-0335).
//! 3. [`run_session`]: connect to the console (for VNC, authenticate to the server under the
//!    VM's handshake lock, then greet the client with security type None), record the
//!    session, relay, and record how it ended.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Sink, Stream};
use porthole_api::{
    ConsoleSession, ConsoleTicket, CreateExternalConsoleRequest, ExternalConsole,
    ExternalProtocol as WireProtocol,
};
use porthole_core::driver::ConsoleEndpoint;
use porthole_core::{ConsoleKind, ExternalConsoleId, UserId, VmId, VmState};
use porthole_gateway::metrics::KindLabel;
use porthole_gateway::relay::{ResizeFn, close_reason, read_termproxy_login};
use porthole_gateway::{
    Console, End, Frame, Framing, Rejection, RelayOptions, SessionSlot, TransportError, WsIo, rfb,
    ticket,
};
use porthole_proxmox::console;
use porthole_store::StoreError;
use porthole_store::consoles::{
    ConsoleTarget, ExternalConsoleRecord, ExternalProtocol, SessionRecord, TicketRecord,
    console_kind_str,
};
use porthole_store::users::UserRecord;
use porthole_store::vms::VmRecord;
use tokio::net::{TcpStream, UnixStream};

use crate::app::App;
use crate::error::{ApiError, chain};
use crate::extract::Caller;
use crate::services::accessor;
use crate::services::auth::from_millis;
use crate::services::images::validate_image_name;
use crate::services::vms::visible_vm;

/// How long connecting to a console may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a termproxy client has to send its login line.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The WebSocket path of a console.
pub fn ws_path(target: ConsoleTarget, kind: ConsoleKind) -> String {
    let kind = console_kind_str(kind);
    match target {
        ConsoleTarget::Vm(id) => format!("/api/v1/vms/{id}/console/{kind}/ws"),
        ConsoleTarget::External(id) => format!("/api/v1/external-consoles/{id}/console/{kind}/ws"),
        ConsoleTarget::Proxmox(vmid) => format!("/api/v1/proxmox/vms/{vmid}/console/{kind}/ws"),
    }
}

/// A ticket for `caller` to open `target`'s `kind` console. `node` is where the VM runs
/// now; `session`, for Proxmox VMs in accessor mode, is the caller's session, whose PVE
/// ticket opens the console at connect time.
pub async fn mint(
    app: &App,
    caller: &Caller,
    target: ConsoleTarget,
    kind: ConsoleKind,
    node: Option<String>,
    session: Option<String>,
) -> Result<ConsoleTicket, ApiError> {
    let minted = ticket::mint();
    let now = app.clock.now_millis();
    let ttl = app.config.consoles.ticket_ttl.min(ticket::MAX_TTL);
    let expires_at = now + i64::try_from(ttl.as_millis()).unwrap_or(30_000);
    app.store
        .insert_console_ticket(&TicketRecord {
            token_hash: minted.hash,
            user_id: caller.user.id,
            target,
            kind,
            node,
            session,
            created_at: now,
            expires_at,
        })
        .await?;
    Ok(ConsoleTicket {
        ticket: minted.secret,
        ws_path: ws_path(target, kind),
        expires_at: from_millis(expires_at),
    })
}

/// A ticket for VM `id`'s `kind` console, if the caller may open it and it runs.
pub async fn mint_vm_ticket(
    app: &App,
    caller: &Caller,
    id: VmId,
    kind: ConsoleKind,
) -> Result<ConsoleTicket, ApiError> {
    let vm = visible_vm(app, caller, id).await?;
    app.nodes.get_online(&vm.node)?;
    if !matches!(vm.state, VmState::Running | VmState::Paused) {
        return Err(ApiError::conflict(
            None,
            format!(
                "VM {} is {}; start it to open its console",
                vm.name, vm.state
            ),
        ));
    }
    mint(
        app,
        caller,
        ConsoleTarget::Vm(vm.id),
        kind,
        Some(vm.node),
        None,
    )
    .await
}

/// A ticket for an external console, if the caller is an admin or was granted it.
pub async fn mint_external_ticket(
    app: &App,
    caller: &Caller,
    id: ExternalConsoleId,
    kind: ConsoleKind,
) -> Result<ConsoleTicket, ApiError> {
    let console = visible_external(app, caller, id).await?;
    if console.protocol.console_kind() != kind {
        return Err(ApiError::invalid(
            "kind",
            format!(
                "{} is a {} console; ask for kind {}",
                console.name,
                console.protocol.as_str(),
                console_kind_str(console.protocol.console_kind())
            ),
        ));
    }
    mint(
        app,
        caller,
        ConsoleTarget::External(console.id),
        kind,
        None,
        None,
    )
    .await
}

async fn visible_external(
    app: &App,
    caller: &Caller,
    id: ExternalConsoleId,
) -> Result<ExternalConsoleRecord, ApiError> {
    let missing = || {
        ApiError::NotFound(format!(
            "no external console with id {id} is visible to you"
        ))
    };
    let console = app.store.external_console(id).await?.ok_or_else(missing)?;
    if caller.is_admin()
        || app
            .store
            .external_console_granted(id, caller.user.id)
            .await?
    {
        Ok(console)
    } else {
        Err(missing())
    }
}

/// A ticket that passed every check, with what it opens.
#[derive(Debug)]
pub struct Redeemed {
    /// Who.
    pub user: UserRecord,
    /// What.
    pub target: Resolved,
    /// VNC or serial.
    pub kind: ConsoleKind,
    /// The SHA-256 of the ticket that was consumed.
    pub ticket_hash: String,
}

/// The console a ticket opens, as it is now.
#[derive(Debug)]
pub enum Resolved {
    /// A VM.
    Vm(VmRecord),
    /// An external console.
    External(ExternalConsoleRecord),
    /// A Proxmox VM in accessor mode, with a client acting as the user.
    Proxmox(ProxmoxTarget),
}

/// A Proxmox VM a user may open, and their own client to open it with.
#[derive(Debug)]
pub struct ProxmoxTarget {
    vmid: u32,
    node: String,
    name: String,
    client: porthole_proxmox::Client,
}

impl Resolved {
    fn target(&self) -> ConsoleTarget {
        match self {
            Resolved::Vm(vm) => ConsoleTarget::Vm(vm.id),
            Resolved::External(console) => ConsoleTarget::External(console.id),
            Resolved::Proxmox(vm) => ConsoleTarget::Proxmox(vm.vmid),
        }
    }

    fn name(&self) -> String {
        match self {
            Resolved::Vm(vm) => vm.name.to_string(),
            Resolved::External(console) => console.name.clone(),
            Resolved::Proxmox(vm) => vm.name.clone(),
        }
    }
}

/// Why a connection attempt is refused before anything is relayed.
#[derive(Debug)]
pub enum Refusal {
    /// The ticket or the access behind it failed a check.
    Rejected(Rejection),
    /// The console cannot be opened now, e.g. the VM stopped.
    Unavailable(String),
    /// The database failed.
    Internal(ApiError),
}

impl From<StoreError> for Refusal {
    fn from(error: StoreError) -> Self {
        Refusal::Internal(error.into())
    }
}

/// Consumes `presented` and checks it against the console the client asked for.
pub async fn redeem(
    app: &App,
    presented: &str,
    target: ConsoleTarget,
    kind: ConsoleKind,
) -> Result<Redeemed, Refusal> {
    let reject = |reason| Err(Refusal::Rejected(reason));
    let Some(ticket) = app
        .store
        .take_console_ticket(&ticket::hash(presented))
        .await?
    else {
        return reject(Rejection::Unknown);
    };
    if ticket.expires_at <= app.clock.now_millis() {
        return reject(Rejection::Expired);
    }
    if ticket.target != target {
        return reject(Rejection::WrongTarget);
    }
    if ticket.kind != kind {
        return reject(Rejection::WrongKind);
    }
    let Some(user) = app.store.user(ticket.user_id).await? else {
        return reject(Rejection::AccessRevoked);
    };
    let is_admin = user.role == porthole_core::Role::Admin;
    let resolved = match target {
        ConsoleTarget::Vm(id) => {
            let Some(vm) = app.store.vm(id).await? else {
                return reject(Rejection::AccessRevoked);
            };
            if !is_admin && vm.owner_id != user.id {
                return reject(Rejection::AccessRevoked);
            }
            if ticket.node.as_deref() != Some(vm.node.as_str()) {
                return Err(Refusal::Unavailable(format!(
                    "{} moved to another node; open the console again",
                    vm.name
                )));
            }
            if !matches!(vm.state, VmState::Running | VmState::Paused) {
                return Err(Refusal::Unavailable(format!("{} is {}", vm.name, vm.state)));
            }
            Resolved::Vm(vm)
        }
        ConsoleTarget::External(id) => {
            let Some(console) = app.store.external_console(id).await? else {
                return reject(Rejection::AccessRevoked);
            };
            if !is_admin && !app.store.external_console_granted(id, user.id).await? {
                return reject(Rejection::AccessRevoked);
            }
            Resolved::External(console)
        }
        ConsoleTarget::Proxmox(vmid) => {
            // The session whose PVE ticket opens it must still be alive, and PVE must
            // still grant VM.Console on it now.
            let session = ticket.session.as_deref().unwrap_or_default();
            let revoked = |_| Refusal::Rejected(Rejection::AccessRevoked);
            let client = accessor::session_client(app, session)
                .await
                .map_err(revoked)?;
            let vm = accessor::console_target(&client, vmid)
                .await
                .map_err(revoked)?;
            if ticket.node.as_deref() != Some(vm.node.as_str()) {
                return Err(Refusal::Unavailable(format!(
                    "VM {vmid} moved to another node; open the console again"
                )));
            }
            Resolved::Proxmox(ProxmoxTarget {
                vmid,
                name: vm.name.unwrap_or_else(|| format!("VM {vmid}")),
                node: vm.node,
                client,
            })
        }
    };
    Ok(Redeemed {
        user,
        target: resolved,
        kind,
        ticket_hash: ticket.token_hash,
    })
}

/// A console, connected and (for VNC) authenticated.
struct Connected {
    console: Console,
    resize: Option<ResizeFn>,
}

/// Connects to the console, resolving its address from the VM's current state.
async fn connect(app: &App, redeemed: &Redeemed) -> Result<Connected, String> {
    match &redeemed.target {
        Resolved::Vm(vm) => {
            let driver = app.nodes.get(&vm.node).map_err(|e| e.to_string())?;
            // VNC sets the VM's one password for this connection: one handshake at a time.
            let lock = app.consoles.vnc_lock(vm.id);
            let _held = if redeemed.kind == ConsoleKind::Vnc {
                Some(lock.lock().await)
            } else {
                None
            };
            let endpoint = driver
                .console(vm.id, redeemed.kind)
                .await
                .map_err(|e| chain(&e))?;
            let resize = match &endpoint {
                // The console carries sizes in-band.
                ConsoleEndpoint::Piped(piped) => piped.resize.clone().map(in_band_resize),
                _ if redeemed.kind == ConsoleKind::Serial => {
                    let (driver, id) = (Arc::clone(&driver), vm.id);
                    Some(Arc::new(
                        move |cols: u16, rows: u16| -> futures::future::BoxFuture<'static, ()> {
                            let driver = Arc::clone(&driver);
                            Box::pin(async move {
                                if let Err(e) = driver.resize_console(id, cols, rows).await {
                                    tracing::debug!(vm = %id, error = %chain(&e), "console resize not delivered");
                                }
                            })
                        },
                    ) as ResizeFn)
                }
                _ => None,
            };
            let console = open_endpoint(endpoint, redeemed.kind).await?;
            Ok(Connected { console, resize })
        }
        Resolved::Proxmox(vm) => {
            let piped = console::open(&vm.client, &vm.node, vm.vmid, redeemed.kind)
                .await
                .map_err(|e| chain(&e))?;
            let resize = piped.resize.clone().map(in_band_resize);
            let console = open_endpoint(ConsoleEndpoint::Piped(piped), redeemed.kind).await?;
            Ok(Connected { console, resize })
        }
        Resolved::External(console) => {
            let password = match &console.password_sealed {
                Some(sealed) => Some(
                    app.secrets
                        .open_sealed(sealed, &console.id.to_string())
                        .map_err(|e| format!("cannot unseal the console's password: {e}"))?,
                ),
                None => None,
            };
            let endpoint = ConsoleEndpoint::Tcp {
                address: console.address.clone(),
                password,
            };
            Ok(Connected {
                console: open_endpoint(endpoint, redeemed.kind).await?,
                resize: None,
            })
        }
    }
}

/// Resizes sent in-band on a console's own channel (Proxmox termproxy).
fn in_band_resize(sender: tokio::sync::mpsc::Sender<(u16, u16)>) -> ResizeFn {
    Arc::new(
        move |cols: u16, rows: u16| -> futures::future::BoxFuture<'static, ()> {
            let sender = sender.clone();
            Box::pin(async move {
                let _ = sender.send((cols, rows)).await;
            })
        },
    )
}

async fn open_endpoint(endpoint: ConsoleEndpoint, kind: ConsoleKind) -> Result<Console, String> {
    let timed = |what: &str| format!("connecting to the console timed out ({what})");
    match endpoint {
        ConsoleEndpoint::Shared(shared) => Ok(Console::Shared(shared)),
        ConsoleEndpoint::Piped(mut piped) => {
            if kind == ConsoleKind::Vnc {
                authenticate(&mut piped.stream, piped.password.as_deref()).await?;
            }
            Ok(Console::Unix(piped.stream))
        }
        ConsoleEndpoint::Unix { path, password } => {
            let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(&path))
                .await
                .map_err(|_| timed("unix socket"))?
                .map_err(|e| format!("cannot connect to the console: {e}"))?;
            if kind == ConsoleKind::Vnc {
                authenticate(&mut stream, password.as_deref()).await?;
            }
            Ok(Console::Unix(stream))
        }
        ConsoleEndpoint::Tcp { address, password } => {
            let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&address))
                .await
                .map_err(|_| timed(&address))?
                .map_err(|e| format!("cannot connect to {address}: {e}"))?;
            let _ = stream.set_nodelay(true);
            if kind == ConsoleKind::Vnc {
                authenticate(&mut stream, password.as_deref()).await?;
            }
            Ok(Console::Tcp(stream))
        }
    }
}

async fn authenticate<S>(stream: &mut S, password: Option<&str>) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::time::timeout(
        CONNECT_TIMEOUT,
        rfb::authenticate_to_server(stream, password),
    )
    .await
    .map_err(|_| "the VNC server did not finish its handshake in time".to_owned())?
    .map_err(|e| e.to_string())
}

/// How the client authenticates.
#[derive(Debug)]
pub enum Admission {
    /// The ticket was redeemed, and a session slot taken, before the upgrade.
    Redeemed(Box<Redeemed>, SessionSlot<UserId>),
    /// Termproxy: the ticket arrives in the login line, for this console.
    LoginLine(ConsoleTarget, ConsoleKind),
}

/// Runs one session on an upgraded WebSocket until it ends, and records it.
pub async fn run_session<S>(
    app: &App,
    mut ws: S,
    admission: Admission,
    framing: Framing,
    remote: SocketAddr,
) where
    S: Stream<Item = Result<Frame, TransportError>> + Sink<Frame> + Unpin,
    <S as Sink<Frame>>::Error: std::fmt::Display,
{
    use futures::SinkExt;
    let mut early_input = Bytes::new();
    let (redeemed, _slot) = match admission {
        Admission::Redeemed(redeemed, slot) => {
            let redeemed = *redeemed;
            if framing == Framing::Termproxy {
                // termproxy clients send the login line even when the URL carried the ticket;
                // it must name the same user and the same ticket.
                let refused = |reason: &str| Frame::Close(Some((4001, reason.to_owned())));
                match read_termproxy_login(&mut ws, LOGIN_TIMEOUT).await {
                    Ok((username, presented, rest))
                        if username == redeemed.user.username
                            && ticket::hash(&presented) == redeemed.ticket_hash =>
                    {
                        early_input = rest;
                    }
                    Ok(_) => {
                        app.consoles.metrics.reject(Rejection::WrongTarget);
                        let _ = ws
                            .send(refused(
                                "authentication failed: the login line does not match the ticket",
                            ))
                            .await;
                        return;
                    }
                    Err(end) => {
                        let _ = ws
                            .send(refused(&format!("authentication failed: {}", end.as_str())))
                            .await;
                        return;
                    }
                }
            }
            (redeemed, slot)
        }
        Admission::LoginLine(target, kind) => {
            let refused = |code: u16, reason: &str| Frame::Close(Some((code, reason.to_owned())));
            let (username, presented, rest) =
                match read_termproxy_login(&mut ws, LOGIN_TIMEOUT).await {
                    Ok(login) => login,
                    Err(end) => {
                        let _ = ws
                            .send(refused(
                                4001,
                                &format!("authentication failed: {}", end.as_str()),
                            ))
                            .await;
                        return;
                    }
                };
            let redeemed = match redeem(app, &presented, target, kind).await {
                Ok(redeemed) if redeemed.user.username == username => redeemed,
                Ok(_) => {
                    app.consoles.metrics.reject(Rejection::AccessRevoked);
                    let _ = ws
                        .send(refused(
                            4001,
                            "authentication failed: the ticket is for another user",
                        ))
                        .await;
                    return;
                }
                Err(refusal) => {
                    let (code, reason) = refusal_close(app, &refusal);
                    let _ = ws.send(refused(code, &reason)).await;
                    return;
                }
            };
            let Some(slot) = app.consoles.limiter.try_acquire(&redeemed.user.id) else {
                app.consoles.metrics.reject(Rejection::TooManySessions);
                let _ = ws
                    .send(refused(4008, Rejection::TooManySessions.message()))
                    .await;
                return;
            };
            early_input = rest;
            (redeemed, slot)
        }
    };
    if framing == Framing::Termproxy
        && ws
            .send(Frame::Binary(Bytes::from_static(b"OK")))
            .await
            .is_err()
    {
        return;
    }

    let connected = connect(app, &redeemed).await;
    if redeemed.kind == ConsoleKind::Vnc {
        // The client's half of the RFB handshake: security type None, or the reason there
        // is no console. Bytes that follow (ClientInit) belong to the relay.
        let mut io = WsIo::new(&mut ws);
        let greeted = match &connected {
            Ok(_) => rfb::greet_viewer(&mut io)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Err(why) => {
                let _ = rfb::refuse_viewer(&mut io, &format!("console unavailable: {why}")).await;
                Err(why.clone())
            }
        };
        early_input = io.into_unread();
        if let Err(why) = greeted {
            tracing::info!(user = %redeemed.user.username, console = %redeemed.target.name(), error = %why, "VNC handshake failed");
            let _ = ws
                .send(Frame::Close(Some((
                    1011,
                    close_reason(format!("console unavailable: {why}")),
                ))))
                .await;
            return;
        }
    }
    let Connected { console, resize } = match connected {
        Ok(connected) => connected,
        Err(why) => {
            tracing::info!(user = %redeemed.user.username, console = %redeemed.target.name(), error = %why, "console unavailable");
            let _ = ws
                .send(Frame::Close(Some((
                    1011,
                    close_reason(format!("console unavailable: {why}")),
                ))))
                .await;
            return;
        }
    };

    let record = SessionRecord {
        id: uuid::Uuid::new_v4(),
        user_id: redeemed.user.id,
        username: redeemed.user.username.clone(),
        target: redeemed.target.target(),
        target_name: redeemed.target.name(),
        kind: redeemed.kind,
        framing: match framing {
            Framing::Binary => "binary",
            Framing::Termproxy => "termproxy",
        }
        .into(),
        remote_addr: remote.to_string(),
        started_at: app.clock.now_millis(),
        ended_at: None,
        bytes_to_client: 0,
        bytes_from_client: 0,
        end_reason: None,
    };
    if let Err(e) = app.store.insert_console_session(&record).await {
        tracing::error!(error = %chain(&e), "cannot record a console session; refusing it");
        let _ = ws
            .send(Frame::Close(Some((
                1011,
                "cannot record the session".into(),
            ))))
            .await;
        return;
    }
    tracing::info!(
        session = %record.id, user = %record.username, console = %record.target_name,
        kind = console_kind_str(record.kind), from = %record.remote_addr, "console session started"
    );
    let metrics = &app.consoles.metrics;
    let label = KindLabel {
        kind: console_kind_str(redeemed.kind),
    };
    metrics.sessions_total.get_or_create(&label).inc();
    metrics.sessions_open.get_or_create(&label).inc();
    let options = RelayOptions {
        framing,
        policy: app.config.consoles.policy,
        resize,
        shutdown: app.consoles.shutdown.clone(),
        counters: metrics.byte_counters(),
        early_input,
    };
    let report = porthole_gateway::relay::relay(ws, console, options).await;
    metrics.sessions_open.get_or_create(&label).dec();
    let reason = match &report.end {
        End::Protocol(why) | End::Transport(why) => format!("{}: {why}", report.end.as_str()),
        other => other.as_str().to_owned(),
    };
    tracing::info!(
        session = %record.id, sent = report.to_client, received = report.from_client,
        end = %reason, "console session ended"
    );
    if let Err(e) = app
        .store
        .finish_console_session(
            record.id,
            app.clock.now_millis(),
            report.to_client,
            report.from_client,
            &reason,
        )
        .await
    {
        tracing::error!(session = %record.id, error = %chain(&e), "cannot record a console session's end");
    }
}

/// The close code and reason for a refusal after the upgrade, counted in the metrics.
fn refusal_close(app: &App, refusal: &Refusal) -> (u16, String) {
    match refusal {
        Refusal::Rejected(reason) => {
            app.consoles.metrics.reject(*reason);
            (4001, reason.message().to_owned())
        }
        Refusal::Unavailable(why) => (1011, format!("console unavailable: {why}")),
        Refusal::Internal(_) => (1011, "internal error".to_owned()),
    }
}

/// Checks and stores a new external console; the password is sealed to its row.
pub async fn create_external(
    app: &App,
    request: CreateExternalConsoleRequest,
) -> Result<ExternalConsole, ApiError> {
    validate_image_name(&request.name)?;
    validate_address(&request.address)?;
    if let Some(password) = &request.password
        && (password.is_empty() || password.len() > 256 || password.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(
            "password",
            "must be 1 to 256 printable characters",
        ));
    }
    if request.protocol == WireProtocol::Tcp && request.password.is_some() {
        return Err(ApiError::invalid(
            "password",
            "only vnc consoles take a password",
        ));
    }
    let id = ExternalConsoleId::random();
    let record = ExternalConsoleRecord {
        id,
        name: request.name,
        protocol: match request.protocol {
            WireProtocol::Vnc => ExternalProtocol::Vnc,
            WireProtocol::Tcp => ExternalProtocol::Tcp,
        },
        address: request.address,
        password_sealed: request
            .password
            .map(|p| app.secrets.seal(&p, &id.to_string())),
        created_at: app.clock.now_millis(),
    };
    app.store.insert_external_console(&record).await?;
    Ok(external_to_wire(&record))
}

/// `host:port`, with a port.
fn validate_address(address: &str) -> Result<(), ApiError> {
    let invalid = || {
        ApiError::invalid(
            "address",
            "must be HOST:PORT, e.g. 10.0.0.5:5900 or bmc.lab:2001",
        )
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(invalid)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| invalid())?;
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:_".contains(c));
    if port == 0 || !host_ok {
        return Err(invalid());
    }
    Ok(())
}

/// An external console as the API shows it.
pub fn external_to_wire(record: &ExternalConsoleRecord) -> ExternalConsole {
    ExternalConsole {
        id: record.id,
        name: record.name.clone(),
        protocol: match record.protocol {
            ExternalProtocol::Vnc => WireProtocol::Vnc,
            ExternalProtocol::Tcp => WireProtocol::Tcp,
        },
        address: record.address.clone(),
        has_password: record.password_sealed.is_some(),
        created_at: from_millis(record.created_at),
    }
}

/// A session record as the API shows it.
pub fn session_to_wire(record: &SessionRecord) -> ConsoleSession {
    let (target_kind, target_id) = match record.target {
        ConsoleTarget::Vm(id) => ("vm", id.to_string()),
        ConsoleTarget::External(id) => ("external", id.to_string()),
        ConsoleTarget::Proxmox(vmid) => ("proxmox", vmid.to_string()),
    };
    ConsoleSession {
        id: record.id,
        username: record.username.clone(),
        target_kind: target_kind.into(),
        target_id,
        target_name: record.target_name.clone(),
        kind: record.kind,
        framing: record.framing.clone(),
        remote_addr: record.remote_addr.clone(),
        started_at: from_millis(record.started_at),
        ended_at: record.ended_at.map(from_millis),
        bytes_to_client: record.bytes_to_client,
        bytes_from_client: record.bytes_from_client,
        end_reason: record.end_reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_need_a_host_and_a_port() {
        for good in [
            "10.0.0.5:5900",
            "bmc.lab:2001",
            "[fe80::1]:23",
            "localhost:1",
        ] {
            assert!(validate_address(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "host",
            "host:",
            ":22",
            "host:0",
            "host:70000",
            "a b:22",
            "host:22/x",
        ] {
            assert!(validate_address(bad).is_err(), "{bad}");
        }
    }
}
