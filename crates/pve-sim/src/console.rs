//! Consoles: the `vncwebsocket` upgrade and what runs over it.
//!
//! A listener made by vncproxy/termproxy accepts one connection within 10 s
//! ([`CONSOLE_ACCEPT_WINDOW`]); the `vncticket` must be the one it handed out.
//! - VNC: the simulator is the RFB server towards the client and offers only VNC
//!   authentication (type 2) with the listener's password (the generated one, else the
//!   console ticket). After the client passes, it connects to the backend's passwordless VNC
//!   as a client (security None) and relays everything from ClientInit on.
//! - Terminal: the first message must be `user:ticket\n`; the answer is `OK`. Then the
//!   client speaks termproxy framing (`0:LEN:DATA` input, `1:COLS:ROWS:` resize, `2` ping)
//!   and serial output comes back unframed.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use des::Des;
use des::cipher::{BlockCipherEncrypt, KeyInit};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::authenticate;
use crate::backend::ConsoleStream;
use crate::error::ApiError;
use crate::state::{CONSOLE_ACCEPT_WINDOW, ConsoleKind, ConsoleListener, Sim};

/// Query of `GET .../vncwebsocket`.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    port: String,
    vncticket: String,
}

/// Closes a listener's task with `connection timed out` if nobody connected in time.
pub fn arm_accept_window(sim: &Arc<Sim>, upid: &str, port: u16) {
    let sim = Arc::clone(sim);
    let upid = upid.to_owned();
    tokio::spawn(async move {
        let secs = u64::try_from(CONSOLE_ACCEPT_WINDOW).unwrap_or(10);
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let expired = {
            let mut st = sim.lock();
            let before = st.consoles.len();
            st.consoles.retain(|c| !(c.port == port && c.upid == upid));
            st.consoles.len() != before
        };
        if expired {
            sim.finish_task(&upid, "connection timed out");
        }
    });
}

/// Takes the listener a websocket request names, checking ticket and window.
fn take_listener(
    sim: &Sim,
    authid: &str,
    vmid: u32,
    q: &WsQuery,
) -> Result<ConsoleListener, ApiError> {
    let port: u16 = q.port.parse().map_err(|_| {
        ApiError::param(
            "port",
            format!("type check ('integer') failed - got '{}'", q.port),
        )
    })?;
    let now = sim.clock.now();
    let mut st = sim.lock();
    if !st
        .access
        .verify_vnc_ticket(&q.vncticket, authid, &format!("/vms/{vmid}"), now)
    {
        return Err(ApiError::unauthorized(
            "permission denied - invalid vnc ticket",
        ));
    }
    let idx = st
        .consoles
        .iter()
        .position(|c| c.port == port && c.vmid == vmid && c.ticket == q.vncticket)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("connection to port {port} refused"),
            )
        })?;
    let listener = st.consoles.remove(idx);
    if now - listener.created > CONSOLE_ACCEPT_WINDOW {
        drop(st);
        sim.finish_task(&listener.upid, "connection timed out");
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "connection to port {port} refused (accept window of {CONSOLE_ACCEPT_WINDOW} s passed)"
            ),
        ));
    }
    Ok(listener)
}

/// `GET /api2/json/nodes/{node}/qemu/{vmid}/vncwebsocket?port=&vncticket=`.
pub async fn vncwebsocket(
    AxState(sim): AxState<Arc<Sim>>,
    Path((node, vmid)): Path<(String, String)>,
    Query(q): Query<WsQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let result = (|| {
        let who = authenticate(&sim, &Method::GET, &headers)?;
        let vmid: u32 = vmid
            .parse()
            .map_err(|_| ApiError::param("vmid", "type check ('integer') failed"))?;
        let pool = {
            let st = sim.lock();
            let vm = st
                .vms
                .get(&vmid)
                .filter(|v| v.node == node)
                .ok_or_else(|| {
                    ApiError::internal(format!(
                        "Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"
                    ))
                })?;
            vm.pool.clone()
        };
        if !sim
            .lock()
            .access
            .has(&who, &format!("/vms/{vmid}"), pool.as_deref(), "VM.Console")
        {
            return Err(ApiError::forbidden(&format!("/vms/{vmid}"), "VM.Console"));
        }
        let listener = take_listener(&sim, &who.authid(), vmid, &q)?;
        Ok(listener)
    })();
    match result {
        Ok(listener) => ws
            .protocols(["binary"])
            .on_upgrade(move |socket| async move {
                let upid = listener.upid.clone();
                let outcome = match listener.kind.clone() {
                    ConsoleKind::Vnc { password } => {
                        vnc_session(&sim, socket, listener.vmid, &password).await
                    }
                    ConsoleKind::Term => term_session(&sim, socket, &listener).await,
                };
                sim.finish_task(&upid, outcome.err().unwrap_or_else(|| "OK".to_owned()));
            }),
        Err(e) => e.into_response(),
    }
}

