//! What the agent hop costs a console stream: a VM console reached through the plane's agent
//! driver against the same console socket connected directly, in one run, in one process.
//!
//! The consoles are unix sockets served by tokio tasks in this process: `echo` (sends back
//! what it gets), `sink` (reads a fixed amount, then acknowledges with one byte) and `source`
//! (on one byte from the client, sends a fixed amount). Two routes reach them:
//! - **direct**: connecting the socket;
//! - **agent hop**: the real agent API (`tls::serve` over `server::router`, mutual TLS 1.3
//!   with certificates from a fresh CA) on loopback TCP, whose node driver is a stand-in that
//!   hands out those sockets, reached by the plane's real [`AgentDriver`]: its `console()`
//!   opens a WebSocket to the agent and returns the plane's end of a socket pair.
//!
//! Measured, the routes taking turns round by round: throughput both ways, 64-byte round
//! trips (p50, p99), and time to open a console until a first echo comes back.
//!
//! Usage: `bench-agent BENCHMARKS_MD`

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_trait::async_trait;
use porthole_agent::driver::{AgentDriver, Heartbeat};
use porthole_agent::enrol::{Enrolment, PlaneLink};
use porthole_agent::pki::{self, CertificateAuthority};
use porthole_agent::server::{self, AgentService};
use porthole_agent::tls::{self, ClientAuth, Identity};
use porthole_bench::{Summary, summarise, write_section};
use porthole_core::VmId;
use porthole_core::driver::{
    ConsoleEndpoint, ConsoleKind, Driver, DriverError, PipedConsole, PowerState, Progress,
    VmDefinition,
};
use porthole_core::node::{Capabilities, ImageHome, NodeKind};
use porthole_image_cache::ImageCache;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

/// Bytes per throughput transfer.
const TRANSFER_BYTES: u64 = 256 << 20;
/// The size of the writes and reads on both ends of a transfer.
const BLOCK: usize = 256 * 1024;
/// Rounds in which the routes take turns for throughput and round trips.
const ROUNDS: usize = 5;
/// Timed 64-byte round trips per route, spread over the rounds.
const ROUND_TRIPS: usize = 10_000;
/// Untimed round trips on each new connection first.
const WARM_UP_TRIPS: usize = 500;
/// Console opens per route.
const OPENS: usize = 200;
/// How long the benchmark's certificates last.
const CERT_TTL: Duration = Duration::from_secs(3600);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, report] = args.as_slice() else {
        bail!("usage: bench-agent BENCHMARKS_MD");
    };
    bench(Path::new(report)).await
}

// ----- the consoles -----------------------------------------------------------------------

/// What a console socket does with a connection.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Echo,
    Sink,
    Source,
}

/// One console: the VM id the agent knows it by, and its socket.
#[derive(Debug, Clone)]
struct Console {
    vm: VmId,
    path: PathBuf,
}

/// Serves `mode` on a new socket `name` in `dir`, until the runtime ends.
fn serve_console(dir: &Path, name: &str, mode: Mode) -> anyhow::Result<Console> {
    let path = dir.join(name);
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    tokio::spawn(async move {
        while let Ok((connection, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = handle(connection, mode).await;
            });
        }
    });
    Ok(Console {
        vm: VmId::random(),
        path,
    })
}

async fn handle(mut connection: UnixStream, mode: Mode) -> std::io::Result<()> {
    let mut buf = vec![0u8; BLOCK];
    match mode {
        Mode::Echo => {
            let (mut from, mut to) = connection.split();
            tokio::io::copy(&mut from, &mut to).await?;
            return Ok(());
        }
        Mode::Sink => {
            let mut got = 0;
            while got < TRANSFER_BYTES {
                match connection.read(&mut buf).await? {
                    0 => return Ok(()),
                    n => got += n as u64,
                }
            }
            connection.write_all(b"k").await?;
        }
        Mode::Source => {
            connection.read_exact(&mut buf[..1]).await?;
            buf.fill(0x5a);
            let mut sent = 0;
            while sent < TRANSFER_BYTES {
                connection.write_all(&buf).await?;
                sent += buf.len() as u64;
            }
        }
    }
    // Hold the connection until the client is done with it.
    while connection.read(&mut buf).await? > 0 {}
    Ok(())
}

/// The agent's node driver: no VMs to run, only consoles, each a socket of this process.
#[derive(Debug)]
struct SocketNode {
    consoles: HashMap<VmId, PathBuf>,
}

