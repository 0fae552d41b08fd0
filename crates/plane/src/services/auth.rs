//! Accounts, passwords and tokens.
//!
//! Passwords are hashed with argon2id and never logged. A failed login costs the same time
//! whether or not the user exists, so logins cannot be used to discover usernames. A login
//! ends in a bearer token ([`tokens`](crate::services::tokens)).

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use porthole_api::{ApiToken, CreateTokenRequest, CreateUserRequest, LoginResponse, User};
use porthole_core::Role;
use porthole_store::tokens::NewToken;
use porthole_store::users::UserRecord;

use crate::app::App;
use crate::clock::from_millis;
use crate::error::ApiError;
use crate::services::accessor;
use crate::services::audit::{self, Actor, Target};
use crate::services::caller::Caller;
use crate::services::tokens::{
    TokenPurpose, issue_token, random_password, random_secret, token_hash,
};

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

/// Checks that `email` looks like an address.
pub fn validate_email(email: &str) -> Result<(), ApiError> {
    let plausible = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if plausible {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "email",
            "must be an address like name@example.org",
        ))
    }
}

/// Checks username and password and, if they match, mints a token for `purpose`.
///
/// Refused with 429: more than `--logins-per-minute` attempts from one address, or an
/// account locked after `--login-max-failures` wrong passwords in a row (for
/// `--login-lockout`). Every refusal and every lockout is audited.
///
/// In Proxmox accessor mode, Proxmox VE checks the password instead, in `realm` unless the
/// username names one ([`accessor::login`]).
pub async fn login(
    app: &App,
    username: &str,
    password: &str,
    realm: Option<&str>,
    purpose: TokenPurpose,
    remote: Option<SocketAddr>,
) -> Result<LoginResponse, ApiError> {
    if app.config.accessor.is_some() {
        return accessor::login(app, username, realm, password, purpose, remote).await;
    }
    let result = check_login(app, username, password, remote).await;
    let actor = Actor {
        user: result.as_ref().ok(),
        name: username,
        remote,
    };
    audit::record(app, actor, "login", None, &result, None).await;
    issue_token(app, &result?, purpose).await
}

/// The user whose password `password` is, unless throttled or locked.
async fn check_login(
    app: &App,
    username: &str,
    password: &str,
    remote: Option<SocketAddr>,
) -> Result<UserRecord, ApiError> {
    let settings = &app.config.portal;
    if let Some(remote) = remote {
        app.login_throttle
            .attempt(remote.ip(), settings.logins_per_minute_per_address)?;
    }
    let user = app.store.user_by_name(username).await?;
    let now = app.clock.now_millis();
    if let Some(until) = user
        .as_ref()
        .and_then(|u| u.locked_until)
        .filter(|t| *t > now)
    {
        return Err(locked(until, now));
    }
    let hash = user
        .as_ref()
        .map_or_else(|| decoy_hash().to_owned(), |u| u.password_hash.clone());
    let password = password.to_owned();
    let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(ApiError::internal)?;
    match user {
        Some(user) if matches => {
            if user.failed_logins > 0 || user.locked_until.is_some() {
                app.store.record_login_success(user.id).await?;
            }
            Ok(user)
        }
        Some(user) => {
            let lockout = i64::try_from(settings.lockout.as_millis()).unwrap_or(i64::MAX);
            let locked_until = app
                .store
                .record_login_failure(user.id, now, settings.max_login_failures, lockout)
                .await?;
            tracing::info!(username, "login refused: wrong password");
            match locked_until {
                Some(until) => {
                    tracing::warn!(username, "account locked after too many wrong passwords");
                    Err(locked(until, now))
                }
                None => Err(ApiError::Unauthorized("wrong username or password".into())),
            }
        }
        None => {
            tracing::info!(username, "login refused: no such user");
            Err(ApiError::Unauthorized("wrong username or password".into()))
        }
    }
}

