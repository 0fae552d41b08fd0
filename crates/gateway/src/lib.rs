//! porthole's console gateway: the path from a browser or terminal to a VM's console.
//!
//! A connection goes:
//! 1. the client gets a [`ticket`] from the API: 256 random bits, stored hashed, single use,
//!    valid at most 30 s, bound to one user, one console and one kind;
//! 2. it opens a WebSocket presenting the ticket; the plane checks the Origin, consumes the
//!    ticket and re-checks access before upgrading (see the plane's console controller);
//! 3. for VNC, the gateway authenticates to the VNC server itself ([`rfb`]) and offers the
//!    client security type None, so the hypervisor's password never leaves the gateway;
//! 4. the [`relay`] then carries bytes both ways under the session's limits, in plain binary
//!    frames or Proxmox's [`termproxy`] framing, counting them for [`metrics`] and the
//!    audit record.
//!
//! This crate knows nothing of HTTP or the database: the plane adapts its WebSocket to
//! [`relay::Frame`]s and stores tickets and audit records.

pub mod limits;
pub mod metrics;
pub mod relay;
pub mod rfb;
pub mod termproxy;
pub mod ticket;

pub use limits::{SessionLimiter, SessionSlot};
pub use metrics::GatewayMetrics;
pub use relay::{
    Console, End, Frame, Framing, RelayOptions, SessionPolicy, SessionReport, TransportError, WsIo,
};
pub use ticket::{MintedTicket, Rejection};
