//! Opening a VM's console through PVE: `vncproxy` or `termproxy`, then the `vncwebsocket`
//! upgrade, relayed into a local socket pair so the gateway treats it like any stream.
//!
//! - VNC: `vncproxy` with `websocket=1` and `generate-password=1`. The far end is an RFB
//!   server asking for VNC authentication with the generated password; the gateway answers
//!   it (the password never leaves porthole) and greets the viewer with security None.
//! - Terminal: `termproxy`, then the login line `user:ticket\n`, which PVE answers with `OK`.
//!   From then on input goes out in termproxy framing (`0:LEN:DATA`, `1:COLS:ROWS:`,
//!   keepalive `2`) and output comes back raw.
//!
//! Proxmox closes a proxy's listener 10 s after making it and accepts its ticket for 40 s,
//! so the upgrade follows the proxy call at once, and the login at once after that.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use porthole_core::driver::{ConsoleKind, PipedConsole};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::auth::Secret;
use crate::client::{Client, WebSocketTarget};
use crate::error::{Error, Result};

/// How long the upgrade and the terminal login may take together; within PVE's 10 s
/// accept window.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(8);
/// How often an idle terminal sends PVE a keepalive.
const KEEPALIVE: Duration = Duration::from_secs(30);
/// The largest piece of console output or input relayed at once.
const CHUNK: usize = 64 * 1024;

type Upstream = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens VM `vmid`'s `kind` console on `node`: the screen through `vncproxy`, the first
/// serial port through `termproxy`.
pub async fn open(
    client: &Client,
    node: &str,
    vmid: u32,
    kind: ConsoleKind,
) -> Result<PipedConsole> {
    match kind {
        ConsoleKind::Vnc => open_vnc(client, node, vmid).await,
        ConsoleKind::Serial => open_terminal(client, node, vmid).await,
    }
}

/// Opens VM `vmid`'s graphical console on `node`.
async fn open_vnc(client: &Client, node: &str, vmid: u32) -> Result<PipedConsole> {
    let proxy = client.vnc_proxy(node, vmid, true).await?;
    let target = client
        .vnc_websocket(node, vmid, proxy.port, &proxy.ticket)
        .await?;
    let upstream = tokio::time::timeout(CONNECT_TIMEOUT, connect(client, target))
        .await
        .map_err(|_| timed_out("connect"))??;
    // Without a generated password, PVE asks for the ticket itself.
    let password = proxy.password.unwrap_or(proxy.ticket);
    let (ours, theirs) = pair()?;
    tokio::spawn(pump(upstream, theirs, Framing::Raw, None));
    Ok(PipedConsole {
        stream: ours,
        password: Some(password.expose().to_owned()),
        resize: None,
    })
}

/// Opens VM `vmid`'s first serial port on `node` as a terminal.
async fn open_terminal(client: &Client, node: &str, vmid: u32) -> Result<PipedConsole> {
    let proxy = client.term_proxy(node, vmid, Some("serial0")).await?;
    let target = client
        .vnc_websocket(node, vmid, proxy.port, &proxy.ticket)
        .await?;
    let upstream = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let mut upstream = connect(client, target).await?;
        login(&mut upstream, &proxy.login_line()).await?;
        Ok::<_, Error>(upstream)
    })
    .await
    .map_err(|_| timed_out("login"))??;
    let (ours, theirs) = pair()?;
    let (resize, resizes) = mpsc::channel(8);
    tokio::spawn(pump(upstream, theirs, Framing::Termproxy, Some(resizes)));
    Ok(PipedConsole {
        stream: ours,
        password: None,
        resize: Some(resize),
    })
}

