//! The relay between one client WebSocket and one console.
//!
//! A session runs in one task and:
//! 1. sends console output to the client as binary frames as soon as it is readable,
//!    allocating a read buffer only when there is something to read, so an idle session
//!    holds no buffers;
//! 2. passes client input to the console. Input the console cannot take yet is held, and the
//!    client is not read until it drains, so a slow console slows the client instead of
//!    growing memory, and neither direction can deadlock the other;
//! 3. decodes the client's framing: plain binary frames (with JSON text frames for control),
//!    or Proxmox's termproxy stream;
//! 4. pings the client every `ping_interval` and ends the session if it stops answering;
//! 5. ends the session after `idle_timeout` without input, after `max_duration`, when
//!    either side closes, or when the gateway shuts down, with a close code and reason that
//!    say which.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::{Sink, SinkExt, Stream, StreamExt};
use porthole_core::driver::SharedConsole;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::broadcast;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::metrics::ByteCounters;
use crate::termproxy::{Decoder, TermEvent};

/// Smallest and largest buffer one console read allocates. Reads grow towards the maximum
/// while they fill their buffer, and shrink back when traffic is light.
const MIN_READ: usize = 16 * 1024;
const MAX_READ: usize = 256 * 1024;

/// Longest close reason a WebSocket close frame carries.
const MAX_CLOSE_REASON: usize = 120;

/// A WebSocket message, independent of the HTTP stack that carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Binary data.
    Binary(Bytes),
    /// Text; control messages.
    Text(String),
    /// A ping; the transport answers it.
    Ping(Bytes),
    /// The answer to a ping.
    Pong(Bytes),
    /// The end, with an optional code and reason.
    Close(Option<(u16, String)>),
}

/// A failed WebSocket transport.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The client sent a message over the size limit.
    #[error("message too big")]
    MessageTooBig,
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// How the client frames its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Binary frames carry raw bytes both ways; text frames carry JSON control messages,
    /// `{"resize": {"cols": C, "rows": R}}`.
    Binary,
    /// Proxmox termproxy: see [`crate::termproxy`].
    Termproxy,
}

/// The limits every session runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    /// How often the client is pinged.
    pub ping_interval: Duration,
    /// How long a session may go without client input.
    pub idle_timeout: Duration,
    /// How long a session may last at all.
    pub max_duration: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(30 * 60),
            max_duration: Duration::from_secs(8 * 3600),
        }
    }
}

/// The console end of a session.
pub enum Console {
    /// A TCP stream, after any handshake.
    Tcp(TcpStream),
    /// A unix stream, after any handshake.
    Unix(UnixStream),
    /// A console shared with other viewers.
    Shared(Arc<dyn SharedConsole>),
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Console::Tcp(_) => "Console::Tcp",
            Console::Unix(_) => "Console::Unix",
            Console::Shared(_) => "Console::Shared",
        })
    }
}

/// Tells the console's owner the client's terminal size.
pub type ResizeFn = Arc<dyn Fn(u16, u16) -> BoxFuture<'static, ()> + Send + Sync>;

/// Everything about a session besides its two ends.
#[derive(Clone)]
pub struct RelayOptions {
    /// How the client frames its bytes.
    pub framing: Framing,
    /// Pings and time limits.
    pub policy: SessionPolicy,
    /// Where resizes go, if the console can take them.
    pub resize: Option<ResizeFn>,
    /// Cancelled when the gateway shuts down.
    pub shutdown: CancellationToken,
    /// Live byte counters.
    pub counters: ByteCounters,
    /// Client bytes that arrived with a handshake, to be handled first.
    pub early_input: Bytes,
}

impl std::fmt::Debug for RelayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayOptions")
            .field("framing", &self.framing)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The client closed or went away.
    ClientClosed,
    /// The console closed: the VM stopped, the device hung up.
    ConsoleClosed,
    /// No input for the idle timeout.
    IdleTimeout(Duration),
    /// The maximum duration passed.
    MaxDuration(Duration),
    /// The client stopped answering pings.
    Unresponsive,
    /// The client broke the framing protocol.
    Protocol(String),
    /// The client sent a message over the size limit.
    MessageTooBig,
    /// The gateway is shutting down.
    Shutdown,
    /// The transport failed.
    Transport(String),
}

