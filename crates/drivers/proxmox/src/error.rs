//! The one error type of the Proxmox client, and which of its cases are safe to retry.
//!
//! Retrying follows proxmox-client's rule: a request that never left this host
//! ([`Error::Connect`]) may be sent again whatever it does; one that may have reached
//! the server is retried only if it is idempotent (a `GET`). [`Error::retry`] answers
//! that question for each case, so callers never have to guess.

use std::time::Duration;

use crate::task::{Upid, UpidError};

/// Whether, and how, a failed call may be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The request never reached the server: any request may be sent again.
    Always,
    /// The server may have acted on it: repeat only idempotent requests (`GET`).
    IfIdempotent,
    /// Repeating would fail the same way (bad input, missing rights, a failed task).
    Never,
}

/// Everything that can go wrong talking to a Proxmox VE server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Connecting (TCP or the TLS handshake) failed, so the request was never sent.
    /// Retry: always safe.
    #[error(
        "could not connect to the Proxmox VE API at {url}: check the URL, that pveproxy runs, \
         and the TLS trust settings (CA file or fingerprint)"
    )]
    Connect {
        /// The URL we tried.
        url: String,
        /// The transport's error.
        #[source]
        source: reqwest::Error,
    },

    /// The request was sent but no complete answer came back (timeout, reset).
    /// Retry: only idempotent requests, since the server may have acted.
    #[error(
        "{method} {path}: the Proxmox VE server did not answer completely; it may or may not have acted"
    )]
    Transport {
        /// HTTP method.
        method: &'static str,
        /// API path below `/api2/json`.
        path: String,
        /// The transport's error.
        #[source]
        source: reqwest::Error,
    },

    /// The server refused our credentials (401), even after one fresh login where one was
    /// possible. Retry: never; fix the credentials or log in again.
    #[error(
        "{path}: Proxmox VE rejected the credentials (401): {message}; check the user, realm and password or API token"
    )]
    Unauthorized {
        /// API path below `/api2/json`.
        path: String,
        /// PVE's explanation.
        message: String,
    },

    /// The authenticated user lacks a privilege (403). Retry: never; grant the privilege
    /// on the path in Proxmox (Datacenter → Permissions).
    #[error("{path}: permission denied by Proxmox VE (403): {message}")]
    Forbidden {
        /// API path below `/api2/json`.
        path: String,
        /// PVE's explanation, usually naming the missing privilege.
        message: String,
    },

    /// The path or object does not exist (404). Retry: never.
    #[error("{path}: not found on the Proxmox VE server (404): {message}")]
    NotFound {
        /// API path below `/api2/json`.
        path: String,
        /// PVE's explanation.
        message: String,
    },

    /// Any other non-success status. 5xx on a `GET` may be retried; others are the
    /// caller's to judge with [`Error::retry`].
    #[error("{method} {path} failed with HTTP {status}: {message}")]
    Api {
        /// HTTP method.
        method: &'static str,
        /// API path below `/api2/json`.
        path: String,
        /// HTTP status code.
        status: u16,
        /// PVE's message, with its per-parameter errors.
        message: String,
    },

    /// The answer did not have the shape this client expects. Retry: never; report it
    /// with the PVE version, since the schema moved.
    #[error("{path}: could not decode the Proxmox VE answer: {detail}")]
    Decode {
        /// API path below `/api2/json`.
        path: String,
        /// What did not fit (serde's message, naming the field).
        detail: String,
    },

    /// The login needs a second factor, which this client cannot supply. Retry: never;
    /// use an API token or an account without TFA.
    #[error(
        "Proxmox VE login for {username} requires two-factor authentication; use an API token instead"
    )]
    SecondFactorRequired {
        /// The user that tried to log in.
        username: String,
    },

    /// The ticket expired and there is no password to log in again with. Retry: after a
    /// new login.
    #[error("the Proxmox VE ticket for {username} has expired; log in again")]
    TicketExpired {
        /// Whose ticket it was.
        username: String,
    },

    /// The client was configured wrongly (URL, token syntax). Retry: never.
    #[error("invalid Proxmox client configuration: {0}")]
    Config(String),

    /// The TLS settings could not be loaded. Retry: never.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),

    /// A task id from the server did not parse. Retry: never.
    #[error(transparent)]
    Upid(#[from] UpidError),

    /// A task ended with an exit status other than `OK` or `WARNINGS: n`. Retry: never
    /// blindly; read the task log in PVE.
    #[error("Proxmox VE task {upid} failed: {exitstatus}")]
    TaskFailed {
        /// The task.
        upid: Box<Upid>,
        /// Its exit status, PVE's error message.
        exitstatus: String,
    },

    /// A task was still running when we stopped waiting. It may still finish. Retry: poll
    /// again rather than starting the task again.
    #[error(
        "Proxmox VE task {upid} still running after {waited:?}; it may yet finish, poll it again"
    )]
    TaskTimeout {
        /// The task.
        upid: Box<Upid>,
        /// How long we waited.
        waited: Duration,
    },

    /// Every VMID we were given was taken by someone else before we could use it.
    /// Retry: later, when fewer VMs are being created.
    #[error(
        "could not claim a free VMID after {attempts} attempts; other clients keep taking them"
    )]
    VmidsExhausted {
        /// How many ids we tried.
        attempts: u32,
    },

    /// A console's `vncwebsocket` connection failed or its login was refused. Retry: open
    /// a new proxy; the old ticket is spent.
    #[error("console {step} failed: {message}")]
    Console {
        /// What was being done: "connect", "login".
        step: &'static str,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    /// Whether this failure may be retried; see [`Retry`].
    #[must_use]
    pub fn retry(&self) -> Retry {
        match self {
            Self::Connect { .. } => Retry::Always,
            Self::Transport { .. } | Self::TaskTimeout { .. } | Self::VmidsExhausted { .. } => {
                Retry::IfIdempotent
            }
            Self::Api { method, status, .. } if *status >= 500 => {
                if *method == "GET" {
                    Retry::Always
                } else {
                    Retry::IfIdempotent
                }
            }
            _ => Retry::Never,
        }
    }

    /// The HTTP status, for errors the server answered.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { .. } => Some(401),
            Self::Forbidden { .. } => Some(403),
            Self::NotFound { .. } => Some(404),
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the server refused to create a VM because its VMID is already in use
    /// (another client took the id `/cluster/nextid` gave us).
    #[must_use]
    pub fn is_vmid_taken(&self) -> bool {
        match self {
            Self::Api { message, .. } => {
                let m = message.to_ascii_lowercase();
                m.contains("already exists") || m.contains("config file already exists")
            }
            _ => false,
        }
    }
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
