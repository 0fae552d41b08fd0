//! The web UI: server-rendered pages, signed in with an HttpOnly, SameSite=Strict session
//! cookie (Secure behind TLS). Pages that need a login redirect to it; every form posts with
//! a CSRF token ([`CsrfForm`](crate::extract::CsrfForm)) to a handler that calls the same
//! service as the REST API, then redirects back with what happened.
//!
//! - [`pages`]: the page models (askama templates and their views);
//! - [`login`], [`portal`], [`admin`], [`consoles`]: the handlers;
//! - [`assets`]: the embedded scripts and styles.

pub mod admin;
pub mod assets;
pub mod consoles;
pub mod login;
pub mod pages;
pub mod portal;

use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::ApiError;
use crate::services::caller::Caller;

/// What every page may load: only porthole's own scripts, styles and WebSocket.
const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// A signed-in user of the web UI; without one, the request is sent to the login page.
pub struct WebUser(pub Caller);

impl FromRequestParts<AppState> for WebUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match Caller::from_request_parts(parts, state).await {
            Ok(caller) => Ok(WebUser(caller)),
            Err(ApiError::Unauthorized(_)) => {
                let next = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                Err(redirect(&format!("/login?next={}", encode(next))))
            }
            Err(other) => Err(other.into_response()),
        }
    }
}

/// Percent-encodes `text` for a URL query or path.
pub(crate) fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A 303 to `to`.
pub(crate) fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_owned())]).into_response()
}

/// A rendered page with porthole's security headers.
pub(crate) fn page(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (
            status,
            [
                (CONTENT_TYPE, "text/html; charset=utf-8"),
                (CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_VALUE),
                (X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (X_FRAME_OPTIONS, "DENY"),
                (REFERRER_POLICY, "same-origin"),
                (CACHE_CONTROL, "no-store"),
            ],
            html,
        )
            .into_response(),
        Err(e) => ApiError::internal(anyhow::anyhow!("rendering a page: {e}")).into_response(),
    }
}

/// Back to `to` after a form: with `notice` if it worked, with the error if not.
pub(crate) fn after<T>(to: &str, result: Result<T, ApiError>, notice: &str) -> Response {
    let separator = if to.contains('?') { '&' } else { '?' };
    match result {
        Ok(_) => redirect(&format!("{to}{separator}notice={}", encode(notice))),
        Err(e @ ApiError::Internal(_)) => e.into_response(),
        Err(e) => redirect(&format!("{to}{separator}error={}", encode(&e.to_string()))),
    }
}
