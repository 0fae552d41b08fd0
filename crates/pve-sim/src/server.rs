//! Building and serving a simulator: [`PveSimBuilder`] configures users, tokens, ACLs,
//! pools, VMs and the backend; [`PveSim`] is the running server (HTTPS with a fresh
//! self-signed certificate, or plain HTTP), stopped when dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get};
use sha2::Digest as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::auth::{AclEntry, User};
use crate::backend::{Backend, FakeBackend, PowerState};
use crate::clock::Clock;
use crate::state::{Node, Pool, Sim, State, Vm};

/// A VM to seed the simulator with.
#[derive(Clone, Debug)]
pub struct SimVm {
    vm: Vm,
}

impl SimVm {
    /// VM `vmid` named `name` on `node`, stopped, 512 MiB, 1 core, a 4 GiB disk.
    pub fn new(vmid: u32, node: &str, name: &str) -> Self {
        let config: BTreeMap<String, String> = [
            ("name", name.to_owned()),
            ("memory", "512".to_owned()),
            ("cores", "1".to_owned()),
            ("sockets", "1".to_owned()),
            ("ostype", "l26".to_owned()),
            ("scsi0", format!("local-lvm:vm-{vmid}-disk-0,size=4G")),
            ("scsihw", "virtio-scsi-pci".to_owned()),
            ("boot", "order=scsi0".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Self {
            vm: Vm {
                vmid,
                node: node.to_owned(),
                pool: None,
                config,
                status: PowerState::Stopped,
                started_at: None,
                template: false,
            },
        }
    }
    /// Puts it in `pool` (created if missing).
    pub fn pool(mut self, pool: &str) -> Self {
        self.vm.pool = Some(pool.to_owned());
        self
    }
    /// Sets memory in MiB.
    pub fn memory(mut self, mib: u64) -> Self {
        self.vm.config.insert("memory".into(), mib.to_string());
        self
    }
    /// Sets the core count.
    pub fn cores(mut self, cores: u32) -> Self {
        self.vm.config.insert("cores".into(), cores.to_string());
        self
    }
    /// Sets any config key.
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.vm.config.insert(key.into(), value.into());
        self
    }
    /// Starts it when the simulator starts.
    pub fn running(mut self) -> Self {
        self.vm.status = PowerState::Running;
        self
    }
    /// Marks it a template.
    pub fn template(mut self) -> Self {
        self.vm.template = true;
        self
    }
}

/// Configures a simulator.
#[derive(Debug)]
pub struct PveSimBuilder {
    state: State,
    clock: Clock,
    backend: Arc<dyn Backend>,
    task_duration: Duration,
    tls: bool,
}

impl Default for PveSimBuilder {
    fn default() -> Self {
        let mut state = State::default();
        for (name, maxmem, mem, maxcpu, cpu) in [
            ("pve1", 64u64 << 30, 8u64 << 30, 16, 0.05),
            ("pve2", 32 << 30, 20 << 30, 8, 0.30),
        ] {
            state.nodes.insert(
                name.to_owned(),
                Node {
                    name: name.to_owned(),
                    maxmem,
                    mem,
                    maxcpu,
                    cpu,
                },
            );
        }
        Self {
            state,
            clock: Clock::new(),
            backend: Arc::new(FakeBackend::new()),
            task_duration: Duration::from_millis(200),
            tls: true,
        }
    }
}

impl PveSimBuilder {
    /// Adds user `name@realm` with a password (`root@pam` holds every privilege).
    pub fn user(mut self, userid: &str, password: &str) -> Self {
        if let Some((_, realm)) = userid.rsplit_once('@') {
            self.state.access.realms.insert(realm.to_owned());
        }
        self.state
            .access
            .users
            .entry(userid.to_owned())
            .or_default()
            .password = Some(password.to_owned());
        self
    }

    /// Adds an API token `user@realm!id` with its secret; it has its user's privileges.
    pub fn token(mut self, tokenid: &str, secret: &str) -> Self {
        if let Some((user, id)) = tokenid.split_once('!') {
            let u: &mut User = self.state.access.users.entry(user.to_owned()).or_default();
            u.tokens.insert(id.to_owned(), secret.to_owned());
        }
        self
    }

    /// Grants `privs` to `userid` on `path`, inherited below it if `propagate`.
    pub fn acl(mut self, userid: &str, path: &str, privs: &[&str], propagate: bool) -> Self {
        let entry = AclEntry {
            path: path.to_owned(),
            privs: privs.iter().map(|p| (*p).to_owned()).collect(),
            propagate,
        };
        self.state
            .access
            .users
            .entry(userid.to_owned())
            .or_default()
            .acls
            .push(entry);
        self
    }

    /// Adds a pool.
    pub fn pool(mut self, poolid: &str, comment: Option<&str>) -> Self {
        self.state.pools.insert(
            poolid.to_owned(),
            Pool {
                comment: comment.map(str::to_owned),
            },
        );
        self
    }

