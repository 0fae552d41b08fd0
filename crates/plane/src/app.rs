//! The plane's shared state, in the way crates.io's `app.rs` holds it: every part lives in
//! a module of its own that never imports [`App`] (the configuration, the clock, the node
//! registry, the image library, the secret box, the PKI, the login throttle, the mailer),
//! so dependencies run one way: handlers and services use `App`, `App` uses its parts.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use porthole_core::{UserId, VmId};
use porthole_gateway::{GatewayMetrics, SessionLimiter};
use porthole_qemu::Accel;
use porthole_store::Store;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{ConsoleSettings, PlaneConfig};
use crate::library::ImageLibrary;
use crate::mail::Mailer;
use crate::pki::PlanePki;
use crate::registry::NodeRegistry;
use crate::secrets::SecretBox;
use crate::throttle::LoginThrottle;

/// The plane: everything a request handler or background task may use.
#[derive(Debug)]
pub struct App {
    /// The configuration it was started with.
    pub config: PlaneConfig,
    /// The database.
    pub store: Store,
    /// The nodes.
    pub nodes: NodeRegistry,
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
