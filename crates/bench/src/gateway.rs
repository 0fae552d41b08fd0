//! The console gateway against websockify and direct TCP, in one run, on one machine, against
//! the same TCP target.
//!
//! The target is this binary run as `bench-gateway target`, in its own process, with four
//! listeners: `stream` (sends a fixed amount as fast as it can), `echo`, `idle` (holds the
//! connection), and `rfb` (a minimal RFB server with security None). porthole reaches them
//! as external consoles; websockify (Debian's) is started once per listener.
//!
//! Measured:
//! - server-to-client throughput;
//! - 64-byte round trips, p50 and p99;
//! - memory per idle session (the proxy's resident memory growth over many idle sessions;
//!   websockify's is the sum over the process it forks per connection);
//! - concurrent sessions held, each proven alive with an echo;
//! - time to console: for porthole from minting the ticket, for the others from connecting,
//!   until the first RFB bytes reach the client.
//!
//! Usage: `bench-gateway PORTHOLE_BINARY GUEST_DIR BENCHMARKS_MD [SESSIONS]`

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use porthole_api::client::Client;
use porthole_api::{CreateExternalConsoleRequest, ExternalConsole, ExternalProtocol};
use porthole_bench::{Plane, Summary, ms, summarise, write_section};
use porthole_core::ConsoleKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const PASSWORD: &str = "bench-admin-password";
/// Bytes the stream target sends per connection.
const STREAM_BYTES: u64 = 1 << 30;
const ROUND_TRIPS: usize = 20_000;
/// Rounds in which the routes take turns for throughput and round trips.
const ROUNDS: usize = 5;
const IDLE_SESSIONS: usize = 1_000;
/// websockify forks a process per connection; this many is what this machine can hold.
const WEBSOCKIFY_SESSIONS: usize = 500;
const WEBSOCKIFY_IDLE_SESSIONS: usize = 100;
const TIME_TO_CONSOLE_RUNS: usize = 200;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

fn main() -> anyhow::Result<()> {
    let fd_limit = raise_file_limit()?;
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("target") {
        return tokio::runtime::Runtime::new()?.block_on(run_target());
    }
    let [_, binary, guest, report, rest @ ..] = args.as_slice() else {
        bail!("usage: bench-gateway PORTHOLE_BINARY GUEST_DIR BENCHMARKS_MD [SESSIONS]");
    };
    let sessions: usize = rest.first().map_or(Ok(10_000), |s| s.parse())?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(bench(
        PathBuf::from(binary),
        PathBuf::from(guest),
        PathBuf::from(report),
        sessions,
        fd_limit,
    ))
}

/// Raises this process's descriptor limit (inherited by the plane and websockify) to the
/// hard limit, and returns it.
fn raise_file_limit() -> anyhow::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(hard)
}

// ----- the target -------------------------------------------------------------------------

