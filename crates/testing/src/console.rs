//! Console clients for tests: WebSocket connections through the gateway, a raw RFB viewer,
//! and a termproxy client written from the protocol description.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use porthole_api::ConsoleTicket;
use porthole_api::client::Client;
use porthole_core::{ConsoleKind, VmId};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens the console WebSocket for `ticket`, optionally with an `Origin`. A refused upgrade
/// is `Err(HTTP status)`.
pub async fn open(
    client: &Client,
    ticket: &ConsoleTicket,
    termproxy: bool,
    origin: Option<&str>,
) -> Result<Socket, u16> {
    open_url(client.console_url(ticket, termproxy).as_str(), origin).await
}

/// Mints a ticket for VM `vm`'s `kind` console as `client` and opens it, which must work.
pub async fn open_vm_console(client: &Client, vm: VmId, kind: ConsoleKind) -> Socket {
    let ticket = client.vm_console_ticket(vm, kind).await.unwrap();
    open(client, &ticket, false, None).await.unwrap()
}

/// Opens a console WebSocket URL. A refused upgrade is `Err(HTTP status)`.
pub async fn open_url(url: &str, origin: Option<&str>) -> Result<Socket, u16> {
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "binary".parse().unwrap());
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, response)) => {
            assert_eq!(response.headers()["sec-websocket-protocol"], "binary");
            Ok(socket)
        }
        Err(Error::Http(response)) => Err(response.status().as_u16()),
        Err(other) => panic!("connecting failed: {other}"),
    }
}

/// What the server sent until it closed or `timeout` passed.
#[derive(Debug)]
pub struct Received {
    pub bytes: Vec<u8>,
    pub close: Option<(u16, String)>,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Reads binary data until `done` says so, the server closes, or `timeout` passes.
pub async fn read_until(
    socket: &mut Socket,
    timeout: Duration,
    mut done: impl FnMut(&[u8]) -> bool,
) -> Received {
    let mut received = Received {
        bytes: Vec::new(),
        close: None,
    };
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(&received.bytes) {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(Ok(Message::Binary(data)))) => received.bytes.extend_from_slice(&data),
            Ok(Some(Ok(Message::Close(frame)))) => {
                received.close =
                    frame.map(|CloseFrame { code, reason }| (u16::from(code), reason.to_string()));
                break;
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => panic!("console stream failed: {e}"),
        }
    }
    received
}

/// Reads until `needle` appears.
pub async fn read_until_text(socket: &mut Socket, needle: &str, timeout: Duration) -> Received {
    let needle = needle.as_bytes().to_vec();
    let received = read_until(socket, timeout, |bytes| {
        bytes.windows(needle.len()).any(|w| w == needle)
    })
    .await;
    assert!(
        received.bytes.windows(needle.len()).any(|w| w == needle),
        "{:?} never arrived; got {:?} (close {:?})",
        String::from_utf8_lossy(&needle),
        received.text(),
        received.close
    );
    received
}

/// Logs in with termproxy's `USER:TICKET\n` and expects `OK`.
pub async fn termproxy_login(socket: &mut Socket, user: &str, ticket: &str) {
    socket
        .send(Message::text(format!("{user}:{ticket}\n")))
        .await
        .unwrap();
    let reply = read_until(socket, Duration::from_secs(10), |b| b.len() >= 2).await;
    assert_eq!(
        &reply.bytes[..2.min(reply.bytes.len())],
        b"OK",
        "close: {:?}",
        reply.close
    );
}

/// A termproxy input message.
pub fn termproxy_input(text: &str) -> Message {
    Message::binary(format!("0:{}:{text}", text.len()).into_bytes())
}

/// A termproxy resize message.
pub fn termproxy_resize(cols: u16, rows: u16) -> Message {
    Message::binary(format!("1:{cols}:{rows}:").into_bytes())
}

/// The RFB ServerInit a viewer receives: width, height, desktop name.
#[derive(Debug, PartialEq, Eq)]
pub struct ServerInit {
    pub width: u16,
    pub height: u16,
    pub name: String,
}

/// Plays an RFB 3.8 viewer over the console WebSocket: expects to be offered only security
/// type None, then reads the ServerInit.
pub async fn rfb_viewer(socket: &mut Socket) -> ServerInit {
    let mut buffer = Vec::new();
    let mut need = async |socket: &mut Socket, n: usize| -> Vec<u8> {
        while buffer.len() < n {
            match tokio::time::timeout(Duration::from_secs(20), socket.next()).await {
                Ok(Some(Ok(Message::Binary(data)))) => buffer.extend_from_slice(&data),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    panic!("closed during the RFB handshake: {frame:?}")
                }
                Ok(Some(Ok(_))) => {}
                other => panic!("RFB handshake stalled: {other:?}"),
            }
        }
        buffer.drain(..n).collect()
    };
    assert_eq!(need(socket, 12).await, b"RFB 003.008\n");
    socket
        .send(Message::binary(b"RFB 003.008\n".to_vec()))
        .await
        .unwrap();
    assert_eq!(
        need(socket, 2).await,
        [1, 1],
        "offered security types other than None"
    );
    socket.send(Message::binary(vec![1])).await.unwrap();
    assert_eq!(need(socket, 4).await, [0, 0, 0, 0], "security result");
    socket.send(Message::binary(vec![1])).await.unwrap();
    let head = need(socket, 24).await;
    let width = u16::from_be_bytes([head[0], head[1]]);
    let height = u16::from_be_bytes([head[2], head[3]]);
    let name_len = u32::from_be_bytes([head[20], head[21], head[22], head[23]]) as usize;
    let name = String::from_utf8(need(socket, name_len).await).unwrap();
    ServerInit {
        width,
        height,
        name,
    }
}
