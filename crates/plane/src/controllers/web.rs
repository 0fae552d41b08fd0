//! The web UI: server-rendered pages, signed in with an HttpOnly, SameSite=Strict session
//! cookie (Secure behind TLS). Pages that need a login redirect to it; forms are checked
//! against porthole's own Origin.

use askama::Template;
use axum::Form;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use porthole_store::consoles::parse_console_kind;
use serde::Deserialize;

use std::net::SocketAddr;

use axum::extract::ConnectInfo;

use crate::app::{App, AppState};
use crate::controllers::csrf::{self, CsrfForm};
use crate::error::ApiError;
use crate::extract::{Caller, OriginCheck, SESSION_COOKIE, check_origin, cookie, is_behind_tls};
use crate::services::auth::{self, TokenPurpose, WEB_SESSION_TTL};
use crate::services::vms::{parse_vm_id, visible_vm};

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

/// What every page's frame needs: who is signed in, and the CSRF token for its forms.
pub(crate) struct Chrome {
    pub username: Option<String>,
    pub is_admin: bool,
    pub csrf: String,
    /// What the last form did, or why it failed, shown once at the top of the page.
    pub flash: Flash,
}

impl Chrome {
    pub(crate) fn signed_in(app: &App, caller: &Caller) -> Self {
        Self {
            username: Some(caller.user.username.clone()),
            is_admin: caller.is_admin(),
            csrf: csrf::session_token(app, &caller.token_hash),
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

/// Back to `to` after a form: with `notice` if it worked, with the error if not.
pub(crate) fn after<T>(to: &str, result: Result<T, ApiError>, notice: &str) -> Response {
    let separator = if to.contains('?') { '&' } else { '?' };
    match result {
        Ok(_) => redirect(&format!("{to}{separator}notice={}", encode(notice))),
        Err(e @ ApiError::Internal(_)) => e.into_response(),
        Err(e) => redirect(&format!("{to}{separator}error={}", encode(&e.to_string()))),
    }
}

/// Only local paths, so the login page cannot be used to send people elsewhere.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next) if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') => {
            next.to_owned()
        }
        _ => "/vms".to_owned(),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    error: Option<String>,
    next: String,
    typed_username: String,
    /// Accessor mode: the realm to preselect.
    realm: Option<String>,
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
    axum::extract::Query(query): axum::extract::Query<NextQuery>,
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
    let binding = auth::random_secret("");
    let cookie = format!(
        "{}={binding}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600{}",
        csrf::LOGIN_COOKIE,
        if secure_cookies(app, headers) {
            "; Secure"
        } else {
            ""
        }
    );
    let chrome = Chrome {
        username: None,
        is_admin: false,
        csrf: csrf::login_token(app, &binding),
        flash: Flash::default(),
    };
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
    let binding = cookie(&headers, csrf::LOGIN_COOKIE).unwrap_or_default();
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

#[derive(Template)]
#[template(path = "console_vnc.html")]
struct VncPage {
    chrome: Chrome,
    name: String,
    ticket_url: String,
}

#[derive(Template)]
#[template(path = "console_serial.html")]
struct SerialPage {
    chrome: Chrome,
    name: String,
    ticket_url: String,
}

pub fn console_page(
    kind: &str,
    chrome: Chrome,
    name: String,
    ticket_url: String,
) -> Result<Response, ApiError> {
    match parse_console_kind(kind) {
        Some(porthole_core::ConsoleKind::Vnc) => Ok(page(
            StatusCode::OK,
            &VncPage {
                chrome,
                name,
                ticket_url,
            },
        )),
        Some(porthole_core::ConsoleKind::Serial) => Ok(page(
            StatusCode::OK,
            &SerialPage {
                chrome,
                name,
                ticket_url,
            },
        )),
        None => Err(ApiError::NotFound(format!(
            "no console kind {kind:?}; use vnc or serial"
        ))),
    }
}

/// `GET /vms/{id}/console/{kind}`: the noVNC or xterm.js page.
pub async fn vm_console(
    State(app): State<AppState>,
    WebUser(caller): WebUser,
    Path((id, kind)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let vm = visible_vm(&app, &caller, parse_vm_id(&id)?).await?;
    console_page(
        &kind,
        Chrome::signed_in(&app, &caller),
        vm.name.to_string(),
        format!("/api/v1/vms/{}/console", vm.id),
    )
}

/// `GET /external-consoles/{id}/console/{kind}`.
pub async fn external_console(
    State(app): State<AppState>,
    WebUser(caller): WebUser,
    Path((id, kind)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id: porthole_core::ExternalConsoleId = id
        .parse()
        .map_err(|_| ApiError::NotFound(format!("no external console has the id {id:?}")))?;
    let visible = caller.is_admin()
        || app
            .store
            .external_console_granted(id, caller.user.id)
            .await?;
    let console = app.store.external_console(id).await?.filter(|_| visible);
    let console = console.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no external console with id {id} is visible to you"
        ))
    })?;
    console_page(
        &kind,
        Chrome::signed_in(&app, &caller),
        console.name,
        format!("/api/v1/external-consoles/{id}/console"),
    )
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