/// The RFB VNC-authentication response: the challenge DES-encrypted under the password
/// (first 8 bytes, zero-padded, each byte's bits mirrored, as VNC does).
pub fn vnc_auth_response(password: &str, challenge: &[u8; 16]) -> [u8; 16] {
    let mut key = [0u8; 8];
    for (k, b) in key.iter_mut().zip(password.bytes()) {
        *k = b.reverse_bits();
    }
    let mut out = *challenge;
    let cipher = Des::new(&key.into());
    for block in out.chunks_exact_mut(8) {
        let mut b = [0u8; 8];
        b.copy_from_slice(block);
        let mut arr = b.into();
        cipher.encrypt_block(&mut arr);
        block.copy_from_slice(&arr);
    }
    out
}

/// Bytes arriving from the websocket, buffered so that RFB reads of any size work.
struct WsReader {
    rx: futures::stream::SplitStream<WebSocket>,
    buf: Vec<u8>,
}

impl WsReader {
    /// Waits for the next websocket payload; `None` at close.
    async fn fill(&mut self) -> Option<()> {
        loop {
            match self.rx.next().await? {
                Ok(Message::Binary(b)) => {
                    self.buf.extend_from_slice(&b);
                    return Some(());
                }
                Ok(Message::Text(t)) => {
                    self.buf.extend_from_slice(t.as_bytes());
                    return Some(());
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    async fn read_exact(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            self.fill()
                .await
                .ok_or("client closed during the RFB handshake")?;
        }
        Ok(self.buf.drain(..n).collect())
    }
}

type WsSink = futures::stream::SplitSink<WebSocket, Message>;

async fn send(tx: &mut WsSink, bytes: &[u8]) -> Result<(), String> {
    tx.send(Message::Binary(bytes.to_vec().into()))
        .await
        .map_err(|e| e.to_string())
}

/// Connects to the backend's VNC server as a client with security None; returns the
/// stream positioned before ClientInit.
async fn backend_vnc(mut io: ConsoleStream) -> Result<ConsoleStream, String> {
    let e = |e: std::io::Error| format!("backend VNC: {e}");
    let mut version = [0u8; 12];
    io.read_exact(&mut version).await.map_err(e)?;
    if !version.starts_with(b"RFB 003.") {
        return Err("backend VNC: not RFB".into());
    }
    let minor = &version[8..11];
    if minor < b"007".as_slice() {
        io.write_all(b"RFB 003.003\n").await.map_err(e)?;
        let mut ty = [0u8; 4];
        io.read_exact(&mut ty).await.map_err(e)?;
        return if u32::from_be_bytes(ty) == 1 {
            Ok(io)
        } else {
            Err("backend VNC wants a password".into())
        };
    }
    io.write_all(b"RFB 003.008\n").await.map_err(e)?;
    let mut n = [0u8; 1];
    io.read_exact(&mut n).await.map_err(e)?;
    let mut types = vec![0u8; usize::from(n[0])];
    io.read_exact(&mut types).await.map_err(e)?;
    if !types.contains(&1) {
        return Err(format!("backend VNC offers no security None ({types:?})"));
    }
    io.write_all(&[1]).await.map_err(e)?;
    let mut result = [0u8; 4];
    io.read_exact(&mut result).await.map_err(e)?;
    if u32::from_be_bytes(result) != 0 {
        return Err("backend VNC refused security None".into());
    }
    Ok(io)
}

async fn vnc_session(
    sim: &Sim,
    socket: WebSocket,
    vmid: u32,
    password: &str,
) -> Result<(), String> {
    let (mut tx, rx) = socket.split();
    let mut rx = WsReader {
        rx,
        buf: Vec::new(),
    };
    send(&mut tx, b"RFB 003.008\n").await?;
    let version = rx.read_exact(12).await?;
    let v33 = version.as_slice() == b"RFB 003.003\n";
    if v33 {
        send(&mut tx, &2u32.to_be_bytes()).await?;
    } else {
        send(&mut tx, &[1, 2]).await?;
        let choice = rx.read_exact(1).await?;
        if choice != [2] {
            return Err(format!(
                "client chose security type {}",
                choice.first().copied().unwrap_or(0)
            ));
        }
    }
    let mut challenge = [0u8; 16];
    rand::fill(&mut challenge);
    send(&mut tx, &challenge).await?;
    let response = rx.read_exact(16).await?;
    if response != vnc_auth_response(password, &challenge) {
        let mut fail = 1u32.to_be_bytes().to_vec();
        if !v33 {
            let reason = b"Authentication failed";
            fail.extend_from_slice(&u32::try_from(reason.len()).unwrap_or(0).to_be_bytes());
            fail.extend_from_slice(reason);
        }
        let _ = send(&mut tx, &fail).await;
        let _ = tx.close().await;
        return Err("VNC authentication failed".into());
    }
    let backend = sim
        .backend
        .vnc_stream(vmid)
        .await
        .map_err(|e| e.to_string())?;
    let backend = backend_vnc(backend).await?;
    send(&mut tx, &0u32.to_be_bytes()).await?;
    relay(backend, tx, rx, |bytes, _| Ok(bytes)).await
}

/// Relays a backend stream and the websocket until either side ends. `input` turns the
/// client's bytes into what goes to the backend (framing for termproxy); it gets the buffer
/// of pending bytes and returns what to write.
async fn relay<F>(
    backend: ConsoleStream,
    mut tx: WsSink,
    mut rx: WsReader,
    mut input: F,
) -> Result<(), String>
where
    F: FnMut(Vec<u8>, &mut Vec<u8>) -> Result<Vec<u8>, String> + Send,
{
    let (mut br, mut bw) = tokio::io::split(backend);
    let down = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = br.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            send(&mut tx, &buf[..n]).await?;
        }
        let _ = tx.close().await;
        Ok::<(), String>(())
    };
    let up = async move {
        let mut pending = Vec::new();
        loop {
            if !rx.buf.is_empty() {
                let data = std::mem::take(&mut rx.buf);
                let out = input(data, &mut pending)?;
                if !out.is_empty() {
                    bw.write_all(&out).await.map_err(|e| e.to_string())?;
                }
            }
            if rx.fill().await.is_none() {
                break;
            }
        }
        Ok::<(), String>(())
    };
    tokio::select! {
        r = down => r,
        r = up => r,
    }
}

/// What one termproxy message asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum TermMsg {
    /// `0:LEN:DATA`: input bytes.
    Data(Vec<u8>),
    /// `1:COLS:ROWS:`: a terminal size.
    Resize(u16, u16),
    /// `2`: keepalive.
    Ping,
}

