//! HTTP handlers: parse the request, call a service, shape the reply. Nothing else.

pub mod assets;
pub mod consoles;
pub mod health;
pub mod images;
pub mod jobs;
pub mod session;
pub mod users;
pub mod vms;
pub mod web;
