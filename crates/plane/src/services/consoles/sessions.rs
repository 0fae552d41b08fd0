//! Console sessions: admitting a redeemed ticket within the user's session cap, connecting
//! to the console (the VNC handshake happens here, so the viewer never sees a hypervisor
//! secret), relaying through the gateway, and the audit record of every session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Sink, Stream};
use porthole_api::ConsoleSession;
use porthole_core::driver::ConsoleEndpoint;
use porthole_core::{ConsoleKind, UserId};
use porthole_gateway::metrics::KindLabel;
use porthole_gateway::relay::{ResizeFn, close_reason, read_termproxy_login};
use porthole_gateway::{
    Console, End, Frame, Framing, Rejection, RelayOptions, SessionSlot, TransportError, WsIo, rfb,
    ticket,
};
use porthole_proxmox::console;
use porthole_store::consoles::{ConsoleTarget, SessionRecord, console_kind_str};
use tokio::net::{TcpStream, UnixStream};

use super::tickets::{Redeemed, Refusal, Resolved, redeem};
use crate::app::App;
use crate::clock::from_millis;
use crate::error::{ApiError, chain};
use crate::services::caller::Caller;

/// How long connecting to a console may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a termproxy client has to send its login line.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How many session records the audit list shows.
const RECENT_SESSIONS: u32 = 200;

/// Counts a refused connection in the metrics, logs it, and turns it into the refusal.
pub fn rejected(app: &App, reason: Rejection, remote: SocketAddr) -> ApiError {
    app.consoles.metrics.reject(reason);
    tracing::info!(reason = reason.as_str(), from = %remote, "console connection refused");
    ApiError::ConsoleRejected(reason)
}

/// Admits a connection to `target`'s `kind` console before the WebSocket upgrade: redeems
/// `ticket` and takes a slot in the user's session cap. Termproxy clients may send the
/// ticket in their login line instead, after the upgrade.
pub async fn admit(
    app: &App,
    ticket: Option<&str>,
    target: ConsoleTarget,
    kind: ConsoleKind,
    framing: Framing,
    remote: SocketAddr,
) -> Result<Admission, ApiError> {
    match ticket.filter(|t| !t.is_empty()) {
        Some(ticket) => match redeem(app, ticket, target, kind).await {
            Ok(redeemed) => match app.consoles.limiter.try_acquire(&redeemed.user.id) {
                Some(slot) => Ok(Admission::Redeemed(Box::new(redeemed), slot)),
                None => Err(rejected(app, Rejection::TooManySessions, remote)),
            },
            Err(Refusal::Rejected(reason)) => Err(rejected(app, reason, remote)),
            Err(Refusal::Unavailable(why)) => Err(ApiError::conflict(
                None,
                format!("console unavailable: {why}"),
            )),
            Err(Refusal::Internal(e)) => Err(e),
        },
        None if framing == Framing::Termproxy => Ok(Admission::LoginLine(target, kind)),
        None => Err(rejected(app, Rejection::Missing, remote)),
    }
}

/// The records of recent console sessions (admins).
pub async fn recent(app: &App, caller: &Caller) -> Result<Vec<ConsoleSession>, ApiError> {
    caller.require_admin()?;
    Ok(app
        .store
        .console_sessions(RECENT_SESSIONS)
        .await?
        .iter()
        .map(session_to_wire)
        .collect())
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
            close_unavailable(&mut ws, &why).await;
            return;
        }
    }
    let Connected { console, resize } = match connected {
        Ok(connected) => connected,
        Err(why) => {
            tracing::info!(user = %redeemed.user.username, console = %redeemed.target.name(), error = %why, "console unavailable");
            close_unavailable(&mut ws, &why).await;
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

/// Closes the client's WebSocket with 1011: the console cannot be reached, and why.
async fn close_unavailable<S>(ws: &mut S, why: &str)
where
    S: Sink<Frame> + Unpin,
{
    use futures::SinkExt;
    let reason = close_reason(format!("console unavailable: {why}"));
    let _ = ws.send(Frame::Close(Some((1011, reason)))).await;
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