/// Parses complete termproxy messages from the front of `buf`, leaving an incomplete tail.
pub fn parse_term(buf: &mut Vec<u8>) -> Result<Vec<TermMsg>, String> {
    let mut out = Vec::new();
    while let Some(&first) = buf.first() {
        match first {
            b'2' => {
                buf.drain(..1);
                out.push(TermMsg::Ping);
            }
            b'0' | b'1' => {
                if buf.len() < 2 {
                    break;
                }
                if buf[1] != b':' {
                    return Err("bad termproxy message".into());
                }
                let fields_needed = if first == b'0' { 1 } else { 2 };
                let mut pos = 2;
                let mut fields = Vec::new();
                while fields.len() < fields_needed {
                    let Some(off) = buf[pos..].iter().position(|&b| b == b':') else {
                        break;
                    };
                    let field = std::str::from_utf8(&buf[pos..pos + off])
                        .map_err(|_| "bad termproxy number")?;
                    fields.push(
                        field
                            .parse::<usize>()
                            .map_err(|_| format!("bad termproxy number '{field}'"))?,
                    );
                    if off > 12 {
                        return Err("termproxy number too long".into());
                    }
                    pos += off + 1;
                }
                if fields.len() < fields_needed {
                    if buf.len() - pos > 24 {
                        return Err("bad termproxy message".into());
                    }
                    break;
                }
                if first == b'0' {
                    let len = fields[0];
                    if buf.len() < pos + len {
                        break;
                    }
                    let data = buf[pos..pos + len].to_vec();
                    buf.drain(..pos + len);
                    out.push(TermMsg::Data(data));
                } else {
                    buf.drain(..pos);
                    let c = u16::try_from(fields[0]).unwrap_or(u16::MAX);
                    let r = u16::try_from(fields[1]).unwrap_or(u16::MAX);
                    out.push(TermMsg::Resize(c, r));
                }
            }
            other => {
                return Err(format!(
                    "unknown termproxy message type '{}'",
                    char::from(other)
                ));
            }
        }
    }
    Ok(out)
}