impl End {
    /// The close frame the client is sent, if one can be sent.
    pub fn close_frame(&self) -> Option<(u16, String)> {
        let (code, reason) = match self {
            End::ClientClosed | End::Transport(_) => return None,
            End::ConsoleClosed => (1000, "the console closed".to_owned()),
            End::Shutdown => (1001, "porthole is shutting down".to_owned()),
            End::Protocol(why) => (1002, format!("protocol error: {why}")),
            End::MessageTooBig => (1009, "message too big".to_owned()),
            End::IdleTimeout(after) => (
                4002,
                format!("closed after {} s without input", after.as_secs()),
            ),
            End::MaxDuration(after) => (
                4003,
                format!("the session reached its maximum of {} s", after.as_secs()),
            ),
            End::Unresponsive => (4004, "no answer to keepalive pings".to_owned()),
        };
        Some((code, close_reason(reason)))
    }

    /// A short word for audit records and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            End::ClientClosed => "client_closed",
            End::ConsoleClosed => "console_closed",
            End::IdleTimeout(_) => "idle_timeout",
            End::MaxDuration(_) => "max_duration",
            End::Unresponsive => "unresponsive",
            End::Protocol(_) => "protocol_error",
            End::MessageTooBig => "message_too_big",
            End::Shutdown => "shutdown",
            End::Transport(_) => "transport_error",
        }
    }
}

/// `reason`, cut to fit a WebSocket close frame.
pub fn close_reason(mut reason: String) -> String {
    if reason.len() > MAX_CLOSE_REASON {
        let mut cut = MAX_CLOSE_REASON;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    reason
}

/// What a session did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionReport {
    /// Bytes sent to the client.
    pub to_client: u64,
    /// Bytes sent to the console.
    pub from_client: u64,
    /// Why it ended.
    pub end: End,
}

/// Control messages of binary framing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Control {
    resize: Option<Size>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Size {
    cols: u16,
    rows: u16,
}

/// Something the client asked for.
enum Request {
    Input(Bytes),
    Resize(u16, u16),
    Keepalive,
}

/// A shared console as one session sees it.
struct SharedEnd {
    console: Arc<dyn SharedConsole>,
    output: broadcast::Receiver<Bytes>,
    /// Scrollback not yet sent to this viewer.
    backlog: Option<Bytes>,
}

enum StreamConsole {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl StreamConsole {
    async fn readable(&self) -> io::Result<()> {
        match self {
            StreamConsole::Tcp(s) => s.readable().await,
            StreamConsole::Unix(s) => s.readable().await,
        }
    }

    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            StreamConsole::Tcp(s) => s.try_read_buf(buf),
            StreamConsole::Unix(s) => s.try_read_buf(buf),
        }
    }

    async fn writable(&self) -> io::Result<()> {
        match self {
            StreamConsole::Tcp(s) => s.writable().await,
            StreamConsole::Unix(s) => s.writable().await,
        }
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            StreamConsole::Tcp(s) => s.try_write(buf),
            StreamConsole::Unix(s) => s.try_write(buf),
        }
    }
}