#[expect(
    clippy::print_stdout,
    reason = "the target announces its ports on stdout to its parent"
)]
async fn run_target() -> anyhow::Result<()> {
    let listen = || TcpListener::bind("127.0.0.1:0");
    let (stream, echo, idle, rfb) = (
        listen().await?,
        listen().await?,
        listen().await?,
        listen().await?,
    );
    // A plain TCP proxy in front of each listener: what one extra hop costs without any
    // WebSocket, the floor for every proxy on this machine.
    let mut proxies = serde_json::Map::new();
    for (name, upstream) in [
        ("stream", &stream),
        ("echo", &echo),
        ("idle", &idle),
        ("rfb", &rfb),
    ] {
        let proxy = listen().await?;
        proxies.insert(name.into(), proxy.local_addr()?.to_string().into());
        let upstream = upstream.local_addr()?;
        tokio::spawn(async move {
            while let Ok((mut client, _)) = proxy.accept().await {
                tokio::spawn(async move {
                    let _ = client.set_nodelay(true);
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = server.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional_with_sizes(
                        &mut client,
                        &mut server,
                        256 * 1024,
                        256 * 1024,
                    )
                    .await;
                });
            }
        });
    }
    println!(
        "{}",
        serde_json::json!({
            "stream": stream.local_addr()?.to_string(),
            "echo": echo.local_addr()?.to_string(),
            "idle": idle.local_addr()?.to_string(),
            "rfb": rfb.local_addr()?.to_string(),
            "proxy": proxies,
        })
    );
    let serve =
        |listener: TcpListener,
         handler: fn(TcpStream) -> futures::future::BoxFuture<'static, ()>| {
            tokio::spawn(async move {
                while let Ok((connection, _)) = listener.accept().await {
                    let _ = connection.set_nodelay(true);
                    tokio::spawn(handler(connection));
                }
            })
        };
    serve(stream, |mut c| {
        Box::pin(async move {
            let block = vec![0x5au8; 256 * 1024];
            let mut sent = 0;
            while sent < STREAM_BYTES {
                if c.write_all(&block).await.is_err() {
                    return;
                }
                sent += block.len() as u64;
            }
        })
    });
    serve(echo, |c| {
        Box::pin(async move {
            let (mut r, mut w) = c.into_split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        })
    });
    serve(idle, |mut c| {
        Box::pin(async move {
            let mut buf = [0u8; 64];
            while let Ok(1..) = c.read(&mut buf).await {}
        })
    });
    serve(rfb, |mut c| {
        Box::pin(async move {
            let _ = async {
                c.write_all(b"RFB 003.008\n").await?;
                let mut version = [0u8; 12];
                c.read_exact(&mut version).await?;
                c.write_all(&[1, 1]).await?;
                let mut choice = [0u8; 1];
                c.read_exact(&mut choice).await?;
                c.write_all(&0u32.to_be_bytes()).await?;
                let mut client_init = [0u8; 1];
                c.read_exact(&mut client_init).await?;
                let mut init = vec![
                    2, 128, 1, 224, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0,
                ];
                init.extend_from_slice(&5u32.to_be_bytes());
                init.extend_from_slice(b"bench");
                c.write_all(&init).await?;
                let mut rest = [0u8; 64];
                while c.read(&mut rest).await? > 0 {}
                std::io::Result::Ok(())
            }
            .await;
        })
    });
    std::future::pending::<()>().await;
    Ok(())
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Targets {
    stream: String,
    echo: String,
    idle: String,
    rfb: String,
    proxy: Box<ProxyTargets>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct ProxyTargets {
    stream: String,
    echo: String,
    idle: String,
    rfb: String,
}

fn start_target() -> anyhow::Result<(KillOnDrop, Targets)> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("target")
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("piped")),
        &mut line,
    )?;
    Ok((KillOnDrop(child), serde_json::from_str(&line)?))
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ----- the three ways in ------------------------------------------------------------------

/// How a client reaches a target.
enum Route<'a> {
    Porthole {
        client: &'a Client,
        console: &'a ExternalConsole,
        kind: ConsoleKind,
    },
    Websockify(SocketAddr),
    Direct(&'a str),
}

/// One connection through a route: a WebSocket, or a plain TCP stream.
enum Connection {
    Ws(Box<Socket>),
    Tcp(TcpStream),
}

impl Route<'_> {
    async fn connect(&self) -> anyhow::Result<Connection> {
        match self {
            Route::Porthole {
                client,
                console,
                kind,
            } => {
                let ticket = client.external_console_ticket(console.id, *kind).await?;
                Ok(Connection::Ws(Box::new(
                    ws_connect(client.console_url(&ticket, false).as_str()).await?,
                )))
            }
            Route::Websockify(address) => Ok(Connection::Ws(Box::new(
                ws_connect(&format!("ws://{address}/")).await?,
            ))),
            Route::Direct(address) => {
                let stream = TcpStream::connect(address).await?;
                stream.set_nodelay(true)?;
                Ok(Connection::Tcp(stream))
            }
        }
    }
}

