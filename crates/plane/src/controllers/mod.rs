//! HTTP handlers: parse the request, call a service, shape the reply. Nothing else.

pub mod admin;
pub mod agents;
pub mod assets;
pub mod consoles;
pub mod csrf;
pub mod health;
pub mod images;
pub mod jobs;
pub mod nodes;
pub mod portal;
pub mod proxmox;
pub mod session;
pub mod users;
pub mod vms;
pub mod web;
