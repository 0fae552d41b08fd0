//! What the plane and its agents say to each other, over mutual TLS.
//!
//! The agent's API (the plane calls it) lives under `/v1`; the plane's API for agents
//! (enrolment, renewal, template images) under `/agent/v1`. Bodies are JSON. A driver error
//! crosses the wire as a [`WireError`] and comes out as the same [`DriverError`] variant, so
//! the plane answers users exactly as it would for a local VM.

use std::borrow::Cow;

use porthole_core::driver::{Capacity, DriverError, Name, PowerState, Reported};
use porthole_core::{SpecError, VmId};
use serde::{Deserialize, Serialize};

/// The response header that carries the VNC password of a console stream. It only ever
/// travels from an agent to the plane, which answers QEMU's VNC authentication with it.
pub const VNC_PASSWORD_HEADER: &str = "x-porthole-vnc-password";
/// The response header with the SHA-256 (hex) the plane records for an image it serves.
pub const SHA256_HEADER: &str = "x-porthole-sha256";

/// What an agent answers a heartbeat with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    /// The agent's porthole version.
    pub version: String,
    /// What the host can run.
    pub capacity: Capacity,
    /// Every VM the host has, with its power state.
    pub inventory: Vec<(VmId, PowerState)>,
    /// The templates and ISOs the host has cached.
    #[serde(default)]
    pub cached: Cached,
}

/// The images an agent has cached.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cached {
    /// Template ids.
    pub templates: Vec<porthole_core::TemplateId>,
    /// ISO ids.
    pub isos: Vec<porthole_core::IsoId>,
}

/// A line of the streamed answer to a create: progress, then how it ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CreateEvent {
    /// How far it got.
    Progress {
        /// 0.0 to 1.0.
        fraction: f32,
        /// What is happening, for a person.
        step: String,
    },
    /// The VM exists.
    Done,
    /// It failed.
    Failed {
        /// Why.
        error: WireError,
    },
}

/// A `shutdown` request.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ShutdownRequest {
    /// How long the guest has to power off before the plug is pulled.
    pub timeout_secs: u64,
}

/// A change of a VM's CD-ROM (an ISO, or none) and boot order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootMediaRequest {
    /// The ISO; the agent fetches it into its cache if it has no copy yet.
    pub cdrom: Option<porthole_core::IsoId>,
    /// Disk or CD-ROM first.
    pub order: porthole_core::BootOrder,
}

/// A control message on a console stream (a WebSocket text message; binary messages are
/// the console's bytes).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleControl {
    /// The viewer's terminal is now this many columns and rows.
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
}

/// A join request: the one-time token, the agent's CSR, and where the plane reaches it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    /// `NODE.SECRET` from the join token.
    pub token: String,
    /// The agent's certificate signing request, PEM.
    pub csr: String,
    /// The agent's API, `https://HOST:PORT`.
    pub address: String,
}

/// A renewal request, made with the current certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenewRequest {
    /// A CSR for the new key, PEM.
    pub csr: String,
    /// The agent's API, `https://HOST:PORT`.
    pub address: String,
}

/// What the plane tells an agent at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelloRequest {
    /// The agent's API, `https://HOST:PORT`.
    pub address: String,
}

/// A signed certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Enrolled {
    /// The node name the certificate is for.
    pub node: String,
    /// The certificate, PEM.
    pub certificate: String,
    /// The plane's CA certificate, PEM.
    pub ca: String,
}

/// Why the plane refused an agent's request: the plane's usual error body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refusal {
    /// The error.
    pub error: RefusalDetail,
}

/// The part of [`Refusal`] an agent reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefusalDetail {
    /// What went wrong and what to do.
    pub message: String,
}

/// Which [`DriverError`] a [`WireError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// [`DriverError::Unsupported`].
    Unsupported,
    /// [`DriverError::NotFound`].
    NotFound,
    /// [`DriverError::BadImage`].
    BadImage,
    /// [`DriverError::Hypervisor`].
    Hypervisor,
    /// [`DriverError::Timeout`].
    Timeout,
    /// [`DriverError::Unreachable`].
    Unreachable,
    /// [`DriverError::Invalid`].
    Invalid,
    /// [`DriverError::Conflict`].
    Conflict,
    /// [`DriverError::SnapshotNotFound`].
    SnapshotNotFound,
    /// [`DriverError::Io`].
    Io,
}

