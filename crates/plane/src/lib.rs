//! porthole's control plane.
//!
//! [`Plane::open`] brings everything up in order:
//! 1. lock the data directory, so two planes never drive the same VMs;
//! 2. open the database and bring its schema up to date;
//! 3. choose KVM or TCG (probing unless told), and log the choice once;
//! 4. open the local QEMU node, which re-adopts VMs whose QEMU still runs;
//! 5. make sure the `admin` account (and with `--demo`, the `demo` template) exists;
//! 6. release the leases of jobs a previous run left running, and record every VM's real
//!    state.
//!
//! [`Plane::serve`] then runs the REST API, the job workers and the reconciler until it is
//! told to stop.

pub mod app;
pub mod clock;
pub mod config;
mod controllers;
pub mod error;
pub mod extract;
pub mod library;
pub mod mail;
pub mod openapi;
pub mod pki;
pub mod registry;
pub mod router;
pub mod secrets;
pub mod services;
pub mod throttle;

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::serve::ListenerExt;
use nix::fcntl::{Flock, FlockArg};
use porthole_qemu::Accel;
use porthole_store::Store;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use app::{App, AppState, ConsoleState};
use clock::{Clock, FileClock, SystemClock};
pub use config::{
    AccelSetting, AccessorSettings, AgentSettings, ConsoleSettings, ExpirySettings, LocalNode,
    Overcommit, PlaneConfig, PortalSettings, Trust, check_url,
};
use error::chain;
use mail::Mailer;
use porthole_gateway::GatewayMetrics;
use prometheus_client::registry::Registry;
use registry::NodeRegistry;
use secrets::SecretBox;
use services::nodes;
use services::{agents, auth, expiry, images, jobs, reconcile};

/// A plane that is open and ready to serve.
#[derive(Debug)]
pub struct Plane {
    app: AppState,
    listener: TcpListener,
    agent_listener: Option<TcpListener>,
    _lock: Flock<std::fs::File>,
    /// The `admin` password, if this start generated it. Show it to the operator once.
    pub generated_admin_password: Option<String>,
}

