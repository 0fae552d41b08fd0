//! The plane's business clock: expiry, tickets and records read the time from here, so
//! tests can move it (`serve --clock-file`). Job leases follow the system clock instead.

use std::fmt;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

/// The time, injectable so tests can move it.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now.
    fn now(&self) -> DateTime<Utc>;

    /// Now, in unix milliseconds, as the store keeps time.
    fn now_millis(&self) -> i64 {
        self.now().timestamp_millis()
    }
}

/// A clock that reads the time from a file, for testing expiry: the file holds an RFC 3339
/// time. Used only with `serve --clock-file`.
#[derive(Debug, Clone)]
pub struct FileClock {
    path: PathBuf,
}

impl FileClock {
    /// A clock reading `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }
}

impl Clock for FileClock {
    fn now(&self) -> DateTime<Utc> {
        std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|text| DateTime::parse_from_rfc3339(text.trim()).ok())
            .map_or_else(Utc::now, |t| t.with_timezone(&Utc))
    }
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Milliseconds to a UTC timestamp, for the wire.
pub fn from_millis(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap_or_default()
}