/// A [`DriverError`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireError {
    /// The variant.
    pub kind: ErrorKind,
    /// The operation, capability or field name the variant carries.
    #[serde(default)]
    pub name: Option<String>,
    /// The VM it concerns.
    #[serde(default)]
    pub vm: Option<VmId>,
    /// Seconds waited, for timeouts.
    #[serde(default)]
    pub seconds: Option<u64>,
    /// The message (for [`ErrorKind::Io`], with its cause).
    pub message: String,
}

impl From<&DriverError> for WireError {
    fn from(error: &DriverError) -> Self {
        let wire = |kind, name: Option<&str>, message: String| WireError {
            kind,
            name: name.map(str::to_owned),
            vm: None,
            seconds: None,
            message,
        };
        match error {
            DriverError::Unsupported(what) => {
                wire(ErrorKind::Unsupported, Some(what), String::new())
            }
            DriverError::NotFound(vm) => WireError {
                vm: Some(*vm),
                ..wire(ErrorKind::NotFound, None, String::new())
            },
            DriverError::BadImage(why) => wire(ErrorKind::BadImage, None, why.clone()),
            DriverError::Hypervisor { operation, cause } => wire(
                ErrorKind::Hypervisor,
                Some(operation),
                porthole_core::error_chain(cause.as_ref()),
            ),
            DriverError::Timeout { operation, seconds } => WireError {
                seconds: Some(*seconds),
                ..wire(ErrorKind::Timeout, Some(operation), String::new())
            },
            DriverError::Unreachable(why) => wire(ErrorKind::Unreachable, None, why.clone()),
            DriverError::Invalid(spec) => {
                wire(ErrorKind::Invalid, Some(&spec.field), spec.problem.clone())
            }
            DriverError::Conflict { operation, reason } => {
                wire(ErrorKind::Conflict, Some(operation), reason.clone())
            }
            DriverError::SnapshotNotFound { vm, name } => WireError {
                vm: Some(*vm),
                ..wire(ErrorKind::SnapshotNotFound, Some(name), String::new())
            },
            DriverError::Io { context, source } => {
                wire(ErrorKind::Io, None, format!("{context}: {source}"))
            }
        }
    }
}

impl From<WireError> for DriverError {
    fn from(wire: WireError) -> Self {
        let name =
            || -> Name { Cow::Owned(wire.name.clone().unwrap_or_else(|| "operation".into())) };
        let vm = wire.vm.unwrap_or_else(|| VmId::from(uuid::Uuid::nil()));
        match wire.kind {
            ErrorKind::Unsupported => DriverError::Unsupported(name()),
            ErrorKind::NotFound => DriverError::NotFound(vm),
            ErrorKind::BadImage => DriverError::BadImage(wire.message),
            ErrorKind::Hypervisor => DriverError::hypervisor(name(), Reported(wire.message)),
            ErrorKind::Timeout => DriverError::Timeout {
                operation: name(),
                seconds: wire.seconds.unwrap_or(0),
            },
            ErrorKind::Unreachable => DriverError::Unreachable(wire.message),
            ErrorKind::Invalid => DriverError::Invalid(SpecError::new(name(), wire.message)),
            ErrorKind::Conflict => DriverError::Conflict {
                operation: name(),
                reason: wire.message,
            },
            ErrorKind::SnapshotNotFound => DriverError::SnapshotNotFound {
                vm,
                name: wire.name.unwrap_or_default(),
            },
            ErrorKind::Io => DriverError::failed("file operation on the agent", wire.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_errors_cross_the_wire_unchanged() {
        let vm = VmId::random();
        let errors = [
            DriverError::Unsupported("snapshots".into()),
            DriverError::NotFound(vm),
            DriverError::BadImage("not qcow2".into()),
            DriverError::failed("start", "qemu exited"),
            DriverError::Timeout {
                operation: "shutdown".into(),
                seconds: 30,
            },
            DriverError::Invalid(SpecError::new("cloud_init", "bad user")),
            DriverError::Conflict {
                operation: "snapshot rollback".into(),
                reason: "stop it first".into(),
            },
            DriverError::SnapshotNotFound {
                vm,
                name: "before".into(),
            },
        ];
        for error in errors {
            let json = serde_json::to_string(&WireError::from(&error)).unwrap();
            let back = DriverError::from(serde_json::from_str::<WireError>(&json).unwrap());
            assert_eq!(back.to_string(), error.to_string(), "{json}");
            assert_eq!(
                porthole_core::error_chain(&back),
                porthole_core::error_chain(&error),
                "{json}"
            );
        }
    }
}
