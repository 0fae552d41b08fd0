//! The web UI's page models: one askama template struct per page, and the views that turn
//! what the services return (the same wire types the REST API answers with) into what a
//! page shows. Nothing here handles a request or reads the store.

pub mod admin;
pub mod consoles;
pub mod login;
pub mod portal;

use porthole_core::{Limits, Usage};
use serde::Deserialize;

use crate::app::App;
use crate::services::caller::Caller;
use crate::services::csrf;

/// What every page's frame needs: who is signed in, and the CSRF token for its forms.
pub(crate) struct Chrome {
    pub username: Option<String>,
    pub is_admin: bool,
    pub csrf: String,
    /// What the last form did, or why it failed, shown once at the top of the page.
    pub flash: Flash,
}

impl Chrome {
    /// The frame of a signed-in user's page; its Admin link follows the user's role.
    pub(crate) fn signed_in(app: &App, caller: &Caller) -> Self {
        Self {
            username: Some(caller.user.username.clone()),
            is_admin: caller.is_admin(),
            csrf: csrf::session_token(app, &caller.token_hash),
            flash: Flash::default(),
        }
    }

    /// The frame of the login page, whose form is bound to the login cookie's `binding`.
    pub(crate) fn signed_out(app: &App, binding: &str) -> Self {
        Self {
            username: None,
            is_admin: false,
            csrf: csrf::login_token(app, binding),
            flash: Flash::default(),
        }
    }

    /// With the message a form handler passed on in the query.
    pub(crate) fn with(mut self, flash: Flash) -> Self {
        self.flash = flash;
        self
    }
}

/// The outcome of the last form, carried in the redirect's query.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Flash {
    pub notice: Option<String>,
    pub error: Option<String>,
}

/// One resource against its limit, drawn as a bar.
pub(crate) struct Meter {
    pub label: &'static str,
    pub text: String,
    /// 0 to 100.
    pub percent: u64,
    pub full: bool,
}

impl Meter {
    pub(crate) fn new(label: &'static str, used: u64, limit: u64, unit: &str) -> Self {
        let percent = used
            .saturating_mul(100)
            .checked_div(limit)
            .map_or(100, |p| p.min(100));
        Self {
            label,
            text: format!("{used} of {limit}{unit}"),
            percent,
            full: used >= limit,
        }
    }

    /// Cores, memory and disk of `usage` against `limits`.
    pub(crate) fn all(usage: Usage, limits: Limits) -> Vec<Meter> {
        vec![
            Meter::new("Cores", usage.cores, limits.cores, ""),
            Meter::new("Memory", usage.memory_mib, limits.memory_mib, " MiB"),
            Meter::new("Disk", usage.disk_gib, limits.disk_gib, " GiB"),
        ]
    }
}

/// A time as the pages show it, to the minute.
pub(crate) fn minute(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}