/// Reads whatever the console has; `None` at its end. Exactly one of `stream` and `shared`
/// is set.
async fn read_output(
    stream: Option<&StreamConsole>,
    shared: Option<&mut SharedEnd>,
    read_size: &mut usize,
) -> io::Result<Option<Bytes>> {
    match (stream, shared) {
        (Some(stream), _) => loop {
            stream.readable().await?;
            let mut buf = BytesMut::with_capacity(*read_size);
            match stream.try_read_buf(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    *read_size = if n == *read_size {
                        (n * 2).min(MAX_READ)
                    } else {
                        MIN_READ.max(n)
                    };
                    return Ok(Some(buf.freeze()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        },
        (
            None,
            Some(SharedEnd {
                output, backlog, ..
            }),
        ) => {
            if let Some(backlog) = backlog.take() {
                return Ok(Some(backlog));
            }
            match output.recv().await {
                Ok(bytes) => Ok(Some(bytes)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "a slow console viewer missed output");
                    let notice =
                        format!("\r\n[porthole: {missed} pieces of output were skipped]\r\n");
                    Ok(Some(Bytes::from(notice)))
                }
                Err(broadcast::error::RecvError::Closed) => Ok(None),
            }
        }
        (None, None) => Ok(None),
    }
}

/// Relays between `ws` and `console` until one of them ends or a limit is reached.
pub async fn relay<S>(mut ws: S, console: Console, options: RelayOptions) -> SessionReport
where
    S: Stream<Item = Result<Frame, TransportError>> + Sink<Frame> + Unpin,
    <S as Sink<Frame>>::Error: std::fmt::Display,
{
    let policy = options.policy;
    let (stream, mut shared) = match console {
        Console::Tcp(s) => (Some(StreamConsole::Tcp(s)), None),
        Console::Unix(s) => (Some(StreamConsole::Unix(s)), None),
        Console::Shared(console) => {
            let (scrollback, output) = console.attach();
            let backlog = (!scrollback.is_empty()).then(|| Bytes::from(scrollback));
            (
                None,
                Some(SharedEnd {
                    console,
                    output,
                    backlog,
                }),
            )
        }
    };
    let mut report = SessionReport {
        to_client: 0,
        from_client: 0,
        end: End::ClientClosed,
    };
    let mut decoder = (options.framing == Framing::Termproxy).then(Decoder::new);
    let mut pending = BytesMut::new();
    let mut read_size = MIN_READ;

    let max_duration = tokio::time::sleep(policy.max_duration);
    let idle = tokio::time::sleep(policy.idle_timeout);
    tokio::pin!(max_duration, idle);
    let mut ping =
        tokio::time::interval_at(Instant::now() + policy.ping_interval, policy.ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();

    let mut requests = Vec::new();
    if let Err(end) = decode(
        &options,
        decoder.as_mut(),
        Frame::Binary(options.early_input.clone()),
        &mut requests,
    ) {
        report.end = end;
        return finish(ws, report).await;
    }

    report.end = 'session: loop {
        // Carry out what the client asked for.
        for request in requests.drain(..) {
            match request {
                Request::Input(bytes) if bytes.is_empty() => {}
                Request::Input(bytes) => {
                    idle.as_mut().reset(Instant::now() + policy.idle_timeout);
                    report.from_client += bytes.len() as u64;
                    options.counters.from_client.inc_by(bytes.len() as u64);
                    match &shared {
                        None => pending.extend_from_slice(&bytes),
                        Some(SharedEnd { console, .. }) => {
                            if console.write(&bytes).await.is_err() {
                                break 'session End::ConsoleClosed;
                            }
                        }
                    }
                }
                Request::Resize(cols, rows) => {
                    idle.as_mut().reset(Instant::now() + policy.idle_timeout);
                    if let Some(resize) = &options.resize {
                        resize(cols, rows).await;
                    }
                }
                Request::Keepalive => {}
            }
        }
        // Input for a stream console goes out as far as the console takes it now.
        if let Some(stream) = &stream {
            while !pending.is_empty() {
                match stream.try_write(&pending) {
                    Ok(n) => {
                        let _ = pending.split_to(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => break 'session End::ConsoleClosed,
                }
            }
        }
        let input_blocked = !pending.is_empty();

        tokio::select! {
            biased;
            () = options.shutdown.cancelled() => break End::Shutdown,
            () = &mut max_duration => break End::MaxDuration(policy.max_duration),
            () = &mut idle => break End::IdleTimeout(policy.idle_timeout),
            _ = ping.tick() => {
                if last_heard.elapsed() > policy.ping_interval * 2 + Duration::from_secs(1) {
                    break End::Unresponsive;
                }
                if let Err(e) = ws.send(Frame::Ping(Bytes::new())).await {
                    break End::Transport(e.to_string());
                }
            }
            ready = writable(stream.as_ref()), if input_blocked => {
                if ready.is_err() {
                    break End::ConsoleClosed;
                }
            }
            frame = ws.next(), if !input_blocked => {
                let frame = match frame {
                    None => break End::ClientClosed,
                    Some(Err(TransportError::MessageTooBig)) => break End::MessageTooBig,
                    Some(Err(TransportError::Other(e))) => break End::Transport(e),
                    Some(Ok(frame)) => frame,
                };
                last_heard = Instant::now();
                if let Err(end) = decode(&options, decoder.as_mut(), frame, &mut requests) {
                    break end;
                }
            }
            output = read_output(stream.as_ref(), shared.as_mut(), &mut read_size) => {
                match output {
                    Ok(Some(bytes)) => {
                        let n = bytes.len() as u64;
                        if let Err(e) = ws.send(Frame::Binary(bytes)).await {
                            break End::Transport(e.to_string());
                        }
                        report.to_client += n;
                        options.counters.to_client.inc_by(n);
                    }
                    Ok(None) | Err(_) => break End::ConsoleClosed,
                }
            }
        }
    };
    finish(ws, report).await
}

async fn writable(stream: Option<&StreamConsole>) -> io::Result<()> {
    match stream {
        Some(stream) => stream.writable().await,
        None => std::future::pending().await,
    }
}

/// Turns one client frame into requests. `Err` ends the session.
fn decode(
    options: &RelayOptions,
    decoder: Option<&mut Decoder>,
    frame: Frame,
    requests: &mut Vec<Request>,
) -> Result<(), End> {
    let data = match frame {
        Frame::Close(_) => return Err(End::ClientClosed),
        Frame::Ping(_) | Frame::Pong(_) => return Ok(()),
        Frame::Binary(data) => data,
        Frame::Text(text) if options.framing == Framing::Termproxy => Bytes::from(text),
        Frame::Text(text) => {
            let control: Control = serde_json::from_str(&text)
                .map_err(|e| End::Protocol(format!("bad control message: {e}")))?;
            if let Some(Size { cols, rows }) = control.resize {
                if cols == 0 || rows == 0 {
                    return Err(End::Protocol("resize to zero".into()));
                }
                requests.push(Request::Resize(cols, rows));
            }
            return Ok(());
        }
    };
    match decoder {
        None => requests.push(Request::Input(data)),
        Some(decoder) => {
            decoder.feed(&data);
            while let Some(event) = decoder.next_event().map_err(|e| End::Protocol(e.0))? {
                requests.push(match event {
                    TermEvent::Input(bytes) => Request::Input(bytes),
                    TermEvent::Resize { cols, rows } => Request::Resize(cols, rows),
                    TermEvent::Ping => Request::Keepalive,
                });
            }
        }
    }
    Ok(())
}

async fn finish<S>(mut ws: S, report: SessionReport) -> SessionReport
where
    S: Sink<Frame> + Unpin,
{
    if let Some(close) = report.end.close_frame() {
        let _ = ws.send(Frame::Close(Some(close))).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close()).await;
    report
}

/// The client's WebSocket as a byte stream, for handshakes that happen before the relay:
/// binary frames are read as bytes and writes become binary frames. Pings and pongs are
/// skipped; text frames are an error.
pub struct WsIo<'a, S> {
    ws: &'a mut S,
    unread: Bytes,
}

impl<S> std::fmt::Debug for WsIo<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsIo")
            .field("unread", &self.unread.len())
            .finish()
    }
}

impl<'a, S> WsIo<'a, S> {
    /// Wraps `ws`.
    pub fn new(ws: &'a mut S) -> Self {
        Self {
            ws,
            unread: Bytes::new(),
        }
    }

    /// Bytes received but not read by the handshake; they belong to the relay.
    pub fn into_unread(self) -> Bytes {
        self.unread
    }
}

impl<S> AsyncRead for WsIo<'_, S>
where
    S: Stream<Item = Result<Frame, TransportError>> + Unpin,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.unread.is_empty() {
            match ready!(self.ws.poll_next_unpin(cx)) {
                None | Some(Ok(Frame::Close(_))) => return Poll::Ready(Ok(())),
                Some(Ok(Frame::Binary(data))) => self.unread = data,
                Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => {}
                Some(Ok(Frame::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text frame during a handshake",
                    )));
                }
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
            }
        }
        let n = self.unread.len().min(buf.remaining());
        buf.put_slice(&self.unread.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl<S> AsyncWrite for WsIo<'_, S>
where
    S: Sink<Frame> + Unpin,
    <S as Sink<Frame>>::Error: std::fmt::Display,
{
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.ws.poll_ready_unpin(cx)).map_err(|e| io::Error::other(e.to_string()))?;
        self.ws
            .start_send_unpin(Frame::Binary(Bytes::copy_from_slice(buf)))
            .map_err(|e| io::Error::other(e.to_string()))?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.ws
            .poll_flush_unpin(cx)
            .map_err(|e| io::Error::other(e.to_string()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

/// Reads the termproxy login line `USER:TICKET\n` within `timeout`. Returns the user, the
/// ticket, and bytes that followed the line.
pub async fn read_termproxy_login<S>(
    ws: &mut S,
    timeout: Duration,
) -> Result<(String, String, Bytes), End>
where
    S: Stream<Item = Result<Frame, TransportError>> + Unpin,
{
    let read = async {
        let mut line = BytesMut::new();
        loop {
            let data = match ws.next().await {
                None | Some(Ok(Frame::Close(_))) => return Err(End::ClientClosed),
                Some(Ok(Frame::Binary(data))) => data,
                Some(Ok(Frame::Text(text))) => Bytes::from(text),
                Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => continue,
                Some(Err(e)) => return Err(End::Transport(e.to_string())),
            };
            line.extend_from_slice(&data);
            if let Some(newline) = line.iter().position(|b| *b == b'\n') {
                let rest = line.split_off(newline + 1).freeze();
                let (user, ticket) = crate::termproxy::parse_login(&line[..newline])
                    .map_err(|e| End::Protocol(e.0))?;
                return Ok((user, ticket, rest));
            }
            if line.len() > crate::termproxy::MAX_LOGIN_LINE {
                return Err(End::Protocol("login line too long".into()));
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| Err(End::Protocol("no login line in time".into())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A fake WebSocket: the test pushes client frames in and reads server frames out.
    struct FakeWs {
        incoming: mpsc::UnboundedReceiver<Result<Frame, TransportError>>,
        outgoing: mpsc::UnboundedSender<Frame>,
    }

    impl Stream for FakeWs {
        type Item = Result<Frame, TransportError>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.incoming.poll_next_unpin(cx)
        }
    }

    impl Sink<Frame> for FakeWs {
        type Error = String;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), String>> {
            Poll::Ready(Ok(()))
        }
        fn start_send(self: Pin<&mut Self>, frame: Frame) -> Result<(), String> {
            self.outgoing
                .unbounded_send(frame)
                .map_err(|e| e.to_string())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), String>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), String>> {
            Poll::Ready(Ok(()))
        }
    }

    struct Client {
        send: mpsc::UnboundedSender<Result<Frame, TransportError>>,
        recv: mpsc::UnboundedReceiver<Frame>,
    }

    fn fake_ws() -> (FakeWs, Client) {
        let (send, incoming) = mpsc::unbounded();
        let (outgoing, recv) = mpsc::unbounded();
        (FakeWs { incoming, outgoing }, Client { send, recv })
    }

    fn options(framing: Framing, policy: SessionPolicy) -> RelayOptions {
        RelayOptions {
            framing,
            policy,
            resize: None,
            shutdown: CancellationToken::new(),
            counters: ByteCounters::default(),
            early_input: Bytes::new(),
        }
    }

    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        (client, listener.accept().await.unwrap().0)
    }

    #[tokio::test]
    async fn relays_both_ways_and_reports_bytes() {
        let (console, mut device) = tcp_pair().await;
        let (ws, mut client) = fake_ws();
        let session = tokio::spawn(relay(
            ws,
            Console::Tcp(console),
            options(Framing::Binary, SessionPolicy::default()),
        ));
        client
            .send
            .unbounded_send(Ok(Frame::Binary(Bytes::from_static(b"ls\n"))))
            .unwrap();
        let mut heard = [0u8; 3];
        device.read_exact(&mut heard).await.unwrap();
        assert_eq!(&heard, b"ls\n");
        device.write_all(b"file\n").await.unwrap();
        assert_eq!(
            client.recv.next().await.unwrap(),
            Frame::Binary(Bytes::from_static(b"file\n"))
        );
        drop(device);
        let report = session.await.unwrap();
        assert_eq!(
            report,
            SessionReport {
                to_client: 5,
                from_client: 3,
                end: End::ConsoleClosed
            }
        );
        assert_eq!(
            client.recv.next().await.unwrap(),
            Frame::Close(Some((1000, "the console closed".into())))
        );
    }

    #[tokio::test]
    async fn termproxy_input_and_resizes_are_decoded() {
        let (console, mut device) = tcp_pair().await;
        let (ws, client) = fake_ws();
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&sizes);
        let mut options = options(Framing::Termproxy, SessionPolicy::default());
        options.resize = Some(Arc::new(move |cols, rows| {
            seen.lock().unwrap().push((cols, rows));
            Box::pin(async {})
        }));
        options.early_input = Bytes::from_static(b"0:2:hi");
        let session = tokio::spawn(relay(ws, Console::Tcp(console), options));
        client
            .send
            .unbounded_send(Ok(Frame::Text("1:100:30:20:3:".into())))
            .unwrap();
        client
            .send
            .unbounded_send(Ok(Frame::Binary(Bytes::from_static(b"abc"))))
            .unwrap();
        let mut heard = [0u8; 5];
        device.read_exact(&mut heard).await.unwrap();
        assert_eq!(&heard, b"hiabc");
        client
            .send
            .unbounded_send(Ok(Frame::Binary(Bytes::from_static(b"x"))))
            .unwrap();
        let report = session.await.unwrap();
        assert!(matches!(report.end, End::Protocol(_)), "{report:?}");
        assert_eq!(*sizes.lock().unwrap(), vec![(100, 30)]);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_sessions_and_silent_clients_are_closed() {
        let (console, _device) = tcp_pair().await;
        let (ws, mut client) = fake_ws();
        let policy = SessionPolicy {
            ping_interval: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_duration: Duration::from_secs(3600),
        };
        let report = relay(ws, Console::Tcp(console), options(Framing::Binary, policy)).await;
        // The fake client never answers pings, so it is found unresponsive before the idle
        // timeout: the third ping at 30 s sees nothing heard since 0 s.
        assert_eq!(report.end, End::Unresponsive);
        assert_eq!(client.recv.next().await.unwrap(), Frame::Ping(Bytes::new()));

        let (console, _device) = tcp_pair().await;
        let (ws, client) = fake_ws();
        let pongs = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                if client
                    .send
                    .unbounded_send(Ok(Frame::Pong(Bytes::new())))
                    .is_err()
                {
                    return;
                }
            }
        });
        let report = relay(ws, Console::Tcp(console), options(Framing::Binary, policy)).await;
        assert_eq!(report.end, End::IdleTimeout(Duration::from_secs(60)));
        assert_eq!(report.end.close_frame().unwrap().0, 4002);
        pongs.abort();
    }

    #[tokio::test]
    async fn a_slow_console_holds_input_back_instead_of_buffering_it() {
        let (console, mut device) = tcp_pair().await;
        let (ws, client) = fake_ws();
        let session = tokio::spawn(relay(
            ws,
            Console::Tcp(console),
            options(Framing::Binary, SessionPolicy::default()),
        ));
        // 64 MiB of input while the device reads nothing: socket buffers fill, then the
        // relay stops reading the client.
        let chunk = Bytes::from(vec![b'x'; 1 << 20]);
        for _ in 0..64 {
            client
                .send
                .unbounded_send(Ok(Frame::Binary(chunk.clone())))
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut total = 0usize;
        let mut buf = vec![0u8; 1 << 20];
        while total < 64 << 20 {
            total += device.read(&mut buf).await.unwrap();
        }
        assert_eq!(total, 64 << 20);
        client.send.unbounded_send(Ok(Frame::Close(None))).unwrap();
        let report = session.await.unwrap();
        assert_eq!(
            (report.from_client, report.end),
            (64 << 20, End::ClientClosed)
        );
    }

    #[tokio::test]
    async fn termproxy_login_line_is_read_with_what_follows() {
        let (mut ws, client) = fake_ws();
        client
            .send
            .unbounded_send(Ok(Frame::Text("alice:pct_".into())))
            .unwrap();
        client
            .send
            .unbounded_send(Ok(Frame::Binary(Bytes::from_static(b"abc\n0:1:x"))))
            .unwrap();
        let (user, ticket, rest) = read_termproxy_login(&mut ws, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(
            (user.as_str(), ticket.as_str(), &rest[..]),
            ("alice", "pct_abc", &b"0:1:x"[..])
        );
    }

    #[test]
    fn close_reasons_fit_a_close_frame() {
        let (code, reason) = End::Protocol("x".repeat(500)).close_frame().unwrap();
        assert_eq!(code, 1002);
        assert!(reason.len() <= MAX_CLOSE_REASON);
    }
}
