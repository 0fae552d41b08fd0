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
use porthole_core::VmState;
use porthole_store::consoles::{console_kind_str, parse_console_kind};
use serde::Deserialize;

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{Caller, OriginCheck, SESSION_COOKIE, check_origin, is_behind_tls};
use crate::services::auth::{self, TokenPurpose, WEB_SESSION_TTL};
use crate::services::vms::{parse_vm_id, visible_vm};

/// What every page may load: only porthole's own scripts, styles and WebSocket.
const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// A signed-in user of the web UI; without one, the request is sent to the login page.
pub struct WebUser(Caller);

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

fn encode(text: &str) -> String {
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

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_owned())]).into_response()
}

/// A rendered page with porthole's security headers.
fn page(status: StatusCode, template: &impl Template) -> Response {
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
    username: Option<String>,
    error: Option<String>,
    next: String,
    typed_username: String,
}

/// The query of the login page.
#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// `GET /login`.
pub async fn login_page(axum::extract::Query(query): axum::extract::Query<NextQuery>) -> Response {
    let next = safe_next(query.next.as_deref());
    page(
        StatusCode::OK,
        &LoginPage {
            username: None,
            error: None,
            next,
            typed_username: String::new(),
        },
    )
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

/// `POST /login`: checks the password and sets the session cookie.
pub async fn login(
    State(app): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if let OriginCheck::Foreign(_) = check_origin(app.config.public_url.as_deref(), &headers) {
        return ApiError::Forbidden("log in from porthole's own login page".into()).into_response();
    }
    let next = safe_next(form.next.as_deref());
    match auth::login(&app, &form.username, &form.password, TokenPurpose::Web).await {
        Ok(login) => {
            let secure = is_behind_tls(&headers)
                || app
                    .config
                    .public_url
                    .as_deref()
                    .is_some_and(|u| u.starts_with("https://"));
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
        Err(ApiError::Unauthorized(message)) => page(
            StatusCode::UNAUTHORIZED,
            &LoginPage {
                username: None,
                error: Some(message),
                next,
                typed_username: form.username,
            },
        ),
        Err(other) => other.into_response(),
    }
}

/// `POST /logout`: revokes the session and clears the cookie.
pub async fn logout(State(app): State<AppState>, WebUser(caller): WebUser) -> Response {
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
pub async fn root() -> Response {
    redirect("/vms")
}

/// A VM as the pages show it.
struct VmView {
    id: String,
    name: String,
    state: String,
    cores: u32,
    memory_mib: u64,
    disk_gib: u64,
    node: String,
    owner: String,
    consoles_open: bool,
}

impl VmView {
    fn new(vm: &porthole_store::vms::VmRecord) -> Self {
        Self {
            id: vm.id.to_string(),
            name: vm.name.to_string(),
            state: vm.state.to_string(),
            cores: vm.resources.cores,
            memory_mib: vm.resources.memory_mib,
            disk_gib: vm.resources.disk_gib,
            node: vm.node.clone(),
            owner: vm.owner.clone(),
            consoles_open: matches!(vm.state, VmState::Running | VmState::Paused),
        }
    }
}

struct ExternalView {
    id: String,
    name: String,
    kind: &'static str,
    address: String,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    username: Option<String>,
    is_admin: bool,
    vms: Vec<VmView>,
    externals: Vec<ExternalView>,
}

/// `GET /vms`: the user's VMs and consoles.
pub async fn home(
    State(app): State<AppState>,
    WebUser(caller): WebUser,
) -> Result<Response, ApiError> {
    let owner = (!caller.is_admin()).then_some(caller.user.id);
    let vms = app
        .store
        .vms(owner)
        .await?
        .iter()
        .map(VmView::new)
        .collect();
    let externals = app
        .store
        .external_consoles(owner)
        .await?
        .into_iter()
        .map(|c| ExternalView {
            id: c.id.to_string(),
            name: c.name,
            kind: console_kind_str(c.protocol.console_kind()),
            address: c.address,
        })
        .collect();
    Ok(page(
        StatusCode::OK,
        &HomePage {
            username: Some(caller.user.username.clone()),
            is_admin: caller.is_admin(),
            vms,
            externals,
        },
    ))
}

#[derive(Template)]
#[template(path = "vm.html")]
struct VmPage {
    username: Option<String>,
    vm: VmView,
}

/// `GET /vms/{id}`.
pub async fn vm(
    State(app): State<AppState>,
    WebUser(caller): WebUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let vm = visible_vm(&app, &caller, parse_vm_id(&id)?).await?;
    Ok(page(
        StatusCode::OK,
        &VmPage {
            username: Some(caller.user.username.clone()),
            vm: VmView::new(&vm),
        },
    ))
}

#[derive(Template)]
#[template(path = "console_vnc.html")]
struct VncPage {
    username: Option<String>,
    name: String,
    ticket_url: String,
}

#[derive(Template)]
#[template(path = "console_serial.html")]
struct SerialPage {
    username: Option<String>,
    name: String,
    ticket_url: String,
}

fn console_page(
    kind: &str,
    username: String,
    name: String,
    ticket_url: String,
) -> Result<Response, ApiError> {
    let username = Some(username);
    match parse_console_kind(kind) {
        Some(porthole_core::ConsoleKind::Vnc) => Ok(page(
            StatusCode::OK,
            &VncPage {
                username,
                name,
                ticket_url,
            },
        )),
        Some(porthole_core::ConsoleKind::Serial) => Ok(page(
            StatusCode::OK,
            &SerialPage {
                username,
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
        caller.user.username.clone(),
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
        caller.user.username.clone(),
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