#[async_trait]
impl Driver for SocketNode {
    fn kind(&self) -> NodeKind {
        NodeKind::Agent
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            images: ImageHome::Plane,
            resize: false,
            live_disk_growth: false,
            snapshots: false,
            boot_media: false,
            consoles: &[ConsoleKind::Vnc, ConsoleKind::Serial],
            console_output: false,
        }
    }

    async fn create(
        &self,
        _def: &VmDefinition,
        _progress: &dyn Progress,
    ) -> Result<(), DriverError> {
        Err(DriverError::Unsupported("creating VMs".into()))
    }

    async fn start(&self, _vm: VmId) -> Result<(), DriverError> {
        Err(DriverError::Unsupported("power actions".into()))
    }

    async fn stop(&self, _vm: VmId) -> Result<(), DriverError> {
        Err(DriverError::Unsupported("power actions".into()))
    }

    async fn shutdown(&self, _vm: VmId, _timeout: Duration) -> Result<(), DriverError> {
        Err(DriverError::Unsupported("power actions".into()))
    }

    async fn reset(&self, _vm: VmId) -> Result<(), DriverError> {
        Err(DriverError::Unsupported("power actions".into()))
    }

    async fn suspend(&self, _vm: VmId) -> Result<(), DriverError> {
        Err(DriverError::Unsupported("power actions".into()))
    }

    async fn resume(&self, _vm: VmId) -> Result<(), DriverError> {
        Err(DriverError::Unsupported("power actions".into()))
    }

    async fn delete(&self, _vm: VmId) -> Result<(), DriverError> {
        Err(DriverError::Unsupported("deleting VMs".into()))
    }

    async fn status(&self, _vm: VmId) -> Result<PowerState, DriverError> {
        Err(DriverError::Unsupported("VM status".into()))
    }

    async fn inventory(&self) -> Result<Vec<(VmId, PowerState)>, DriverError> {
        Ok(Vec::new())
    }

    async fn console(&self, vm: VmId, _kind: ConsoleKind) -> Result<ConsoleEndpoint, DriverError> {
        let path = self.consoles.get(&vm).ok_or(DriverError::NotFound(vm))?;
        Ok(ConsoleEndpoint::Unix {
            path: path.clone(),
            password: None,
        })
    }
}

// ----- the agent and the plane's driver for it ---------------------------------------------

/// The agent serving on loopback, and the plane's driver for it, online.
struct Hop {
    driver: Arc<AgentDriver>,
    /// The porthole version the agent reported.
    version: String,
    stop: CancellationToken,
    serving: tokio::task::JoinHandle<()>,
}

/// Starts the real agent API over mutual TLS on loopback, with `node` as its node driver and
/// certificates from a new CA in `dir`, and brings the plane's driver for it online.
async fn start_hop(dir: &Path, node: SocketNode) -> anyhow::Result<Hop> {
    let ca = CertificateAuthority::load_or_create(&dir.join("ca"))?;
    let identity = pki::node_identity("bench");
    let (agent_key, csr) = pki::key_and_csr(&identity)?;
    let agent_cert = ca.sign_csr(&csr, &identity, CERT_TTL)?;
    let (plane_cert, plane_key) = ca.issue(pki::PLANE_IDENTITY, CERT_TTL)?;
    let plane_identity = Identity::from_pem(&plane_cert.cert_pem, &plane_key)?;

    // The agent's side, as `porthole agent` builds it. Its link to the plane only serves
    // template downloads, which consoles never make.
    let enrolment = Enrolment {
        node: "bench".into(),
        plane: "https://127.0.0.1:1".into(),
        ca_pem: ca.cert_pem().to_owned(),
        cert_pem: agent_cert.cert_pem.clone(),
        key_pem: agent_key,
    };
    let link = PlaneLink::new(&enrolment)?;
    let (vms, templates, isos) = (dir.join("vms"), dir.join("templates"), dir.join("isos"));
    for empty in [&vms, &templates, &isos] {
        std::fs::create_dir_all(empty)?;
    }
    let cache = Arc::new(ImageCache::new(templates, isos, link));
    let service = AgentService::new(Arc::new(node), cache, vms);
    let auth = ClientAuth::Required {
        name: pki::PLANE_IDENTITY.into(),
        check: None,
    };
    let config = tls::server_config(ca.cert_der(), &enrolment.identity()?, auth)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let stop = CancellationToken::new();
    let serving = tokio::spawn(tls::serve(
        listener,
        Arc::new(config),
        server::router(service),
        stop.clone(),
    ));

    // The plane's side, as the plane builds it for an enrolled node.
    let driver = AgentDriver::new(
        "bench",
        &format!("https://{address}"),
        ca.cert_der(),
        &plane_identity,
        [agent_cert.serial],
    )?;
    let version = match driver.heartbeat().await {
        Heartbeat::CameOnline(health) => health.version,
        other => bail!("the agent did not come online: {other:?}"),
    };
    Ok(Hop {
        driver,
        version,
        stop,
        serving,
    })
}