async fn ws_connect(url: &str) -> anyhow::Result<Socket> {
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "binary".parse()?);
    let (socket, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    Ok(socket)
}

impl Connection {
    /// The next chunk of bytes; empty at the end.
    async fn read(&mut self, buf: &mut [u8]) -> anyhow::Result<Vec<u8>> {
        match self {
            Connection::Tcp(stream) => {
                let n = stream.read(buf).await?;
                Ok(buf[..n].to_vec())
            }
            Connection::Ws(socket) => loop {
                match socket.next().await {
                    Some(Ok(Message::Binary(data))) => return Ok(data.to_vec()),
                    Some(Ok(Message::Close(_))) | None => return Ok(Vec::new()),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                }
            },
        }
    }

    /// Counts bytes until the end, without keeping them.
    async fn drain(&mut self) -> anyhow::Result<u64> {
        let mut total = 0u64;
        match self {
            Connection::Tcp(stream) => {
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = stream.read(&mut buf).await?;
                    if n == 0 {
                        return Ok(total);
                    }
                    total += n as u64;
                }
            }
            Connection::Ws(socket) => loop {
                match socket.next().await {
                    Some(Ok(Message::Binary(data))) => total += data.len() as u64,
                    Some(Ok(Message::Close(_))) | None => return Ok(total),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                }
            },
        }
    }

    async fn write(&mut self, data: &[u8]) -> anyhow::Result<()> {
        match self {
            Connection::Tcp(stream) => Ok(stream.write_all(data).await?),
            Connection::Ws(socket) => Ok(socket.send(Message::binary(data.to_vec())).await?),
        }
    }

    /// Sends `payload` and waits for all of it to come back.
    async fn round_trip(&mut self, payload: &[u8], buf: &mut [u8]) -> anyhow::Result<()> {
        self.write(payload).await?;
        let mut got = 0;
        while got < payload.len() {
            let chunk = self.read(buf).await?;
            if chunk.is_empty() {
                bail!("the echo closed");
            }
            got += chunk.len();
        }
        Ok(())
    }
}

// ----- the measurements -------------------------------------------------------------------

#[derive(Debug, Default, Clone)]
struct Figures {
    throughput_mb_s: f64,
    rtt: Option<Summary>,
    idle_kib: Option<f64>,
    sessions: String,
    time_to_console: Option<Summary>,
}

/// One transfer of the stream target's data, in MB/s.
async fn transfer(route: &Route<'_>) -> anyhow::Result<f64> {
    let mut connection = route.connect().await?;
    let started = Instant::now();
    let bytes = connection.drain().await?;
    let elapsed = started.elapsed().as_secs_f64();
    if bytes < STREAM_BYTES {
        bail!("the stream ended after {bytes} bytes");
    }
    Ok(bytes as f64 / elapsed / 1e6)
}

/// `count` timed 64-byte round trips on a fresh connection, after a warm-up.
async fn round_trip_samples(route: &Route<'_>, count: usize) -> anyhow::Result<Vec<Duration>> {
    let mut connection = route.connect().await?;
    let payload = [0x42u8; 64];
    let mut buf = vec![0u8; 4096];
    for _ in 0..500 {
        connection.round_trip(&payload, &mut buf).await?;
    }
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        connection.round_trip(&payload, &mut buf).await?;
        samples.push(started.elapsed());
    }
    Ok(samples)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Opens `count` connections, `parallel` at a time.
async fn open_many(route: &Route<'_>, count: usize, parallel: usize) -> (Vec<Connection>, usize) {
    let mut open = Vec::with_capacity(count);
    let mut failed = 0;
    let mut pending =
        futures::stream::iter((0..count).map(|_| route.connect())).buffer_unordered(parallel);
    while let Some(result) = pending.next().await {
        match result {
            Ok(connection) => open.push(connection),
            Err(_) => failed += 1,
        }
    }
    (open, failed)
}

