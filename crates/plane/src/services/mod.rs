//! The plane's services: what handlers and background tasks call. They take typed inputs,
//! enforce the rules, and return typed results or [`crate::error::ApiError`]; they know
//! nothing of HTTP.

pub mod accessor;
pub mod agents;
pub mod audit;
pub mod auth;
pub mod consoles;
pub mod expiry;
pub mod images;
pub mod jobs;
pub mod mail;
pub mod nodes;
pub mod placement;
pub mod reconcile;
pub mod secrets;
pub mod ssh_keys;
pub mod users;
pub mod vms;
