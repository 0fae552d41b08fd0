//! Signing in and out of the web UI. The login form is bound to a random `porthole_login`
//! cookie against CSRF; a good password sets the HttpOnly, SameSite=Strict session cookie
//! (Secure behind TLS or with an https public URL), and the user goes on to a local path
//! only.

use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::pages::Chrome;
use super::pages::login::LoginPage;
use super::{page, redirect};
use crate::app::{App, AppState};
use crate::error::ApiError;
use crate::extract::{
    CsrfForm, LOGIN_COOKIE, OriginCheck, SESSION_COOKIE, check_origin, cookie, is_behind_tls,
};
use crate::services::tokens::{self, TokenPurpose, WEB_SESSION_TTL};
use crate::services::{auth, csrf};

/// Only local paths, so the login page cannot be used to send people elsewhere.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next) if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') => {
            next.to_owned()
        }
        _ => "/vms".to_owned(),
    }
}

/// The query of the login page.
#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// `GET /login`: the form, bound to a fresh `porthole_login` cookie against CSRF.
pub async fn login_page(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Response {
    let next = safe_next(query.next.as_deref());
    login_form(&app, &headers, StatusCode::OK, None, next, String::new())
}

/// The login page with a fresh binding cookie.
fn login_form(
    app: &App,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<String>,
    next: String,
    typed_username: String,
) -> Response {
    let binding = tokens::random_secret("");
    let cookie = format!(
        "{}={binding}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600{}",
        LOGIN_COOKIE,
        if secure_cookies(app, headers) {
            "; Secure"
        } else {
            ""
        }
    );
    let chrome = Chrome::signed_out(app, &binding);
    let mut response = page(
        status,
        &LoginPage {
            chrome,
            error,
            next,
            typed_username,
            realm: app
                .config
                .accessor
                .as_ref()
                .map(|a| a.default_realm.clone()),
        },
    );
    if let Ok(value) = cookie.parse() {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

/// Whether cookies must be marked Secure: behind TLS, or with an https public URL.
fn secure_cookies(app: &App, headers: &HeaderMap) -> bool {
    is_behind_tls(headers)
        || app
            .config
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    /// Accessor mode: the Proxmox realm.
    #[serde(default)]
    realm: Option<String>,
    next: Option<String>,
    #[serde(default)]
    csrf: String,
}

/// `POST /login`: checks the password and sets the session cookie.
pub async fn login(
    State(app): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if let OriginCheck::Foreign(_) = check_origin(app.config.public_url.as_deref(), &headers) {
        return ApiError::Forbidden("log in from porthole's own login page".into()).into_response();
    }
    let binding = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !csrf::login_token_matches(&app, binding, &form.csrf) {
        return csrf::refused().into_response();
    }
    let next = safe_next(form.next.as_deref());
    let login = auth::login(
        &app,
        &form.username,
        &form.password,
        form.realm.as_deref(),
        TokenPurpose::Web,
        Some(remote),
    )
    .await;
    match login {
        Ok(login) => {
            let secure = secure_cookies(&app, &headers);
            let cookie = format!(
                "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                login.token,
                WEB_SESSION_TTL.as_secs(),
                if secure { "; Secure" } else { "" }
            );
            (
                StatusCode::SEE_OTHER,
                [(LOCATION, next), (SET_COOKIE, cookie)],
            )
                .into_response()
        }
        Err(e @ (ApiError::Unauthorized(_) | ApiError::TooManyRequests(_))) => {
            let status = if matches!(e, ApiError::Unauthorized(_)) {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::TOO_MANY_REQUESTS
            };
            login_form(
                &app,
                &headers,
                status,
                Some(e.to_string()),
                next,
                form.username,
            )
        }
        Err(other) => other.into_response(),
    }
}

/// `POST /logout`: revokes the session and clears the cookie.
pub async fn logout(
    State(app): State<AppState>,
    CsrfForm { caller, .. }: CsrfForm<serde::de::IgnoredAny>,
) -> Response {
    if let Err(e) = auth::logout(&app, &caller.token_hash).await {
        return e.into_response();
    }
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    (
        StatusCode::SEE_OTHER,
        [(LOCATION, "/login".to_owned()), (SET_COOKIE, clear)],
    )
        .into_response()
}

/// `GET /`.
pub async fn root(State(app): State<AppState>) -> Response {
    redirect(home_path(&app))
}

/// Where a signed-in user starts: their VMs, or in accessor mode their Proxmox VMs.
pub fn home_path(app: &App) -> &'static str {
    if app.config.accessor.is_some() {
        "/proxmox"
    } else {
        "/vms"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(safe_next(Some("/vms/1/console/vnc")), "/vms/1/console/vnc");
        for bad in [
            None,
            Some("https://evil.example/"),
            Some("//evil.example"),
            Some("/\\evil"),
            Some("vms"),
        ] {
            assert_eq!(safe_next(bad), "/vms", "{bad:?}");
        }
    }
}
