//! The plane's shared state: configuration, the store, the nodes, and the clock.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use porthole_agent::AgentDriver;
use porthole_core::driver::Driver;
use porthole_core::{Limits, UserId, VmId};
use porthole_gateway::{GatewayMetrics, SessionLimiter, SessionPolicy, ticket};
use porthole_qemu::Accel;
use porthole_store::Store;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::services::agents::{AgentSettings, PlanePki};
use crate::services::auth::LoginThrottle;
use crate::services::expiry::ExpirySettings;
use crate::services::images::ImageLibrary;
use crate::services::mail::Mailer;
use crate::services::placement::Overcommit;
use crate::services::secrets::SecretBox;

/// How guests should execute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccelSetting {
    /// Probe KVM by booting a guest; fall back to TCG.
    Auto,
    /// Use this accelerator without probing.
    Fixed(Accel),
}

/// Everything `porthole serve` is told.
#[derive(Clone, Debug)]
pub struct PlaneConfig {
    /// Where the API listens.
    pub listen: SocketAddr,
    /// Where the database, templates and VMs live.
    pub data_dir: PathBuf,
    /// The URL users reach porthole at, for Origin checks and links.
    pub public_url: Option<String>,
    /// When set, the `demo` template is imported from this directory if it is missing.
    pub demo_guest: Option<PathBuf>,
    /// KVM, TCG, or probe.
    pub accel: AccelSetting,
    /// The `qemu-system-x86_64` binary.
    pub qemu: PathBuf,
    /// How long a login token lives.
    pub token_ttl: Duration,
    /// How long `shutdown` waits for the guest before pulling the plug.
    pub shutdown_timeout: Duration,
    /// The first admin's password; generated and printed once when absent.
    pub admin_password: Option<String>,
    /// Console session limits.
    pub consoles: ConsoleSettings,
    /// Self-service rules: default limits, VM lifetime, login lockout.
    pub portal: PortalSettings,
    /// Read the time from this file instead of the system clock (for testing expiry).
    pub clock_file: Option<PathBuf>,
    /// Proxmox accessor mode (`--auth proxmox`): who may log in and what they see is
    /// Proxmox VE's decision. `None`: local accounts.
    pub accessor: Option<crate::services::accessor::AccessorSettings>,
    /// Hypervisor agents: where they connect, and how long tokens and certificates live.
    pub agents: AgentSettings,
    /// Whether this host runs VMs itself (the `local` node).
    pub local_node: bool,
    /// How far placement may overcommit a node's capacity.
    pub overcommit: Overcommit,
}

/// The rules of self-service.
#[derive(Clone, Debug)]
pub struct PortalSettings {
    /// Limits for users with no override of their own or from a group.
    pub default_limits: Limits,
    /// How long a new or renewed VM lives.
    pub vm_lifetime: Duration,
    /// Wrong passwords in a row that lock an account.
    pub max_login_failures: u64,
    /// How long a locked account refuses logins.
    pub lockout: Duration,
    /// Login attempts one address may make per minute, whatever the account.
    pub logins_per_minute_per_address: u32,
    /// Reminders, grace period and sweeps.
    pub expiry: ExpirySettings,
    /// The mail server, as a URL, and the sender; no mail is sent without one.
    pub smtp: Option<(String, String)>,
}

impl Default for PortalSettings {
    fn default() -> Self {
        Self {
            default_limits: Limits {
                cores: 4,
                memory_mib: 8192,
                disk_gib: 100,
            },
            vm_lifetime: Duration::from_secs(90 * 86_400),
            max_login_failures: 5,
            lockout: Duration::from_secs(15 * 60),
            logins_per_minute_per_address: 30,
            expiry: ExpirySettings::default(),
            smtp: None,
        }
    }
}

/// Limits on console tickets and sessions.
#[derive(Clone, Copy, Debug)]
pub struct ConsoleSettings {
    /// Pings, idle timeout and maximum duration of every session.
    pub policy: SessionPolicy,
    /// How long a ticket lives; at most 30 s.
    pub ticket_ttl: Duration,
    /// How many sessions one user may hold at once.
    pub sessions_per_user: usize,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            policy: SessionPolicy::default(),
            ticket_ttl: ticket::MAX_TTL,
            sessions_per_user: 8,
        }
    }
}

/// The time, injectable so tests can move it.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now.
    fn now(&self) -> DateTime<Utc>;

    /// Now, in unix milliseconds, as the store keeps time.
    fn now_millis(&self) -> i64 {
        self.now().timestamp_millis()
    }
}

/// A clock that reads the time from a file, for testing expiry: the file holds an RFC 3339
/// time. Used only with `serve --clock-file`.
#[derive(Debug, Clone)]
pub struct FileClock {
    path: PathBuf,
}

impl FileClock {
    /// A clock reading `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }
}

