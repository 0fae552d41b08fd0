//! Bearer tokens and the sessions they open: 256 random bits, shown once and stored only
//! as SHA-256 digests; the user behind a presented token; and the other random secrets
//! porthole hands out (join tokens, guest passwords).

use std::net::SocketAddr;
use std::time::Duration;

use porthole_api::LoginResponse;
use porthole_store::tokens::NewToken;
use porthole_store::users::UserRecord;
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::error::ApiError;
use crate::services::caller::Caller;

/// The stored form of a bearer token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random secret: 256 bits, hex-encoded, with a prefix that makes it recognisable in a
/// leaked file.
pub fn random_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// A password a person can type: 24 characters from a 57-letter alphabet without look-alikes
/// (about 140 bits).
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    // Bytes at or above the largest multiple of the alphabet's size are rejected, so every
    // letter is equally likely.
    let limit = 256 - 256 % ALPHABET.len();
    let mut password = String::with_capacity(24);
    while password.len() < 24 {
        let mut byte = [0u8; 1];
        rand::fill(&mut byte);
        if usize::from(byte[0]) < limit {
            password.push(ALPHABET[usize::from(byte[0]) % ALPHABET.len()] as char);
        }
    }
    password
}

/// How long a web UI session lasts.
pub const WEB_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// What a login is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenPurpose {
    /// A bearer token for the CLI and scripts, valid for `--token-days`.
    Api,
    /// The web UI's session cookie, valid for [`WEB_SESSION_TTL`].
    Web,
}

/// Starts a session for `user`: a new token, valid for what `purpose` allows.
pub async fn issue_token(
    app: &App,
    user: &UserRecord,
    purpose: TokenPurpose,
) -> Result<LoginResponse, ApiError> {
    let token = random_secret("pht_");
    let now = app.clock.now();
    let (label, ttl) = match purpose {
        TokenPurpose::Api => ("login", app.config.token_ttl),
        TokenPurpose::Web => ("web session", WEB_SESSION_TTL),
    };
    let expires_at = now + ttl;
    app.store
        .insert_token(&NewToken {
            id: uuid::Uuid::new_v4(),
            user_id: user.id,
            token_hash: token_hash(&token),
            label: label.into(),
            created_at: now.timestamp_millis(),
            expires_at: expires_at.timestamp_millis(),
        })
        .await?;
    tracing::info!(username = %user.username, "login");
    Ok(LoginResponse { token, expires_at })
}

/// The user whose token is `token`.
pub async fn authenticate(
    app: &App,
    token: &str,
    remote: Option<SocketAddr>,
) -> Result<Caller, ApiError> {
    let token_hash = token_hash(token);
    let user = app
        .store
        .user_by_token(&token_hash, app.clock.now_millis())
        .await?
        .ok_or_else(|| {
            ApiError::Unauthorized("the token is unknown or expired; log in again".into())
        })?;
    Ok(Caller {
        user,
        token_hash,
        remote,
    })
}