// ----- the two ways in ----------------------------------------------------------------------

/// How the client reaches a console.
#[derive(Clone, Copy)]
enum Route<'a> {
    Direct,
    Agent(&'a AgentDriver),
}

impl Route<'_> {
    /// A stream of raw console bytes to `console`.
    async fn open(self, console: &Console) -> anyhow::Result<UnixStream> {
        match self {
            Route::Direct => Ok(UnixStream::connect(&console.path).await?),
            Route::Agent(driver) => match driver.console(console.vm, ConsoleKind::Vnc).await? {
                ConsoleEndpoint::Piped(PipedConsole { stream, .. }) => Ok(stream),
                other => bail!("the agent driver returned {other:?}, not a piped console"),
            },
        }
    }
}

// ----- the measurements -------------------------------------------------------------------

/// One transfer into the sink, in MB/s: from the first byte written until the sink
/// acknowledged the last.
async fn to_console(route: Route<'_>, sink: &Console) -> anyhow::Result<f64> {
    let mut stream = route.open(sink).await?;
    let block = vec![0x5au8; BLOCK];
    let started = Instant::now();
    let mut sent = 0;
    while sent < TRANSFER_BYTES {
        stream.write_all(&block).await?;
        sent += block.len() as u64;
    }
    let mut ack = [0u8; 1];
    stream
        .read_exact(&mut ack)
        .await
        .context("waiting for the sink's acknowledgement")?;
    Ok(TRANSFER_BYTES as f64 / started.elapsed().as_secs_f64() / 1e6)
}

/// One transfer from the source, in MB/s: from asking for it until the last byte arrived.
async fn from_console(route: Route<'_>, source: &Console) -> anyhow::Result<f64> {
    let mut stream = route.open(source).await?;
    let mut buf = vec![0u8; BLOCK];
    let started = Instant::now();
    stream.write_all(b"g").await?;
    let mut got = 0;
    while got < TRANSFER_BYTES {
        match stream.read(&mut buf).await? {
            0 => bail!("the source ended after {got} bytes"),
            n => got += n as u64,
        }
    }
    Ok(got as f64 / started.elapsed().as_secs_f64() / 1e6)
}

/// `count` timed 64-byte round trips on a new connection to the echo, after a warm-up.
async fn round_trips(
    route: Route<'_>,
    echo: &Console,
    count: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut stream = route.open(echo).await?;
    let payload = [0x42u8; 64];
    let mut back = [0u8; 64];
    for _ in 0..WARM_UP_TRIPS {
        stream.write_all(&payload).await?;
        stream.read_exact(&mut back).await?;
    }
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        stream.write_all(&payload).await?;
        stream.read_exact(&mut back).await?;
        samples.push(started.elapsed());
    }
    Ok(samples)
}

/// From asking for a console until a first byte echoed through it came back.
async fn time_to_open(route: Route<'_>, echo: &Console) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut stream = route.open(echo).await?;
    stream.write_all(b"o").await?;
    let mut back = [0u8; 1];
    stream.read_exact(&mut back).await?;
    Ok(started.elapsed())
}

#[derive(Debug, Default)]
struct Samples {
    to_console: Vec<f64>,
    from_console: Vec<f64>,
    trips: Vec<Duration>,
    opens: Vec<Duration>,
}

/// What one route reached.
#[derive(Debug)]
struct Figures {
    to_console_mb_s: f64,
    from_console_mb_s: f64,
    rtt: Summary,
    open: Summary,
}

