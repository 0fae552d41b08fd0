//! The plane's services: what handlers and background tasks call. They take typed inputs
//! and the [`Caller`](caller::Caller), enforce the rules (admin checks included), write the
//! store and the audit log, and return typed results or [`crate::error::ApiError`]. They
//! know nothing of HTTP: nothing here imports `controllers`, `extract` or `router`.

pub mod accessor;
pub mod agents;
pub mod audit;
pub mod auth;
pub mod caller;
pub mod consoles;
pub mod csrf;
pub mod expiry;
pub mod images;
pub mod jobs;
pub mod nodes;
pub mod overview;
pub mod placement;
pub mod reconcile;
pub mod ssh_keys;
pub mod tokens;
pub mod users;
pub mod vms;