    /// Adds a VM.
    pub fn vm(mut self, vm: SimVm) -> Self {
        if let Some(p) = &vm.vm.pool {
            self.state.pools.entry(p.clone()).or_default();
        }
        self.state.vms.insert(vm.vm.vmid, vm.vm);
        self
    }

    /// Sets the backend (default: a [`FakeBackend`]).
    pub fn backend(mut self, backend: Arc<dyn Backend>) -> Self {
        self.backend = backend;
        self
    }

    /// Shares a clock with the test (default: a fresh one; see [`PveSim::clock`]).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The minimum time each task runs (default 200 ms), so clients must poll.
    pub fn task_duration(mut self, d: Duration) -> Self {
        self.task_duration = d;
        self
    }

    /// Serves plain HTTP instead of HTTPS (for debugging).
    pub fn plain_http(mut self) -> Self {
        self.tls = false;
        self
    }

    /// Creates the seeded VMs in the backend (starting the running ones) and serves on
    /// `addr` (e.g. `127.0.0.1:0`).
    pub async fn spawn(self, addr: &str) -> anyhow::Result<PveSim> {
        let certified = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "pve1".to_owned(),
        ])?;
        let cert_pem = certified.cert.pem();
        let cert_der = certified.cert.der().to_vec();
        let fingerprint = sha2::Sha256::digest(&cert_der)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        for vm in self.state.vms.values() {
            self.backend
                .create(vm.vmid, &vm.spec())
                .await
                .map_err(|e| anyhow::anyhow!("create {}: {e}", vm.vmid))?;
            if vm.status == PowerState::Running {
                self.backend
                    .start(vm.vmid)
                    .await
                    .map_err(|e| anyhow::anyhow!("start {}: {e}", vm.vmid))?;
            }
        }
        let now = self.clock.now();
        let mut state = self.state;
        for vm in state
            .vms
            .values_mut()
            .filter(|v| v.status == PowerState::Running)
        {
            vm.started_at = Some(now);
        }
        let sim = Arc::new(Sim::new(
            state,
            self.clock.clone(),
            self.backend,
            self.task_duration,
            cert_pem.clone(),
        ));
        let app = router(Arc::clone(&sim));
        let tcp = TcpListener::bind(addr).await?;
        let local = tcp.local_addr()?;
        let server = if self.tls {
            let key =
                rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(vec![cert_der.into()], key)?;
            let listener = TlsListener::new(tcp, TlsAcceptor::from(Arc::new(config)));
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            })
        } else {
            tokio::spawn(async move {
                let _ = axum::serve(tcp, app).await;
            })
        };
        Ok(PveSim {
            addr: local,
            tls: self.tls,
            fingerprint,
            cert_pem,
            sim,
            server,
        })
    }
}

/// The axum router: the websocket route, everything else through the dispatcher.
pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route(
            "/api2/json/nodes/{node}/qemu/{vmid}/vncwebsocket",
            get(crate::console::vncwebsocket),
        )
        .fallback(any(crate::api::dispatch))
        .with_state(sim)
}

/// A TLS listener for `axum::serve`: handshakes run concurrently, so a stalled client
/// cannot block others.
#[derive(Debug)]
struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    _accept: JoinHandle<()>,
}

impl TlsListener {
    fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> Self {
        let local = tcp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (tx, rx) = mpsc::channel(64);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = tcp.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
                    {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        Self {
            rx,
            local,
            _accept: accept,
        }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self._accept.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop never ends on its own; if it did, stop serving quietly.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// A running simulator. Dropping it stops the server.
#[derive(Debug)]
pub struct PveSim {
    addr: SocketAddr,
    tls: bool,
    fingerprint: String,
    cert_pem: String,
    sim: Arc<Sim>,
    server: JoinHandle<()>,
}

impl PveSim {
    /// A builder with nodes `pve1` (64 GiB, 8 GiB used) and `pve2` (32 GiB, 20 GiB used),
    /// no users and a [`FakeBackend`].
    pub fn builder() -> PveSimBuilder {
        PveSimBuilder::default()
    }

    /// `https://127.0.0.1:PORT` (or `http://` for plain HTTP).
    pub fn base_url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    /// `BASE/api2/json`.
    pub fn api_url(&self) -> String {
        format!("{}/api2/json", self.base_url())
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The certificate's SHA-256 fingerprint, PVE style: `AB:CD:...` (uppercase).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The simulator's clock; advance it to age tickets and console windows.
    pub fn clock(&self) -> &Clock {
        &self.sim.clock
    }

    /// The simulator state, for tests that inspect or tweak it.
    pub fn sim(&self) -> &Arc<Sim> {
        &self.sim
    }
}

impl Drop for PveSim {
    fn drop(&mut self) {
        self.server.abort();
    }
}
