//! Login attempts per client address: a one-minute window per address, so one address
//! cannot try passwords faster than `--logins-per-minute` whatever the account.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::ApiError;

/// Login attempts per client address in the last minute.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl LoginThrottle {
    /// Counts an attempt from `address`; fails once it made more than `per_minute` in the
    /// current minute.
    pub fn attempt(&self, address: IpAddr, per_minute: u32) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() > 10_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        let (start, count) = windows.entry(address).or_insert((now, 0));
        if now.duration_since(*start) >= Duration::from_secs(60) {
            *start = now;
            *count = 0;
        }
        *count += 1;
        if *count > per_minute {
            let wait = 60 - now.duration_since(*start).as_secs();
            return Err(ApiError::TooManyRequests(format!(
                "too many login attempts from {address}; try again in {wait} s"
            )));
        }
        Ok(())
    }
}