impl Samples {
    fn figures(mut self) -> Figures {
        Figures {
            to_console_mb_s: median(&mut self.to_console),
            from_console_mb_s: median(&mut self.from_console),
            rtt: summarise(&self.trips),
            open: summarise(&self.opens),
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn bench(report: &Path) -> anyhow::Result<()> {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
    let work = tempfile::Builder::new().prefix("pha").tempdir_in("/tmp")?;
    let echo = serve_console(work.path(), "echo.sock", Mode::Echo)?;
    let sink = serve_console(work.path(), "sink.sock", Mode::Sink)?;
    let source = serve_console(work.path(), "source.sock", Mode::Source)?;
    let node = SocketNode {
        consoles: [&echo, &sink, &source]
            .into_iter()
            .map(|c| (c.vm, c.path.clone()))
            .collect(),
    };
    let hop = start_hop(work.path(), node).await?;

    let names = ["direct", "agent hop"];
    let routes = [Route::Direct, Route::Agent(&hop.driver)];
    let mut samples: Vec<Samples> = routes.iter().map(|_| Samples::default()).collect();
    // Throughput and round trips drift with how the two cores are shared at the moment, so
    // the routes take turns, round after round, and each reports its median.
    for round in 1..=ROUNDS {
        eprintln!("round {round} of {ROUNDS}");
        for (route, samples) in routes.iter().zip(&mut samples) {
            samples.to_console.push(to_console(*route, &sink).await?);
            samples
                .from_console
                .push(from_console(*route, &source).await?);
            samples
                .trips
                .extend(round_trips(*route, &echo, ROUND_TRIPS / ROUNDS).await?);
        }
    }
    eprintln!("{OPENS} opens per route");
    for _ in 0..OPENS {
        for (route, samples) in routes.iter().zip(&mut samples) {
            samples.opens.push(time_to_open(*route, &echo).await?);
        }
    }
    let rows: Vec<(&str, Figures)> = names
        .into_iter()
        .zip(samples.into_iter().map(Samples::figures))
        .collect();
    let text = render(&rows, &hop.version, &load);
    write_section(report, "agent-hop", &text)?;
    eprintln!("{text}");

    hop.stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), hop.serving).await;
    Ok(())
}

/// Microseconds, whole.
fn us(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

fn render(rows: &[(&str, Figures)], version: &str, load: &str) -> String {
    let mut text = String::from("## Console through an agent vs direct\n\n");
    text.push_str(&format!(
        "What the agent hop costs a console stream. One run of `bench-agent` \
         (`scripts/bench`), porthole {version}, everything in **one process** on this 2-core \
         machine: the console servers, the agent and the plane's side share the runtime's \
         two worker threads and the two cores (1-minute load average at the start: {load}). \
         The consoles are unix sockets served by tokio tasks: an echo, a sink and a source. \
         *direct* connects them. *agent hop* is the real console path of a VM on an agent \
         node: the plane's `AgentDriver` opens the console as a WebSocket over loopback TCP \
         and mutual TLS 1.3 to the real agent API (`tls::serve` with `server::router`, \
         certificates from a fresh CA), whose console relay connects the socket (its node \
         driver is a stand-in that only hands out those sockets); the plane gets its end of \
         a socket pair, as the gateway does. So the hop adds loopback TCP, TLS 1.3, \
         WebSocket framing and two relays (the agent's and the plane's), on the same two \
         cores; a real hop also crosses a network. Throughput is the median of {ROUNDS} \
         transfers of {} MiB each way: *to the console* into the sink until it acknowledges \
         the last byte, *from the console* out of the source from asking until the last \
         byte. Round trips are {ROUND_TRIPS} 64-byte echoes ({} per round, each round on a \
         new connection after {WARM_UP_TRIPS} untimed ones). The routes take turns round by \
         round. Time to open runs {OPENS} times per route, alternating: from asking the \
         driver for the console (direct: connecting the socket) until a first byte sent \
         through it comes back from the echo; for the agent that is a TCP connect, the TLS 1.3 \
         handshake with client certificates (rustls's defaults on both sides keep sessions, \
         so later opens may resume one and skip the certificates, as the plane's can), the \
         WebSocket upgrade and the agent's own connect to the socket.\n\n",
        TRANSFER_BYTES >> 20,
        ROUND_TRIPS / ROUNDS,
    ));
    text.push_str(
        "| route | to console (MB/s) | from console (MB/s) | round trip p50 (µs) | p99 (µs) \
         | time to open p50 (µs) | p99 (µs) |\n",
    );
    text.push_str("|---|---|---|---|---|---|---|\n");
    for (name, f) in rows {
        text.push_str(&format!(
            "| {name} | {:.0} | {:.0} | {} | {} | {} | {} |\n",
            f.to_console_mb_s,
            f.from_console_mb_s,
            us(f.rtt.p50),
            us(f.rtt.p99),
            us(f.open.p50),
            us(f.open.p99),
        ));
    }
    if let [(_, direct), (_, agent)] = rows {
        let extra = |a: Duration, d: Duration| (a.as_secs_f64() - d.as_secs_f64()) * 1e6;
        text.push_str(&format!(
            "\nagent hop / direct: throughput **{:.2}** to the console and **{:.2}** from \
             it; round trip p50 **{:.1}×** (+{:.0} µs); time to open p50 **{:.1}×** \
             (+{:.0} µs).\n",
            agent.to_console_mb_s / direct.to_console_mb_s,
            agent.from_console_mb_s / direct.from_console_mb_s,
            agent.rtt.p50.as_secs_f64() / direct.rtt.p50.as_secs_f64(),
            extra(agent.rtt.p50, direct.rtt.p50),
            agent.open.p50.as_secs_f64() / direct.open.p50.as_secs_f64(),
            extra(agent.open.p50, direct.open.p50),
        ));
    }
    text
}
