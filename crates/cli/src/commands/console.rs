//! `porthole console` and `porthole vnc`: consoles in the terminal and in native viewers.
//!
//! Both ask the plane for a single-use ticket and open the console's WebSocket through the
//! gateway, exactly as the browser does. `console` speaks termproxy framing, so the
//! terminal's size travels with it; `vnc` relays raw RFB between a local TCP port and the
//! gateway, which has already authenticated to the VNC server and offers the viewer
//! security type None.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use crossterm::terminal;
use futures::{SinkExt, StreamExt};
use porthole_api::ConsoleTicket;
use porthole_core::ConsoleKind;
use porthole_gateway::termproxy::{encode_input, encode_resize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::Session;
use crate::cli::{ConsoleArgs, VncArgs};

/// The byte Ctrl-] sends.
const DETACH: u8 = 0x1d;
/// How often the terminal client pings (termproxy `2`).
const KEEPALIVE: Duration = Duration::from_secs(30);

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A ticket and a display name for a VM's or external console.
async fn ticket(
    session: &Session,
    target: &str,
    external: bool,
    kind: ConsoleKind,
) -> anyhow::Result<(ConsoleTicket, String)> {
    let client = &session.client;
    if external {
        let console = client.find_external_console(target).await?;
        Ok((
            client.external_console_ticket(console.id, kind).await?,
            console.name,
        ))
    } else {
        let vm = client.find_vm(target).await?;
        Ok((client.vm_console_ticket(vm.id, kind).await?, vm.name))
    }
}

async fn open_socket(
    session: &Session,
    ticket: &ConsoleTicket,
    termproxy: bool,
) -> anyhow::Result<Socket> {
    let url = session.client.console_url(ticket, termproxy);
    let mut request = url.as_str().into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "binary".parse().expect("valid header"),
    );
    match tokio_tungstenite::connect_async_with_config(request, None, true).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let message = serde_json::from_str::<porthole_api::ErrorBody>(&body)
                .map(|b| b.error.message)
                .unwrap_or_else(|_| format!("HTTP {}", response.status()));
            bail!("the console refused the connection: {message}")
        }
        Err(e) => Err(e).context("cannot open the console's WebSocket"),
    }
}

/// Puts the terminal in raw mode until dropped.
struct RawMode;

impl RawMode {
    fn enable() -> anyhow::Result<Self> {
        terminal::enable_raw_mode()
            .context("cannot put the terminal in raw mode (is stdin a terminal?)")?;
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = terminal::disable_raw_mode();
    }
}

/// `porthole console TARGET`.
pub async fn serial(session: &Session, args: &ConsoleArgs) -> anyhow::Result<()> {
    let me = session.client.me().await?;
    let (ticket, name) = ticket(session, &args.target, args.external, ConsoleKind::Serial).await?;
    let mut socket = open_socket(session, &ticket, true).await?;
    socket
        .send(Message::binary(
            format!("{}:{}\n", me.username, ticket.ticket).into_bytes(),
        ))
        .await?;
    match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
        Ok(Some(Ok(message))) if message.clone().into_data().as_ref() == b"OK" => {}
        Ok(Some(Ok(Message::Close(Some(frame))))) => {
            bail!("the console refused the login: {}", frame.reason)
        }
        _ => bail!("the console did not accept the login"),
    }
    eprintln!("Connected to {name}'s serial console. Detach with Ctrl-].\r");
    let raw = RawMode::enable()?;
    let result = attached(socket).await;
    drop(raw);
    match result {
        Ok(Ending::Detached) => eprintln!("\r\nDetached from {name}."),
        Ok(Ending::Closed(reason)) => eprintln!("\r\nThe console closed: {reason}"),
        Err(e) => return Err(e),
    }
    Ok(())
}

enum Ending {
    Detached,
    Closed(String),
}

