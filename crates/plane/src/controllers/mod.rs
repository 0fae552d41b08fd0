//! HTTP handlers: parse the request, call a service, shape the reply. Nothing else: the
//! store, the audit log and admin checks belong to the services. [`web`] holds the web UI.

pub mod agents;
pub mod consoles;
pub mod health;
pub mod images;
pub mod jobs;
pub mod nodes;
pub mod proxmox;
pub mod session;
pub mod users;
pub mod vms;
pub mod web;
