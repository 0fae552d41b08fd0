//! What `porthole serve` is told: where it listens and keeps its data, how guests run, the
//! console limits, the self-service rules, accessor mode, agents and placement. Plain data
//! with defaults and checks; nothing here does I/O.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use porthole_core::driver::Driver;
use porthole_core::{Limits, SpecError};
use porthole_gateway::{SessionPolicy, ticket};
use porthole_proxmox::{CertFingerprint, TlsOptions};
use porthole_qemu::Accel;
use serde::{Deserialize, Serialize};

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
    pub accessor: Option<AccessorSettings>,
    /// Hypervisor agents: where they connect, and how long tokens and certificates live.
    pub agents: AgentSettings,
    /// Which VMs this host runs itself, as the `local` node.
    pub local_node: LocalNode,
    /// How far placement may overcommit a node's capacity.
    pub overcommit: Overcommit,
}

/// What runs the built-in `local` node.
#[derive(Clone, Debug)]
pub enum LocalNode {
    /// QEMU on this host: the default.
    Qemu,
    /// Nothing: agents and clusters run every VM (`--no-local-node`).
    Off,
    /// This driver, in QEMU's place, for tests of the plane that boot no guest. The plane
    /// neither checks for QEMU nor probes KVM.
    Driver(Arc<dyn Driver>),
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

/// Agent settings of `porthole serve`.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Where agents join and fetch images (TLS); `None`: agents cannot join.
    pub listen: Option<SocketAddr>,
    /// How long an agent's certificate lives; agents renew at two thirds.
    pub certificate_ttl: Duration,
    /// How long a join token stays usable.
    pub join_ttl: Duration,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            listen: None,
            certificate_ttl: Duration::from_secs(30 * 86_400),
            join_ttl: Duration::from_secs(3_600),
        }
    }
}

/// When and how VMs expire.
#[derive(Clone, Debug)]
pub struct ExpirySettings {
    /// Days before expiry on which the owner is reminded; `0` is the last day.
    pub reminder_days: Vec<u32>,
    /// How long an expired VM stays (stopped) before it is deleted.
    pub grace: Duration,
    /// How often to sweep.
    pub interval: Duration,
    /// The hour (UTC) from which the admins' daily summary goes out.
    pub summary_hour: u32,
}

impl Default for ExpirySettings {
    fn default() -> Self {
        Self {
            reminder_days: vec![10, 7, 3, 1, 0],
            grace: Duration::from_secs(7 * 86_400),
            interval: Duration::from_secs(60),
            summary_hour: 7,
        }
    }
}

/// Where the accessor's Proxmox VE is, and which certificates it may present.
#[derive(Debug, Clone)]
pub struct AccessorSettings {
    /// The PVE API, `https://pve:8006`.
    pub url: String,
    /// TLS trust.
    pub trust: Trust,
    /// The realm a login uses when the username names none.
    pub default_realm: String,
}

/// How far placement may fill a node beyond its real capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Overcommit {
    /// Virtual cores per host CPU thread.
    pub cpu: f64,
    /// Guest memory per byte of host memory.
    pub memory: f64,
    /// Guest disk per byte of disk (qcow2 overlays grow only as guests write).
    pub disk: f64,
}

impl Default for Overcommit {
    fn default() -> Self {
        Self {
            cpu: 4.0,
            memory: 1.0,
            disk: 2.0,
        }
    }
}

impl Overcommit {
    /// Checks that every ratio is positive and finite; `field` names the setting.
    pub fn validate(&self) -> Result<(), SpecError> {
        for (field, ratio) in [
            ("cpu_overcommit", self.cpu),
            ("memory_overcommit", self.memory),
            ("disk_overcommit", self.disk),
        ] {
            if !(ratio.is_finite() && ratio > 0.0) {
                return Err(SpecError::new(
                    field,
                    "must be a positive number such as 1.5",
                ));
            }
        }
        Ok(())
    }
}

/// Which certificates a node's API may present.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trust {
    /// The system's trust store.
    System,
    /// A CA certificate, PEM.
    Ca(String),
    /// Exactly this certificate.
    Fingerprint(String),
    /// Anything (labs and tests only).
    Insecure,
}

impl Trust {
    /// The trust a request asks for: at most one of `ca`, `fingerprint` and `insecure`.
    pub fn choose(
        ca: Option<String>,
        fingerprint: Option<String>,
        insecure: bool,
    ) -> Result<Trust, SpecError> {
        match (ca, fingerprint, insecure) {
            (None, None, false) => Ok(Trust::System),
            (Some(ca), None, false) => Ok(Trust::Ca(ca)),
            (None, Some(fingerprint), false) => {
                fingerprint
                    .parse::<CertFingerprint>()
                    .map_err(|e| SpecError::new("fingerprint", e.to_string()))?;
                Ok(Trust::Fingerprint(fingerprint))
            }
            (None, None, true) => Ok(Trust::Insecure),
            _ => Err(SpecError::new(
                "tls",
                "give at most one of ca, fingerprint and insecure",
            )),
        }
    }

    /// The client's TLS options.
    pub fn options(&self) -> Result<TlsOptions, SpecError> {
        Ok(match self {
            Trust::System => TlsOptions::System,
            Trust::Ca(pem) => TlsOptions::CaPem(pem.clone()),
            Trust::Fingerprint(fingerprint) => {
                TlsOptions::Fingerprint(fingerprint.parse().map_err(
                    |e: porthole_proxmox::tls::TlsError| {
                        SpecError::new("fingerprint", e.to_string())
                    },
                )?)
            }
            Trust::Insecure => TlsOptions::Insecure,
        })
    }
}

/// Checks a URL for a Proxmox API: `https://host[:port]`, or `http://` for tests.
pub fn check_url(url: &str) -> Result<(), SpecError> {
    let parsed = url::Url::parse(url)
        .map_err(|e| SpecError::new("url", format!("{e}; give it as https://HOST:8006")))?;
    if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() {
        return Err(SpecError::new("url", "give it as https://HOST:8006"));
    }
    Ok(())
}