fn timed_out(step: &'static str) -> Error {
    Error::Console {
        step,
        message: format!(
            "Proxmox VE did not answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        ),
    }
}

fn pair() -> Result<(UnixStream, UnixStream)> {
    UnixStream::pair().map_err(|e| Error::Console {
        step: "connect",
        message: format!("cannot make a socket pair: {e}"),
    })
}

/// Makes the `vncwebsocket` upgrade with the client's own TLS trust and credentials.
async fn connect(client: &Client, target: WebSocketTarget) -> Result<Upstream> {
    let failed = |message: String| Error::Console {
        step: "connect",
        message,
    };
    let mut request = target
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| failed(e.to_string()))?;
    for (name, value) in &target.headers {
        let value = value
            .expose()
            .parse()
            .map_err(|_| failed(format!("header {name} is not valid")))?;
        request.headers_mut().insert(name.clone(), value);
    }
    // PVE's websocket speaks the `binary` subprotocol.
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("binary"));
    let connector = Connector::Rustls(client.tls_config());
    let (upstream, _) =
        tokio_tungstenite::connect_async_tls_with_config(request, None, true, Some(connector))
            .await
            .map_err(|e| {
                // The URL carries the one-time ticket: name the host only.
                let host = target.url.host_str().unwrap_or("?").to_owned();
                failed(format!("vncwebsocket on {host}: {e}"))
            })?;
    Ok(upstream)
}

/// Sends the termproxy login line and waits for `OK`.
async fn login(upstream: &mut Upstream, line: &Secret) -> Result<()> {
    let refused = |message: &str| Error::Console {
        step: "login",
        message: message.to_owned(),
    };
    upstream
        .send(Message::binary(line.expose().as_bytes().to_vec()))
        .await
        .map_err(|e| refused(&e.to_string()))?;
    while let Some(message) = upstream.next().await {
        match message.map_err(|e| refused(&e.to_string()))? {
            Message::Binary(data) if data.starts_with(b"OK") => return Ok(()),
            Message::Text(text) if text.starts_with("OK") => return Ok(()),
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => {}
            _ => return Err(refused("Proxmox VE answered the login with something else")),
        }
    }
    Err(refused("Proxmox VE refused the terminal ticket"))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Bytes go out as they are (RFB).
    Raw,
    /// Input is framed as termproxy messages.
    Termproxy,
}

/// Relays between the upstream WebSocket and the gateway's socket until either ends.
async fn pump(
    upstream: Upstream,
    mut local: UnixStream,
    framing: Framing,
    mut resizes: Option<mpsc::Receiver<(u16, u16)>>,
) {
    let (mut tx, mut rx) = upstream.split();
    let mut buf = vec![0u8; CHUNK];
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.tick().await;
    loop {
        let outgoing = tokio::select! {
            read = local.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => match framing {
                    Framing::Raw => buf[..n].to_vec(),
                    Framing::Termproxy => input_message(&buf[..n]),
                },
            },
            message = rx.next() => match message {
                Some(Ok(Message::Binary(data))) => {
                    if local.write_all(&data).await.is_err() { break; }
                    continue;
                }
                Some(Ok(Message::Text(text))) => {
                    if local.write_all(text.as_bytes()).await.is_err() { break; }
                    continue;
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => continue,
            },
            Some((cols, rows)) = async {
                match resizes.as_mut() { Some(r) => r.recv().await, None => None }
            } => resize_message(cols, rows),
            _ = keepalive.tick(), if framing == Framing::Termproxy => b"2".to_vec(),
        };
        if tx.send(Message::binary(outgoing)).await.is_err() {
            break;
        }
    }
    let _ = tx.send(Message::Close(None)).await;
}

/// Termproxy input: `0:LEN:DATA`.
pub fn input_message(data: &[u8]) -> Vec<u8> {
    let mut out = format!("0:{}:", data.len()).into_bytes();
    out.extend_from_slice(data);
    out
}

/// Termproxy resize: `1:COLS:ROWS:`.
pub fn resize_message(cols: u16, rows: u16) -> Vec<u8> {
    format!("1:{cols}:{rows}:").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn termproxy_messages_are_framed_as_pve_expects() {
        assert_eq!(input_message(b"ls\r"), b"0:3:ls\r");
        assert_eq!(input_message(b""), b"0:0:");
        assert_eq!(resize_message(80, 24), b"1:80:24:");
    }
}
