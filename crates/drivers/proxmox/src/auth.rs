//! Credentials for the PVE API and how each is presented on a request.
//!
//! PVE accepts two kinds:
//! 1. **Tickets.** `POST /access/ticket` with `username`, `password` and `realm` returns a
//!    `ticket` and a `CSRFPreventionToken`. Every request then carries the cookie
//!    `PVEAuthCookie=<ticket>`, and every request that is not a `GET` also carries the
//!    header `CSRFPreventionToken`. A ticket is valid for two hours; posting the current
//!    ticket as the password returns a fresh one, which is how [`crate::Client`] renews it
//!    before it runs out, without keeping the password.
//! 2. **API tokens.** The header `Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET` on
//!    every request; no CSRF token, no expiry to manage.
//!
//! Every secret is a [`Secret`], whose `Debug` prints `<redacted>`.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer};

use crate::error::Error;

/// A secret string (a password, a ticket, a token secret, a VNC password). `Debug` never
/// shows it; [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for putting on the wire.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

/// A user name, realm and password for ticket login.
#[derive(Debug, Clone)]
pub struct PasswordLogin {
    /// The user name without the realm (`alice`), or with it (`alice@pve`), in which case
    /// `realm` is ignored by PVE.
    pub username: String,
    /// The authentication realm (`pam`, `pve`, an LDAP or AD realm).
    pub realm: String,
    /// The password.
    pub password: Secret,
}

impl PasswordLogin {
    /// A login for `username` in `realm`.
    #[must_use]
    pub fn new(username: impl Into<String>, realm: impl Into<String>, password: Secret) -> Self {
        Self {
            username: username.into(),
            realm: realm.into(),
            password,
        }
    }
}

/// An API token, `USER@REALM!TOKENID=SECRET` as PVE shows it when the token is made.
#[derive(Debug, Clone)]
pub struct ApiToken {
    /// The owning user with realm, `alice@pve`.
    pub user: String,
    /// The token's id, the part after `!`.
    pub token_id: String,
    /// The token's secret (a UUID on PVE).
    pub secret: Secret,
}

impl ApiToken {
    /// The value of the `Authorization` header.
    #[must_use]
    pub fn header_value(&self) -> Secret {
        Secret(format!(
            "PVEAPIToken={}!{}={}",
            self.user,
            self.token_id,
            self.secret.expose()
        ))
    }
}

impl FromStr for ApiToken {
    type Err = Error;

    /// Parses `USER@REALM!TOKENID=SECRET` (a `PVEAPIToken=` prefix is accepted too).
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || {
            Error::Config(
                "an API token must look like USER@REALM!TOKENID=SECRET, e.g. porthole@pve!main=1b2c…"
                    .to_owned(),
            )
        };
        let s = s.trim();
        let s = s.strip_prefix("PVEAPIToken=").unwrap_or(s);
        let (id, secret) = s.split_once('=').ok_or_else(bad)?;
        let (user, token_id) = id.split_once('!').ok_or_else(bad)?;
        let (name, realm) = user.split_once('@').ok_or_else(bad)?;
        if name.is_empty() || realm.is_empty() || token_id.is_empty() || secret.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            user: user.to_owned(),
            token_id: token_id.to_owned(),
            secret: Secret(secret.to_owned()),
        })
    }
}

/// A PVE ticket with its CSRF token, and when we obtained it.
#[derive(Debug, Clone)]
pub struct Ticket {
    /// The user the ticket is for, with realm (`alice@pve`), as PVE reported it.
    pub username: String,
    /// The `PVEAuthCookie` value.
    pub ticket: Secret,
    /// The `CSRFPreventionToken` header value.
    pub csrf_token: Secret,
    /// When this client obtained the ticket; its age decides renewal.
    pub obtained: Instant,
}

impl Ticket {
    /// How long PVE accepts a ticket.
    pub const LIFETIME: Duration = Duration::from_secs(2 * 60 * 60);

    /// A ticket obtained just now (for example by the accessor's login).
    #[must_use]
    pub fn new(username: impl Into<String>, ticket: Secret, csrf_token: Secret) -> Self {
        Self {
            username: username.into(),
            ticket,
            csrf_token,
            obtained: Instant::now(),
        }
    }

    /// How long ago the ticket was obtained.
    #[must_use]
    pub fn age(&self) -> Duration {
        self.obtained.elapsed()
    }

    /// The `Cookie` header value.
    #[must_use]
    pub fn cookie(&self) -> Secret {
        Secret(format!("PVEAuthCookie={}", self.ticket.expose()))
    }
}

/// How the client authenticates.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// Log in with a password; the client keeps the password to log in again if the
    /// server ever rejects a renewed ticket.
    Password(PasswordLogin),
    /// Use a ticket obtained elsewhere (the accessor's per-user session); renewed with
    /// itself, and [`Error::TicketExpired`] once it lapses.
    Ticket(Ticket),
    /// Use an API token.
    Token(ApiToken),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_parses_and_formats() {
        let t: ApiToken = "porthole@pve!main=aaaa-bbbb".parse().unwrap();
        assert_eq!(t.user, "porthole@pve");
        assert_eq!(t.token_id, "main");
        assert_eq!(
            t.header_value().expose(),
            "PVEAPIToken=porthole@pve!main=aaaa-bbbb"
        );
        let t2: ApiToken = "PVEAPIToken=root@pam!x=y".parse().unwrap();
        assert_eq!(t2.secret.expose(), "y");
        for bad in [
            "",
            "root@pam",
            "root@pam!x",
            "root!x=y",
            "@pam!x=y",
            "root@pam!=y",
        ] {
            assert!(bad.parse::<ApiToken>().is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let t: ApiToken = "porthole@pve!main=topsecret".parse().unwrap();
        let login = PasswordLogin::new("alice", "pve", Secret::new("hunter2"));
        let ticket = Ticket::new("alice@pve", "PVE:alice@pve:ABC::sig".into(), "csrf1".into());
        let all = format!(
            "{t:?} {login:?} {ticket:?} {:?} {:?}",
            Credentials::Token(t.clone()),
            t.header_value()
        );
        for secret in ["topsecret", "hunter2", "PVE:alice", "csrf1"] {
            assert!(!all.contains(secret), "{secret} leaked in {all}");
        }
        assert!(all.contains("porthole@pve"));
    }
}
