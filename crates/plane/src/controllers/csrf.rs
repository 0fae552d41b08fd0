//! CSRF protection for the web UI.
//!
//! A signed-in page carries a token that only this plane can make: an HMAC of the session's
//! token hash ([`session_token`]). Every form posts it as the `csrf` field, checked by the
//! [`CsrfForm`] extractor; scripts send it in the `X-CSRF-Token` header, checked for every
//! cookie-authenticated API request that changes state (see `extract.rs`). The login form,
//! which has no session yet, is bound to a random `porthole_login` cookie the login page
//! sets ([`login_token`]). SameSite=Strict cookies and the Origin check stay in place as
//! further layers.

use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::app::{App, AppState};
use crate::error::ApiError;
use crate::extract::Caller;

/// The header scripts send the token in.
pub const HEADER: &str = "x-csrf-token";
/// The cookie that binds the login form.
pub const LOGIN_COOKIE: &str = "porthole_login";

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

/// A form posted by a signed-in user from one of porthole's pages: the user, and the
/// fields, which must include a valid `csrf`.
pub struct CsrfForm<T> {
    /// Who posted it.
    pub caller: Caller,
    /// The form's other fields.
    pub form: T,
}

/// The token field every form carries.
#[derive(serde::Deserialize)]
struct TokenField {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let caller = <Caller as axum::extract::FromRequestParts<AppState>>::from_request_parts(
            &mut parts, state,
        )
        .await?;
        let bytes = axum::body::Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|e| ApiError::malformed(None, format!("cannot read the form: {e}")))?;
        let token: TokenField = serde_urlencoded::from_bytes(&bytes).map_err(|_| refused())?;
        if !session_token_matches(state, &caller, &token.csrf) {
            return Err(refused());
        }
        let form = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| ApiError::malformed(None, format!("the form does not parse: {e}")))?;
        Ok(CsrfForm { caller, form })
    }
}