fn locked(until: i64, now: i64) -> ApiError {
    let minutes = ((until - now + 59_999) / 60_000).max(1);
    ApiError::TooManyRequests(format!(
        "this account is locked after too many wrong passwords; try again in {minutes} min, \
         or ask an admin to unlock it"
    ))
}

/// Creates an account.
pub async fn create_user(app: &App, request: CreateUserRequest) -> Result<User, ApiError> {
    validate_username(&request.username)?;
    validate_password(&request.password)?;
    if let Some(email) = &request.email {
        validate_email(email)?;
    }
    let record = new_user(
        app,
        &request.username,
        request.password,
        request.role,
        request.email,
    )
    .await?;
    user_view(app, &record).await
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
    let record = UserRecord::new(username, password_hash, role, email, app.clock.now_millis());
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

/// A user as the API shows it, with their limits and usage now.
pub async fn user_view(app: &App, user: &UserRecord) -> Result<User, ApiError> {
    let limits = app
        .store
        .limits(user.id, app.config.portal.default_limits)
        .await?;
    let now = app.clock.now_millis();
    Ok(User {
        id: user.id,
        username: user.username.clone(),
        role: user.role,
        email: user.email.clone(),
        limits,
        limit_overrides: user.limits,
        usage: app.store.usage(user.id).await?,
        groups: app.store.groups_of(user.id).await?,
        locked_until: user.locked_until.filter(|t| *t > now).map(from_millis),
    })
}

/// The caller's tokens and web sessions.
pub async fn tokens(app: &App, caller: &Caller) -> Result<Vec<ApiToken>, ApiError> {
    Ok(app
        .store
        .tokens(caller.user.id, &caller.token_hash, app.clock.now_millis())
        .await?
        .into_iter()
        .map(|t| ApiToken {
            id: t.id,
            label: t.label,
            created_at: from_millis(t.created_at),
            expires_at: from_millis(t.expires_at),
            current: t.current,
        })
        .collect())
}

/// Mints a named API token for the caller, shown once.
pub async fn create_token(
    app: &App,
    caller: &Caller,
    request: CreateTokenRequest,
) -> Result<LoginResponse, ApiError> {
    let label = request.label.trim().to_owned();
    if label.is_empty() || label.chars().count() > 100 || label.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "label",
            "must be 1 to 100 printable characters",
        ));
    }
    let ttl = match request.days {
        None => app.config.token_ttl,
        Some(days @ 1..=365) => Duration::from_secs(u64::from(days) * 86_400),
        Some(days) => {
            return Err(ApiError::invalid(
                "days",
                format!("must be 1 to 365, got {days}"),
            ));
        }
    };
    let token = random_secret("pht_");
    let now = app.clock.now();
    let expires_at = now + ttl;
    let id = uuid::Uuid::new_v4();
    let result = app
        .store
        .insert_token(&NewToken {
            id,
            user_id: caller.user.id,
            token_hash: token_hash(&token),
            label: label.clone(),
            created_at: now.timestamp_millis(),
            expires_at: expires_at.timestamp_millis(),
        })
        .await;
    let target = Target::new("token", id, &label);
    audit::recorded(
        app,
        caller.into(),
        "token.create",
        Some(target),
        None,
        result,
    )
    .await?;
    Ok(LoginResponse { token, expires_at })
}

/// Revokes one of the caller's tokens or sessions.
pub async fn revoke_token(app: &App, caller: &Caller, id: &str) -> Result<(), ApiError> {
    let id: uuid::Uuid = id
        .parse()
        .map_err(|_| ApiError::NotFound(format!("no token has the id {id:?}")))?;
    let result = app.store.delete_token_by_id(caller.user.id, id).await;
    audit::recorded(
        app,
        caller.into(),
        "token.revoke",
        Some(Target::new("token", id, "")),
        None,
        result,
    )
    .await
}

/// Revokes the token with `token_hash`.
pub async fn logout(app: &App, token_hash: &str) -> Result<(), ApiError> {
    app.store
        .delete_token(token_hash)
        .await
        .map_err(ApiError::from)
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