impl Clock for FileClock {
    fn now(&self) -> DateTime<Utc> {
        std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|text| DateTime::parse_from_rfc3339(text.trim()).ok())
            .map_or_else(Utc::now, |t| t.with_timezone(&Utc))
    }
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The nodes VMs run on, by name: the built-in local one, and those admins added. Agent
/// nodes are also kept with their concrete driver, for heartbeats and enrolment.
#[derive(Debug, Default)]
pub struct Nodes {
    drivers: std::sync::RwLock<BTreeMap<String, Arc<dyn Driver>>>,
    agents: std::sync::RwLock<BTreeMap<String, Arc<AgentDriver>>>,
}

impl Nodes {
    /// The built-in node on this host.
    pub const LOCAL: &'static str = "local";

    /// Nodes with only the local one, if this host runs VMs.
    pub fn local(driver: Option<Arc<dyn Driver>>) -> Self {
        let nodes = Self::default();
        if let Some(driver) = driver {
            nodes.insert(Self::LOCAL, driver);
        }
        nodes
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<dyn Driver>>> {
        self.drivers.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The driver of node `name`.
    pub fn get(&self, name: &str) -> Result<Arc<dyn Driver>, ApiError> {
        self.read()
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::Unavailable(format!("node {name:?} is not configured")))
    }

    /// The driver of node `name`, failing at once with 503 if the node is known to be down.
    pub fn get_online(&self, name: &str) -> Result<Arc<dyn Driver>, ApiError> {
        let driver = self.get(name)?;
        match driver.unavailable() {
            Some(why) => Err(ApiError::Unavailable(format!(
                "{why}; its VMs cannot be used until it answers again"
            ))),
            None => Ok(driver),
        }
    }

    /// Every node, as of now.
    pub fn all(&self) -> Vec<(String, Arc<dyn Driver>)> {
        self.read()
            .iter()
            .map(|(name, driver)| (name.clone(), Arc::clone(driver)))
            .collect()
    }

    /// Every agent node, as of now.
    pub fn agents(&self) -> Vec<(String, Arc<AgentDriver>)> {
        self.agents
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, driver)| (name.clone(), Arc::clone(driver)))
            .collect()
    }

    /// Agent node `name`'s driver, if it has joined.
    pub fn agent(&self, name: &str) -> Option<Arc<AgentDriver>> {
        self.agents
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Adds (or replaces) node `name`.
    pub fn insert(&self, name: &str, driver: Arc<dyn Driver>) {
        self.drivers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), driver);
    }

    /// Adds (or replaces) agent node `name`.
    pub fn insert_agent(&self, name: &str, driver: Arc<AgentDriver>) {
        self.agents
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), Arc::clone(&driver));
        self.insert(name, driver);
    }

    /// Forgets node `name`.
    pub fn remove(&self, name: &str) {
        self.drivers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        self.agents
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
}

/// The plane: everything a request handler or background task may use.
#[derive(Debug)]
pub struct App {
    /// The configuration it was started with.
    pub config: PlaneConfig,
    /// The database.
    pub store: Store,
    /// The nodes.
    pub nodes: Nodes,
    /// Template and ISO files.
    pub images: ImageLibrary,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// How the local node runs guests.
    pub accel: Accel,
    /// Wakes the job workers when a job is queued.
    pub job_queued: Notify,
    /// Seals secrets that must be read back.
    pub secrets: SecretBox,
    /// The console gateway's live state.
    pub consoles: ConsoleState,
    /// Every metric /metrics exports.
    pub metrics: Registry,
    /// Login attempts per address.
    pub login_throttle: LoginThrottle,
    /// Sends expiry reminders and summaries, if a mail server is configured.
    pub mailer: Option<Mailer>,
    /// The CA that signs agents' certificates, and the plane's own certificate.
    pub pki: PlanePki,
}

/// The console gateway's live state.
#[derive(Debug)]
pub struct ConsoleState {
    /// Sessions, bytes and rejections.
    pub metrics: Arc<GatewayMetrics>,
    /// Sessions per user.
    pub limiter: SessionLimiter<UserId>,
    /// One VNC handshake at a time per VM: each sets the VM's one VNC password.
    pub vnc_locks: Mutex<HashMap<VmId, Arc<tokio::sync::Mutex<()>>>>,
    /// Cancelled when the plane stops, closing every session with 1001.
    pub shutdown: CancellationToken,
}

impl ConsoleState {
    /// Fresh state for `settings`.
    pub fn new(settings: &ConsoleSettings, metrics: Arc<GatewayMetrics>) -> Self {
        Self {
            metrics,
            limiter: SessionLimiter::new(settings.sessions_per_user),
            vnc_locks: Mutex::default(),
            shutdown: CancellationToken::new(),
        }
    }

    /// The VNC handshake lock of `vm`.
    pub fn vnc_lock(&self, vm: VmId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.vnc_locks.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(locks.entry(vm).or_default())
    }
}

/// A cheap handle to [`App`] for axum.
#[derive(Clone, Debug)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}