async fn attached(socket: Socket) -> anyhow::Result<Ending> {
    let (mut sink, mut stream) = socket.split();
    let size = |(cols, rows): (u16, u16)| Message::binary(encode_resize(cols.max(1), rows.max(1)));
    if let Ok(current) = terminal::size() {
        sink.send(size(current)).await?;
    }
    let mut resized = signal(SignalKind::window_change())?;
    let mut keepalive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    let mut stdin = tokio::io::stdin();
    let mut stdout = std::io::stdout();
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            read = stdin.read(&mut buf) => {
                let n = read.context("reading the terminal")?;
                if n == 0 {
                    return Ok(Ending::Detached);
                }
                let typed = &buf[..n];
                let (before, detach) = match typed.iter().position(|b| *b == DETACH) {
                    Some(at) => (&typed[..at], true),
                    None => (typed, false),
                };
                if !before.is_empty() {
                    sink.send(Message::binary(encode_input(before))).await?;
                }
                if detach {
                    let _ = sink.close().await;
                    return Ok(Ending::Detached);
                }
            }
            message = stream.next() => match message {
                Some(Ok(Message::Binary(data))) => {
                    stdout.write_all(&data)?;
                    stdout.flush()?;
                }
                Some(Ok(Message::Text(text))) => {
                    stdout.write_all(text.as_bytes())?;
                    stdout.flush()?;
                }
                Some(Ok(Message::Close(frame))) => {
                    let reason = frame.map_or_else(|| "no reason given".to_owned(), |f| {
                        if f.code == CloseCode::Normal { f.reason.to_string() } else { format!("{} ({})", f.reason, u16::from(f.code)) }
                    });
                    return Ok(Ending::Closed(reason));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e).context("the console connection failed"),
                None => return Ok(Ending::Closed("the connection ended".into())),
            },
            _ = resized.recv() => {
                if let Ok(current) = terminal::size() {
                    sink.send(size(current)).await?;
                }
            }
            _ = keepalive.tick() => sink.send(Message::binary(b"2".to_vec())).await?,
        }
    }
}

/// `porthole vnc TARGET --listen ADDR [--viewer CMD]`.
pub async fn vnc(session: &Session, args: &VncArgs) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() && !args.allow_remote {
        bail!(
            "{} is reachable from other hosts and the port has no password; use a loopback address, \
             or --allow-remote if that is really what you want",
            args.listen
        );
    }
    // Fail early if the console cannot be opened at all.
    let (ticket, name) = ticket(session, &args.target, args.external, ConsoleKind::Vnc).await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    eprintln!("VNC for {name} on {address}: point a VNC viewer at it (no password). Ctrl-C stops.");
    let mut first = Some(ticket);
    let mut viewer = match &args.viewer {
        Some(command) => Some(start_viewer(command, &address.to_string())?),
        None => None,
    };
    loop {
        let viewer_exit = async {
            match viewer.as_mut() {
                Some(child) => child.wait().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (connection, peer) = accepted?;
                let ticket = match first.take() {
                    Some(ticket) => ticket,
                    None => match ticket_again(session, args).await {
                        Ok(ticket) => ticket,
                        Err(e) => {
                            eprintln!("porthole: cannot open the console for {peer}: {e:#}");
                            continue;
                        }
                    },
                };
                match open_socket(session, &ticket, false).await {
                    Ok(socket) => {
                        tokio::spawn(async move {
                            if let Err(e) = relay_tcp(connection, socket).await {
                                eprintln!("porthole: viewer {peer}: {e:#}");
                            }
                        });
                    }
                    Err(e) => eprintln!("porthole: cannot open the console for {peer}: {e:#}"),
                }
            }
            status = viewer_exit => {
                let status = status?;
                eprintln!("The viewer exited ({status}).");
                return Ok(());
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn ticket_again(session: &Session, args: &VncArgs) -> anyhow::Result<ConsoleTicket> {
    Ok(
        ticket(session, &args.target, args.external, ConsoleKind::Vnc)
            .await?
            .0,
    )
}

fn start_viewer(command: &str, address: &str) -> anyhow::Result<tokio::process::Child> {
    let command = if command.contains("{}") {
        command.replace("{}", address)
    } else {
        format!("{command} {address}")
    };
    let mut words = command.split_whitespace();
    let program = words.next().context("--viewer is empty")?;
    tokio::process::Command::new(program)
        .args(words)
        .spawn()
        .with_context(|| format!("cannot start the viewer {program:?}"))
}

/// Relays raw bytes between a local viewer and the console's WebSocket.
async fn relay_tcp(connection: TcpStream, socket: Socket) -> anyhow::Result<()> {
    let _ = connection.set_nodelay(true);
    let (mut tcp_read, mut tcp_write) = connection.into_split();
    let (mut sink, mut stream) = socket.split();
    let upstream = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = tcp_read.read(&mut buf).await?;
            if n == 0 {
                let _ = sink.close().await;
                return anyhow::Ok(());
            }
            sink.send(Message::binary(buf[..n].to_vec())).await?;
        }
    };
    let downstream = async {
        while let Some(message) = stream.next().await {
            match message? {
                Message::Binary(data) => tcp_write.write_all(&data).await?,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = tcp_write.shutdown().await;
        anyhow::Ok(())
    };
    tokio::select! {
        result = upstream => result,
        result = downstream => result,
    }
}