impl Plane {
    /// Opens the plane described by `config`. See the crate docs for the steps.
    pub async fn open(config: PlaneConfig) -> anyhow::Result<Plane> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.data_dir)
            .with_context(|| {
                format!("creating the data directory {}", config.data_dir.display())
            })?;
        let data_dir = config.data_dir.canonicalize()?;
        let lock = {
            let data_dir = data_dir.clone();
            tokio::task::spawn_blocking(move || lock_data_dir(&data_dir)).await??
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let agent_listener = match config.agents.listen {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("cannot listen for agents on {address}"))?,
            ),
            None => None,
        };

        let store = Store::open_sqlite(&data_dir.join("porthole.db"))
            .await
            .map_err(|e| anyhow::anyhow!("opening the database: {}", chain(&e)))?;
        let accel = match (&config.local_node, config.accel) {
            (LocalNode::Driver(_), _) => Accel::Tcg,
            (_, AccelSetting::Fixed(accel)) => {
                check_qemu(&config.qemu).await?;
                tracing::info!(
                    accel = accel.as_str(),
                    "guests run under the configured accelerator"
                );
                accel
            }
            (_, AccelSetting::Auto) => {
                check_qemu(&config.qemu).await?;
                let choice = porthole_qemu::accel::probe(&config.qemu, &data_dir).await;
                tracing::info!(accel = choice.accel.as_str(), reason = %choice.reason, "chose the guest accelerator");
                choice.accel
            }
        };
        let pki = pki::PlanePki::open(&data_dir)
            .map_err(|e| anyhow::anyhow!("opening the agents' certificate authority: {e}"))?;
        let images = library::ImageLibrary::open(&data_dir).context("opening the image library")?;
        let local = match &config.local_node {
            LocalNode::Qemu => {
                Some(nodes::qemu::open_local(&data_dir, &config.qemu, accel, &images).await?)
            }
            LocalNode::Off => {
                tracing::info!("--no-local-node: this host runs no VMs; agents do");
                None
            }
            LocalNode::Driver(driver) => Some(Arc::clone(driver)),
        };
        let secrets = SecretBox::open(&data_dir.join("secret.key"))?;
        let gateway_metrics = Arc::new(GatewayMetrics::default());
        let mut metrics = Registry::default();
        gateway_metrics.register(&mut metrics);
        let consoles = ConsoleState::new(&config.consoles, gateway_metrics);
        let clock: Arc<dyn Clock> = match &config.clock_file {
            Some(path) => {
                tracing::warn!(file = %path.display(), "reading the time from a file (--clock-file): for testing only");
                Arc::new(FileClock::new(path.clone()))
            }
            None => Arc::new(SystemClock),
        };
        let mailer = match &config.portal.smtp {
            Some((url, from)) => Some(Mailer::new(url, from)?),
            None => {
                tracing::info!("no --smtp-url: expiry reminders are recorded but not mailed");
                None
            }
        };
        let config = PlaneConfig { data_dir, ..config };
        let app = AppState(Arc::new(App {
            config,
            store,
            nodes: NodeRegistry::local(local),
            images,
            clock,
            accel,
            job_queued: Notify::new(),
            secrets,
            consoles,
            metrics,
            login_throttle: Default::default(),
            mailer,
            pki,
        }));

        nodes::load(&app)
            .await
            .map_err(|e| anyhow::anyhow!("loading the nodes: {e}"))?;
        // Accessor mode has no local accounts: Proxmox VE decides who logs in.
        let generated_admin_password = if app.config.accessor.is_some() {
            None
        } else {
            auth::ensure_admin(&app)
                .await
                .map_err(|e| anyhow::anyhow!("creating the admin account: {e}"))?
        };
        if let Some(guest) = &app.config.demo_guest {
            images::ensure_demo_template(&app, guest)
                .await
                .map_err(|e| anyhow::anyhow!("preparing the demo template: {e}"))?;
        }
        // This process holds the data directory's lock, so no other worker is alive.
        let resumed = app.store.expire_all_leases().await?;
        if resumed > 0 {
            tracing::info!(
                jobs = resumed,
                "resuming jobs an earlier run left unfinished"
            );
        }
        let interrupted = app
            .store
            .close_interrupted_sessions(app.clock.now_millis())
            .await?;
        if interrupted > 0 {
            tracing::info!(
                sessions = interrupted,
                "closed the records of console sessions an earlier run left open"
            );
        }
        reconcile::reconcile_states(&app)
            .await
            .map_err(|e| anyhow::anyhow!("reconciling VM states: {e}"))?;
        if let Err(e) = reconcile::report_unknown_vms(&app).await {
            tracing::warn!(error = %e, "cannot list the node's VMs");
        }
        Ok(Plane {
            app,
            listener,
            agent_listener,
            _lock: lock,
            generated_admin_password,
        })
    }

    /// The address agents join at, if the plane listens for them.
    pub fn agent_addr(&self) -> Option<SocketAddr> {
        self.agent_listener.as_ref()?.local_addr().ok()
    }

    /// The address the API listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The accelerator guests run under.
    pub fn accel(&self) -> Accel {
        self.app.accel
    }

    /// The plane's routes over its state, for driving it in-process (tests send requests
    /// through `tower::ServiceExt::oneshot`); [`Plane::serve`] serves the same routes.
    pub fn router(&self) -> axum::Router {
        router::router(self.app.clone())
    }

    /// Serves until `shutdown` resolves. VMs keep running after the plane stops.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let workers = tokio::spawn(jobs::run_workers(self.app.clone(), stop.clone()));
        let reconciler = tokio::spawn(reconcile::run(self.app.clone(), stop.clone()));
        let expiry = tokio::spawn(expiry::run(self.app.clone(), stop.clone()));
        let heartbeats = tokio::spawn(agents::run(self.app.clone(), stop.clone()));
        let agent_api = match self.agent_listener {
            Some(listener) => {
                let pki = &self.app.pki;
                let config = porthole_agent::tls::server_config_with(
                    pki.ca.cert_der(),
                    Arc::clone(&pki.slot),
                    porthole_agent::tls::ClientAuth::Optional,
                )?;
                tracing::info!(address = %listener.local_addr()?, "listening for agents");
                Some(tokio::spawn(porthole_agent::tls::serve(
                    listener,
                    Arc::new(config),
                    controllers::agents::router(self.app.clone()),
                    stop.clone(),
                )))
            }
            None => None,
        };
        tracing::info!(address = %self.listener.local_addr()?, "porthole is serving");
        let sessions = self.app.consoles.shutdown.clone();
        let service =
            router::router(self.app.clone()).into_make_service_with_connect_info::<SocketAddr>();
        // Consoles are interactive: every keystroke and echo goes out at once.
        let listener = self.listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        let result = axum::serve(listener, service)
            .with_graceful_shutdown(async move {
                shutdown.await;
                sessions.cancel();
            })
            .await;
        stop.cancel();
        let _ = tokio::join!(workers, reconciler, expiry, heartbeats);
        if let Some(agent_api) = agent_api {
            let _ = agent_api.await;
        }
        self.app.store.close().await;
        result.context("serving HTTP")
    }
}

/// Takes the data directory's lock, or says which process holds it.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<Flock<std::fs::File>> {
    use std::io::Write;
    let path = data_dir.join("porthole.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut file = file;
    let started = std::time::Instant::now();
    let mut lock = loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => break lock,
            Err((returned, _)) => file = returned,
        }
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        let holder = holder.trim();
        // A plane killed while it was starting a process (between fork and exec) leaves that
        // child holding the lock for a moment after the plane itself is gone.
        if process_is_alive(holder) || started.elapsed() > ORPHANED_LOCK_WAIT {
            bail!(
                "another porthole (pid {holder}) is using {}; stop it first",
                data_dir.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    lock.set_len(0)?;
    write!(lock, "{}", std::process::id())?;
    Ok(lock)
}

/// How long a lock whose recorded holder has exited may take to be released.
const ORPHANED_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether `pid` (as recorded in the lock file) names a running process.
fn process_is_alive(pid: &str) -> bool {
    match pid.parse::<i32>() {
        Ok(pid) if pid > 0 => {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                != Err(nix::errno::Errno::ESRCH)
        }
        // No pid recorded: a plane between taking the lock and writing it.
        _ => true,
    }
}

/// Fails with installation advice if QEMU cannot run.
async fn check_qemu(qemu: &Path) -> anyhow::Result<()> {
    let output = tokio::process::Command::new(qemu)
        .arg("--version")
        .output()
        .await;
    match output {
        Ok(output) if output.status.success() => Ok(()),
        _ => bail!(
            "cannot run {}: install QEMU (apt-get install -t bookworm-backports qemu-system-x86) \
             or pass --qemu PATH",
            qemu.display()
        ),
    }
}
