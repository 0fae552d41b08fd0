//! HTTP handlers: parse the request, call a service, shape the reply. Nothing else.

pub mod health;
pub mod images;
pub mod jobs;
pub mod session;
pub mod users;
pub mod vms;