async fn term_session(
    sim: &Sim,
    socket: WebSocket,
    listener: &ConsoleListener,
) -> Result<(), String> {
    let (mut tx, rx) = socket.split();
    let mut rx = WsReader {
        rx,
        buf: Vec::new(),
    };
    // Login line: `user:ticket\n`.
    let line = loop {
        if let Some(i) = rx.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = rx.buf.drain(..=i).collect();
            break String::from_utf8_lossy(&line[..i]).into_owned();
        }
        if rx.buf.len() > 4096 || rx.fill().await.is_none() {
            return Err("no termproxy login".into());
        }
    };
    let ok = line
        .split_once(':')
        .is_some_and(|(user, ticket)| user == listener.authid && ticket == listener.ticket);
    if !ok {
        let _ = tx.close().await;
        return Err("termproxy login failed".into());
    }
    let backend = sim
        .backend
        .serial_stream(listener.vmid)
        .await
        .map_err(|e| e.to_string())?;
    send(&mut tx, b"OK").await?;
    let vmid = listener.vmid;
    relay(backend, tx, rx, |data, pending| {
        pending.extend_from_slice(&data);
        let mut out = Vec::new();
        for msg in parse_term(pending)? {
            match msg {
                TermMsg::Data(d) => out.extend_from_slice(&d),
                TermMsg::Resize(cols, rows) => sim.lock().terminal_sizes.push((vmid, cols, rows)),
                TermMsg::Ping => {}
            }
        }
        Ok(out)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn termproxy_framing() {
        let mut buf = b"0:3:ab\n1:80:24:2".to_vec();
        let msgs = parse_term(&mut buf).unwrap();
        assert_eq!(
            msgs,
            vec![
                TermMsg::Data(b"ab\n".to_vec()),
                TermMsg::Resize(80, 24),
                TermMsg::Ping
            ]
        );
        assert!(buf.is_empty());
        let mut partial = b"0:5:he".to_vec();
        assert!(parse_term(&mut partial).unwrap().is_empty());
        partial.extend_from_slice(b"llo");
        assert_eq!(
            parse_term(&mut partial).unwrap(),
            vec![TermMsg::Data(b"hello".to_vec())]
        );
        assert!(parse_term(&mut b"x".to_vec()).is_err());
    }

    #[test]
    fn vnc_auth_matches_known_vector() {
        // Each block is DES-encrypted independently under the bit-mirrored key.
        let c = [0u8; 16];
        let r = vnc_auth_response("password", &c);
        assert_eq!(&r[..8], &r[8..]);
        assert_ne!(vnc_auth_response("passwore", &c), r);
    }
}
