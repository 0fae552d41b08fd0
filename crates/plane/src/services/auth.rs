//! Accounts, passwords and tokens.
//!
//! Passwords are hashed with argon2id and never logged. Bearer tokens are 256 random bits,
//! shown once, and stored only as SHA-256 digests. A failed login costs the same time whether
//! or not the user exists, so logins cannot be used to discover usernames.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use chrono::{DateTime, Utc};
use porthole_api::{CreateUserRequest, LoginResponse, User};
use porthole_core::{Role, UserId};
use porthole_store::tokens::NewToken;
use porthole_store::users::UserRecord;
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::error::ApiError;

/// The first admin's username.
pub const ADMIN: &str = "admin";

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted; argon2 does not need more, and it bounds the work per login.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Hashes `password` with argon2id and a fresh salt. CPU-heavy: run it off the async threads.
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| ApiError::internal(anyhow::anyhow!("hashing a password: {e}")))
}

/// Whether `password` matches the argon2 PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// A hash to verify against when the user does not exist, so both paths cost the same.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password("porthole decoy password").expect("hashing works"))
}

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

/// Checks a username: 1 to 64 characters of `a-z0-9._-`, starting with a letter or digit.
pub fn validate_username(username: &str) -> Result<(), ApiError> {
    let valid = (1..=64).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && username.as_bytes()[0].is_ascii_alphanumeric();
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "username",
            "must be 1 to 64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit",
        ))
    }
}

/// Checks a new password's length.
pub fn validate_password(password: &str) -> Result<(), ApiError> {
    let len = password.chars().count();
    if (MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&len) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "password",
            format!("must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters long"),
        ))
    }
}

/// How long a web UI session lasts.
pub const WEB_SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// What a login is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenPurpose {
    /// A bearer token for the CLI and scripts, valid for `--token-days`.
    Api,
    /// The web UI's session cookie, valid for [`WEB_SESSION_TTL`].
    Web,
}

/// Checks username and password and, if they match, mints a token for `purpose`.
pub async fn login(
    app: &App,
    username: &str,
    password: &str,
    purpose: TokenPurpose,
) -> Result<LoginResponse, ApiError> {
    let user = app.store.user_by_name(username).await?;
    let hash = user
        .as_ref()
        .map_or_else(|| decoy_hash().to_owned(), |u| u.password_hash.clone());
    let password = password.to_owned();
    let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(ApiError::internal)?;
    let user = match user {
        Some(user) if matches => user,
        _ => {
            tracing::info!(username, "login refused");
            return Err(ApiError::Unauthorized("wrong username or password".into()));
        }
    };
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
    tracing::info!(username, "login");
    Ok(LoginResponse { token, expires_at })
}

/// Creates an account.
pub async fn create_user(app: &App, request: CreateUserRequest) -> Result<User, ApiError> {
    validate_username(&request.username)?;
    validate_password(&request.password)?;
    if let Some(email) = &request.email {
        let plausible = email.len() <= 254
            && email
                .split_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
            && !email.chars().any(|c| c.is_whitespace() || c.is_control());
        if !plausible {
            return Err(ApiError::invalid(
                "email",
                "must be an address like name@example.org",
            ));
        }
    }
    let record = new_user(
        app,
        &request.username,
        request.password,
        request.role,
        request.email,
    )
    .await?;
    Ok(user_to_wire(&record))
}

async fn new_user(
    app: &App,
    username: &str,
    password: String,
    role: Role,
    email: Option<String>,
) -> Result<UserRecord, ApiError> {
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(ApiError::internal)??;
    let record = UserRecord {
        id: UserId::random(),
        username: username.to_owned(),
        password_hash,
        role,
        email,
        created_at: app.clock.now_millis(),
    };
    app.store.insert_user(&record).await?;
    Ok(record)
}

/// Makes sure the `admin` account exists. Returns the password if one was generated, for
/// the caller to show exactly once.
pub async fn ensure_admin(app: &App) -> Result<Option<String>, ApiError> {
    if app.store.user_by_name(ADMIN).await?.is_some() {
        return Ok(None);
    }
    let (password, generated) = match &app.config.admin_password {
        Some(password) => {
            validate_password(password).map_err(|_| {
                ApiError::invalid(
                    "PORTHOLE_ADMIN_PASSWORD",
                    format!("must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters long"),
                )
            })?;
            (password.clone(), false)
        }
        None => (random_password(), true),
    };
    match new_user(app, ADMIN, password.clone(), Role::Admin, None).await {
        Ok(_) => Ok(generated.then_some(password)),
        // Another process made it between our check and insert.
        Err(ApiError::Conflict { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A user as the API shows it.
pub fn user_to_wire(user: &UserRecord) -> User {
    User {
        id: user.id,
        username: user.username.clone(),
        role: user.role,
        email: user.email.clone(),
    }
}

/// Revokes the token with `token_hash`.
pub async fn logout(app: &App, token_hash: &str) -> Result<(), ApiError> {
    app.store
        .delete_token(token_hash)
        .await
        .map_err(ApiError::from)
}

/// Milliseconds to a UTC timestamp, for the wire.
pub fn from_millis(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("correct horsE", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn secrets_are_unique_and_hash_stably() {
        let a = random_secret("pht_");
        assert_eq!(a.len(), 4 + 64);
        assert_ne!(a, random_secret("pht_"));
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_ne!(token_hash(&a), a);
        let password = random_password();
        assert_eq!(password.len(), 24);
        assert!(
            password
                .chars()
                .all(|c| c.is_ascii_alphanumeric() && !"0O1lI".contains(c))
        );
    }

    #[test]
    fn usernames_are_checked() {
        for good in ["admin", "a", "jo.doe", "x_1-2"] {
            assert!(validate_username(good).is_ok(), "{good}");
        }
        for bad in ["", ".a", "Admin", "a b", &"a".repeat(65)] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
    }
}
