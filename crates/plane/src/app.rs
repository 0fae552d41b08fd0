//! The plane's shared state: configuration, the store, the nodes, and the clock.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use porthole_core::driver::Driver;
use porthole_qemu::Accel;
use porthole_store::Store;
use tokio::sync::Notify;

use crate::error::ApiError;
use crate::services::images::ImageLibrary;

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

/// The operating system's clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The nodes VMs run on, by name.
#[derive(Debug, Clone)]
pub struct Nodes {
    drivers: BTreeMap<String, Arc<dyn Driver>>,
}

impl Nodes {
    /// The built-in node on this host.
    pub const LOCAL: &'static str = "local";

    /// Nodes with only the local one.
    pub fn local(driver: Arc<dyn Driver>) -> Self {
        Self {
            drivers: BTreeMap::from([(Self::LOCAL.to_owned(), driver)]),
        }
    }

    /// The driver of node `name`.
    pub fn get(&self, name: &str) -> Result<Arc<dyn Driver>, ApiError> {
        self.drivers
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::Unavailable(format!("node {name:?} is not configured")))
    }

    /// Where a new VM goes.
    pub fn place(&self) -> &str {
        Self::LOCAL
    }

    /// Every node.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<dyn Driver>)> {
        self.drivers
            .iter()
            .map(|(name, driver)| (name.as_str(), driver))
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
