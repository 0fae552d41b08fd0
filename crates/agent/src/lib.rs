//! Hypervisor agents: one plane, many hosts.
//!
//! - [`pki`]: the plane's certificate authority, which signs each agent's key after checking
//!   a one-time join token, and the identities certificates carry.
//! - [`tls`]: mutual TLS 1.3 both ways, with verifiers that pin the plane's CA and check
//!   who is on the other end.
//! - [`wire`]: the messages both sides exchange.
//! - [`enrol`]: the agent's join token, its stored key and certificate, its link to the plane.
//! - [`server`] and [`images`]: the agent's API over its local QEMU driver, and the plane as
//!   the source its image cache fetches templates and ISOs from, once.
//! - [`driver`]: the plane's [`Driver`](porthole_core::Driver) for an agent node.
//! - [`run`]: `porthole agent`.

pub mod driver;
pub mod enrol;
pub mod images;
pub mod pki;
pub mod run;
pub mod server;
pub mod tls;
pub mod wire;

pub use driver::AgentDriver;