/// Resident memory of `pids`: RSS for one process, proportional set size summed over a
/// process tree (so shared pages count once).
fn memory_kib(pids: &[u32]) -> f64 {
    let field = |pid: u32, file: &str, name: &str| -> f64 {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with(name))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0.0)
    };
    match pids {
        [pid] => field(*pid, "status", "VmRSS:"),
        many => many
            .iter()
            .map(|pid| field(*pid, "smaps_rollup", "Pss:"))
            .sum(),
    }
}

/// `root` and all its descendants.
fn process_tree(root: u32) -> Vec<u32> {
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        if let Ok(children) =
            std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        {
            tree.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
        i += 1;
    }
    tree
}

async fn idle_memory(route: &Route<'_>, pid: u32, tree: bool, count: usize) -> anyhow::Result<f64> {
    let pids = || if tree { process_tree(pid) } else { vec![pid] };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = memory_kib(&pids());
    let (open, failed) = open_many(route, count, 64).await;
    if failed > 0 {
        bail!("{failed} of {count} idle sessions failed to open");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = memory_kib(&pids());
    drop(open);
    Ok((after - before) / count as f64)
}

/// Opens `count` sessions to the echo target and proves each alive with an echo.
async fn concurrent(route: &Route<'_>, count: usize) -> String {
    let started = Instant::now();
    let (mut open, failed) = open_many(route, count, 128).await;
    let opened = open.len();
    let checks = futures::stream::iter(open.iter_mut().map(|c| async move {
        let mut buf = [0u8; 64];
        tokio::time::timeout(Duration::from_secs(30), c.round_trip(b"x", &mut buf))
            .await
            .is_ok_and(|r| r.is_ok())
    }))
    .buffer_unordered(256)
    .collect::<Vec<bool>>()
    .await;
    let alive = checks.iter().filter(|ok| **ok).count();
    let took = started.elapsed().as_secs_f64();
    eprintln!("  {alive} of {count} alive ({opened} opened, {failed} failed) in {took:.1} s");
    format!("{alive} of {count}")
}

async fn time_to_console(route: &Route<'_>) -> anyhow::Result<Summary> {
    let mut samples = Vec::with_capacity(TIME_TO_CONSOLE_RUNS);
    let mut buf = vec![0u8; 4096];
    for _ in 0..TIME_TO_CONSOLE_RUNS {
        let started = Instant::now();
        let mut connection = route.connect().await?;
        let first = connection.read(&mut buf).await?;
        samples.push(started.elapsed());
        if !first.starts_with(b"RFB ") {
            bail!("expected RFB bytes first, got {first:?}");
        }
    }
    Ok(summarise(&samples))
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn start_websockify(target: &str) -> anyhow::Result<(KillOnDrop, SocketAddr)> {
    let address = free_port()?;
    let child = Command::new("websockify")
        .arg(address.to_string())
        .arg(target)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("running websockify (apt-get install websockify)")?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(address).is_ok() {
            return Ok((KillOnDrop(child), address));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("websockify did not listen on {address}")
}

async fn bench(
    binary: PathBuf,
    guest: PathBuf,
    report: PathBuf,
    sessions: usize,
    fd_limit: u64,
) -> anyhow::Result<()> {
    // A relayed TCP session holds two descriptors in the plane (client and console); leave
    // room for the plane's own files.
    let relayed =
        sessions.min(usize::try_from(fd_limit.saturating_sub(200) / 2).unwrap_or(usize::MAX));
    let (_target, targets) = start_target()?;
    let work = tempfile::Builder::new().prefix("phg").tempdir_in("/tmp")?;
    let limit = (sessions * 2).to_string();
    let extra = [
        "--console-sessions-per-user",
        &limit,
        "--console-idle-timeout",
        "3600",
    ];
    let plane = Plane::start(&binary, &guest, work.path(), PASSWORD, &extra)?;
    let anonymous = Client::new(&plane.url)?;
    let client = anonymous
        .clone()
        .with_token(anonymous.login("admin", PASSWORD).await?.token);
    let register = async |name: &str, protocol, address: &str| {
        let request = CreateExternalConsoleRequest {
            name: name.into(),
            protocol,
            address: address.into(),
            password: None,
        };
        client.create_external_console(&request).await
    };
    let stream = register("stream", ExternalProtocol::Tcp, &targets.stream).await?;
    let echo = register("echo", ExternalProtocol::Tcp, &targets.echo).await?;
    let idle = register("idle", ExternalProtocol::Tcp, &targets.idle).await?;
    let rfb = register("rfb", ExternalProtocol::Vnc, &targets.rfb).await?;
    let (_ws_stream, wsfy_stream) = start_websockify(&targets.stream)?;
    let (_ws_echo, wsfy_echo) = start_websockify(&targets.echo)?;
    let (ws_idle, wsfy_idle) = start_websockify(&targets.idle)?;
    let (_ws_rfb, wsfy_rfb) = start_websockify(&targets.rfb)?;

    let porthole = |console, kind| Route::Porthole {
        client: &client,
        console,
        kind,
    };
    let names = ["porthole", "websockify", "plain TCP proxy", "direct TCP"];
    let routes: Vec<_> = names
        .iter()
        .map(|name| match *name {
            "porthole" => [
                porthole(&stream, ConsoleKind::Serial),
                porthole(&echo, ConsoleKind::Serial),
                porthole(&idle, ConsoleKind::Serial),
                porthole(&rfb, ConsoleKind::Vnc),
            ],
            "websockify" => [
                Route::Websockify(wsfy_stream),
                Route::Websockify(wsfy_echo),
                Route::Websockify(wsfy_idle),
                Route::Websockify(wsfy_rfb),
            ],
            "plain TCP proxy" => [
                Route::Direct(&targets.proxy.stream),
                Route::Direct(&targets.proxy.echo),
                Route::Direct(&targets.proxy.idle),
                Route::Direct(&targets.proxy.rfb),
            ],
            _ => [
                Route::Direct(&targets.stream),
                Route::Direct(&targets.echo),
                Route::Direct(&targets.idle),
                Route::Direct(&targets.rfb),
            ],
        })
        .collect();
    // Throughput and round trips drift with how the two cores are shared at the moment, so
    // the routes take turns, round after round, and each reports its median.
    let mut speeds = vec![Vec::new(); names.len()];
    let mut trips = vec![Vec::new(); names.len()];
    for round in 1..=ROUNDS {
        eprintln!("round {round} of {ROUNDS}");
        for (k, [stream, echo, ..]) in routes.iter().enumerate() {
            speeds[k].push(transfer(stream).await?);
            trips[k].extend(round_trip_samples(echo, ROUND_TRIPS / ROUNDS).await?);
        }
    }
    let mut rows = Vec::new();
    for (k, name) in names.iter().enumerate() {
        eprintln!("{name}:");
        let [_, echo, idle_route, rfb_route] = &routes[k];
        let mut figures = Figures {
            throughput_mb_s: median(&mut speeds[k]),
            rtt: Some(summarise(&trips[k])),
            time_to_console: Some(time_to_console(rfb_route).await?),
            ..Figures::default()
        };
        figures.idle_kib = match *name {
            "porthole" => Some(idle_memory(idle_route, plane.pid(), false, IDLE_SESSIONS).await?),
            "websockify" => {
                Some(idle_memory(idle_route, ws_idle.0.id(), true, WEBSOCKIFY_IDLE_SESSIONS).await?)
            }
            _ => None,
        };
        figures.sessions = match *name {
            "websockify" => concurrent(echo, WEBSOCKIFY_SESSIONS).await,
            "plain TCP proxy" => "—".into(),
            _ => concurrent(echo, relayed).await,
        };
        rows.push((*name, figures));
    }
    let crowd = serial_crowd(&client, sessions).await?;
    let text = render(&rows, relayed, fd_limit, &crowd);
    write_section(Path::new(&report), "console-gateway", &text)?;
    eprintln!("{text}");
    Ok(())
}

fn us(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

/// What [`serial_crowd`] saw.
struct Crowd {
    viewers: usize,
    reached: usize,
}

/// `viewers` sessions on one VM's serial console (one descriptor each in the plane, sharing
/// the console's tap), all proven alive: a line typed through one must reach every one.
async fn serial_crowd(client: &Client, viewers: usize) -> anyhow::Result<Crowd> {
    eprintln!("serial crowd:");
    let request = porthole_api::CreateVmRequest::small("crowd", "demo");
    let created = client.create_vm(&request).await?;
    client
        .wait_for_job(created.job.id, Duration::from_millis(50), |_| {})
        .await?;
    let vm = created.vm.id;
    let started = Instant::now();
    while !client
        .console_output(vm)
        .await?
        .contains("porthole-guest:/# ")
    {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the crowd VM did not boot");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let connect = || async {
        let ticket = client.vm_console_ticket(vm, ConsoleKind::Serial).await?;
        ws_connect(client.console_url(&ticket, false).as_str()).await
    };
    let mut open = Vec::with_capacity(viewers);
    let mut pending = futures::stream::iter((0..viewers).map(|_| connect())).buffer_unordered(128);
    while let Some(result) = pending.next().await {
        if let Ok(socket) = result {
            open.push(socket);
        }
    }
    drop(pending);
    let word = format!("crowd-{}", std::process::id());
    let needle = format!("\r\n{word}\r\n").into_bytes();
    if let Some(first) = open.first_mut() {
        first
            .send(Message::binary(format!("echo {word}\n").into_bytes()))
            .await?;
    }
    let reached = futures::stream::iter(open.iter_mut().map(|socket| {
        let needle = needle.clone();
        async move {
            let mut seen = Vec::new();
            let wait = async {
                while let Some(Ok(message)) = socket.next().await {
                    if let Message::Binary(data) = message {
                        seen.extend_from_slice(&data);
                        if seen.windows(needle.len()).any(|w| w == needle.as_slice()) {
                            return true;
                        }
                    }
                }
                false
            };
            tokio::time::timeout(Duration::from_secs(120), wait)
                .await
                .unwrap_or(false)
        }
    }))
    .buffer_unordered(viewers.max(1))
    .filter(|reached| futures::future::ready(*reached))
    .count()
    .await;
    eprintln!(
        "  {reached} of {viewers} viewers saw the line ({} opened)",
        open.len()
    );
    drop(open);
    let delete = client.delete_vm(vm).await?;
    client
        .wait_for_job(delete.job.id, Duration::from_millis(100), |_| {})
        .await?;
    Ok(Crowd { viewers, reached })
}

fn render(rows: &[(&str, Figures)], sessions: usize, fd_limit: u64, crowd: &Crowd) -> String {
    let mut text = String::from("## Console gateway vs websockify vs direct TCP\n\n");
    text.push_str(&format!(
        "One run of `bench-gateway` (`scripts/bench`), all three against the same TCP target \
         process on this 2-core machine; client, proxy and target share the two cores. \
         porthole reaches the target as an external console (tickets minted through the \
         API); websockify is Debian's 0.10, which forks a process per connection, so it is \
         held to {WEBSOCKIFY_SESSIONS} concurrent and {WEBSOCKIFY_IDLE_SESSIONS} idle \
         sessions. Throughput is the median of {ROUNDS} 1 GiB transfers and round trips are \
         {ROUND_TRIPS} 64-byte echoes, the routes taking turns round by round so that all \
         see the same machine; memory is the proxy's resident \
         growth over {IDLE_SESSIONS} idle sessions (websockify: proportional set size over its \
         processes); time to console runs {TIME_TO_CONSOLE_RUNS} times, for porthole from \
         minting the ticket to the first RFB bytes (including the gateway's own RFB handshake \
         with the server), for the others from connecting. The plain TCP proxy (tokio, 256 KiB \
         buffers, no WebSocket) runs in the target process and shows what one extra hop \
         costs here whatever the proxy: the floor for any console gateway on this machine.\n\n"
    ));
    text.push_str("| | throughput (MB/s) | round trip p50 (µs) | p99 (µs) | memory per idle session (KiB) | concurrent sessions held | time to console p50 (ms) | p99 (ms) |\n");
    text.push_str("|---|---|---|---|---|---|---|---|\n");
    for (name, f) in rows {
        let rtt = f.rtt.expect("measured");
        let ttc = f.time_to_console.expect("measured");
        text.push_str(&format!(
            "| {name} | {:.0} | {} | {} | {} | {} | {} | {} |\n",
            f.throughput_mb_s,
            us(rtt.p50),
            us(rtt.p99),
            f.idle_kib.map_or_else(|| "—".into(), |k| format!("{k:.1}")),
            f.sessions,
            ms(ttc.p50),
            ms(ttc.p99),
        ));
    }
    let find = |name: &str| &rows.iter().find(|(n, _)| *n == name).expect("row").1;
    let (gateway, websockify, plain, direct) = (
        find("porthole"),
        find("websockify"),
        find("plain TCP proxy"),
        find("direct TCP"),
    );
    let ratio = gateway.throughput_mb_s / direct.throughput_mb_s;
    let extra_us = (gateway.rtt.expect("rtt").p50.as_secs_f64()
        - direct.rtt.expect("rtt").p50.as_secs_f64())
        * 1e6;
    let verdict = |ok: bool| if ok { "met" } else { "**not met**" };
    let hop_ratio = plain.throughput_mb_s / direct.throughput_mb_s;
    let hop_us = (plain.rtt.expect("rtt").p50.as_secs_f64()
        - direct.rtt.expect("rtt").p50.as_secs_f64())
        * 1e6;
    let held_all = crowd.reached >= 10_000 && crowd.reached == crowd.viewers;
    text.push_str(&format!(
        "\nporthole / direct throughput: **{ratio:.2}** (target ≥ 0.9: {}). porthole / websockify \
         throughput: **{:.1}×**. Round trip p50 over direct: **+{extra_us:.0} µs** (target ≤ +15 µs: {}). \
         Memory per idle session: **{:.1} KiB** (target ≤ 32 KiB: {}). Concurrent sessions: \
         {} relayed to the TCP target, {} of {} on one serial console (target 10,000: {}). Time to console p50: **{} ms** (target ≤ 50 ms: {}).\n\n\
         The cost of the hop itself: the plain TCP proxy reaches **{hop_ratio:.2}** of direct \
         throughput and adds **+{hop_us:.0} µs** to the round trip; porthole reaches \
         **{:.2}** of the plain proxy's throughput and adds **+{:.0} µs** beyond it for the \
         WebSocket framing, ticket-checked session and relay.\n\n\
         Concurrency: this machine's hard limit is {fd_limit} open files per process, which \
         the container cannot raise; a session relayed to a TCP console holds two in the \
         plane, so no single-process proxy can hold 10,000 of them here, and the benchmark \
         holds {sessions}, leaving room for the plane's own files. Separately, **{} of {} \
         viewers** held at once on one VM's serial console (one descriptor each, sharing its \
         tap) all received a line typed through one of them.\n",
        verdict(ratio >= 0.9),
        gateway.throughput_mb_s / websockify.throughput_mb_s,
        verdict(extra_us <= 15.0),
        gateway.idle_kib.unwrap_or(f64::NAN),
        verdict(gateway.idle_kib.is_some_and(|k| k <= 32.0)),
        gateway.sessions,
        crowd.reached,
        crowd.viewers,
        verdict(held_all),
        ms(gateway.time_to_console.expect("ttc").p50),
        verdict(gateway.time_to_console.expect("ttc").p50 <= Duration::from_millis(50)),
        gateway.throughput_mb_s / plain.throughput_mb_s,
        extra_us - hop_us,
        crowd.reached,
        crowd.viewers,
    ));
    text
}
