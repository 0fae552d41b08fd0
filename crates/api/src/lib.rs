//! porthole's REST API, version 1: the JSON bodies on the wire, and [`client::Client`],
//! which speaks them.
//!
//! The plane serves these types and the CLI and tests consume them, so the two cannot
//! drift apart. Request bodies reject unknown fields. The OpenAPI document is generated from
//! these definitions (see the plane's `openapi` module) and snapshot-tested.

pub mod client;
mod types;

pub use types::*;
