//! Console tickets: the one thing a browser presents to open a console.
//!
//! A ticket is 256 random bits. Only its SHA-256 is stored, with the user, target and kind it
//! is bound to and an expiry of at most [`MAX_TTL`]. Presenting it consumes it (the store
//! deletes the row in the same statement that reads it), so a ticket works once, and a
//! ticket that fails any check is burned too.

use std::time::Duration;

use sha2::{Digest, Sha256};

/// The longest a ticket may live.
pub const MAX_TTL: Duration = Duration::from_secs(30);

/// A freshly minted ticket: the secret for the client, the hash for the store.
#[derive(Clone, PartialEq, Eq)]
pub struct MintedTicket {
    /// Given to the client once.
    pub secret: String,
    /// Stored.
    pub hash: String,
}

impl std::fmt::Debug for MintedTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedTicket")
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// Mints a ticket.
pub fn mint() -> MintedTicket {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let secret = format!("pct_{}", hex::encode(bytes));
    MintedTicket {
        hash: hash(&secret),
        secret,
    }
}

/// The stored form of a ticket.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Why a presented ticket was refused; also the `reason` label of the rejection metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// No ticket was presented.
    Missing,
    /// No such ticket: never minted, or already used.
    Unknown,
    /// Its time ran out.
    Expired,
    /// Minted for another VM or console.
    WrongTarget,
    /// Minted for the other console kind.
    WrongKind,
    /// The user no longer exists or no longer has access.
    AccessRevoked,
    /// The request came from a page on another origin.
    ForeignOrigin,
    /// The user already has the most sessions allowed.
    TooManySessions,
}

impl Rejection {
    /// Every reason, for exporting zero-valued metrics.
    pub const ALL: [Rejection; 8] = [
        Rejection::Missing,
        Rejection::Unknown,
        Rejection::Expired,
        Rejection::WrongTarget,
        Rejection::WrongKind,
        Rejection::AccessRevoked,
        Rejection::ForeignOrigin,
        Rejection::TooManySessions,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Missing => "missing",
            Rejection::Unknown => "unknown",
            Rejection::Expired => "expired",
            Rejection::WrongTarget => "wrong_target",
            Rejection::WrongKind => "wrong_kind",
            Rejection::AccessRevoked => "access_revoked",
            Rejection::ForeignOrigin => "foreign_origin",
            Rejection::TooManySessions => "too_many_sessions",
        }
    }

    /// What the client is told.
    pub fn message(self) -> &'static str {
        match self {
            Rejection::Missing => "no console ticket: request one with POST .../console",
            Rejection::Unknown => "the console ticket is unknown or was already used",
            Rejection::Expired => "the console ticket expired; request a new one",
            Rejection::WrongTarget => "the console ticket is for another console",
            Rejection::WrongKind => "the console ticket is for the other console kind",
            Rejection::AccessRevoked => "you no longer have access to this console",
            Rejection::ForeignOrigin => "console connections from this origin are not allowed",
            Rejection::TooManySessions => "you have the most console sessions allowed open already",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_random_and_stored_only_as_hashes() {
        let a = mint();
        let b = mint();
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.secret.len(), 4 + 64);
        assert_eq!(a.hash, hash(&a.secret));
        assert!(
            !format!("{a:?}").contains(&a.secret),
            "Debug must not show the secret"
        );
    }
}
