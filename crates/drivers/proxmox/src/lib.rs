//! A typed client for the Proxmox VE API (`/api2/json`), the base of porthole's Proxmox
//! driver and of its Proxmox-login accessor mode.
//!
//! - [`Client`] ([`ClientBuilder`]) speaks the endpoints porthole needs, with typed
//!   requests and answers ([`types`]), ticket or API-token auth ([`auth`]), and pinned or
//!   CA-based TLS ([`tls`]).
//! - Long operations return a [`Upid`]; [`Client::wait_task`] polls it ([`task`]).
//! - [`Permissions`] answers "may this user do X on that VM" the way PVE does.
//! - Every failure is an [`Error`] that says whether it may be retried.
//!
//! Answers are decoded leniently ([`lenient`]) because real servers send numbers as
//! strings and flags as `0`/`1` depending on version.

pub mod auth;
pub mod client;
pub mod console;
pub mod driver;
pub mod error;
pub mod lenient;
pub mod permissions;
pub mod task;
pub mod tls;
pub mod types;

pub use auth::{ApiToken, Credentials, PasswordLogin, Secret, Ticket};
pub use client::{Client, ClientBuilder, TaskWait, WebSocketTarget};
pub use driver::ProxmoxDriver;
pub use error::{Error, Result, Retry};
pub use permissions::Permissions;
pub use task::{TaskOutcome, TaskStatus, Upid};
pub use tls::{CertFingerprint, TlsOptions};
