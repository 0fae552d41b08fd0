//! CSRF protection for the web UI.
//!
//! A signed-in page carries a token that only this plane can make: an HMAC of the session's
//! token hash ([`session_token`]). Every form posts it as the `csrf` field, checked by the
//! `CsrfForm` extractor; scripts send it in the `X-CSRF-Token` header, checked for every
//! cookie-authenticated API request that changes state (both in `extract.rs`). The login form,
//! which has no session yet, is bound to a random `porthole_login` cookie the login page
//! sets ([`login_token`]). SameSite=Strict cookies and the Origin check stay in place as
//! further layers.

use crate::app::App;
use crate::error::ApiError;
use crate::services::caller::Caller;

/// The token of the session whose token hash is `token_hash`.
pub fn session_token(app: &App, token_hash: &str) -> String {
    app.secrets.mac("csrf session", token_hash)
}

/// Whether `presented` is the token of `caller`'s session.
pub fn session_token_matches(app: &App, caller: &Caller, presented: &str) -> bool {
    app.secrets
        .verify_mac("csrf session", &caller.token_hash, presented)
}

/// The token of the login form bound to the `porthole_login` cookie's `value`.
pub fn login_token(app: &App, value: &str) -> String {
    app.secrets.mac("csrf login", value)
}

/// Whether `presented` is the login form's token for the cookie's `value`.
pub fn login_token_matches(app: &App, value: &str, presented: &str) -> bool {
    !value.is_empty() && app.secrets.verify_mac("csrf login", value, presented)
}

/// The refusal of a request without a valid token.
pub fn refused() -> ApiError {
    ApiError::Forbidden(
        "csrf: the form's security token is missing or out of date; reload the page and try again"
            .into(),
    )
}
