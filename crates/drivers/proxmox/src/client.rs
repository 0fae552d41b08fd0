//! The HTTP client: authentication, request envelopes, error decoding, and the endpoints.
//!
//! Every call goes the same way:
//! 1. take the credentials: an API token as is; a ticket after logging in if there is none
//!    yet, or renewing it (posting it as its own password) once it is older than
//!    [`ClientBuilder::renew_after`];
//! 2. send `/api2/json/...` with the cookie, plus `CSRFPreventionToken` unless it is a
//!    `GET`, or with the token header; bodies are form-encoded;
//! 3. on a 401 with ticket auth and a known password, log in once more and resend (a 401
//!    means PVE did nothing, so this is safe even for non-idempotent calls);
//! 4. unwrap `{"data": ...}` into the typed answer, or decode PVE's error (its `message`,
//!    its per-parameter `errors`, else the body text or the status line) into [`Error`].

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::auth::{ApiToken, Credentials, PasswordLogin, Secret, Ticket};
use crate::error::{Error, Result};
use crate::lenient;
use crate::permissions::Permissions;
use crate::task::{TaskOutcome, TaskStatus, Upid};
use crate::tls::TlsOptions;
use crate::types::{
    CloneRequest, ClusterVm, CreatePoolRequest, CreateVmRequest, LoginRequest, LoginResponse,
    NodeSummary, PoolDetail, PoolSummary, PowerAction, QemuConfig, QemuConfigUpdate, QemuStatus,
    TermProxy, VersionInfo, VncProxy, VncProxyRequest,
};

/// Bound on how much of a non-JSON error body goes into a message.
const MAX_ERROR_TEXT: usize = 512;

/// Configures a [`Client`].
#[derive(Debug)]
pub struct ClientBuilder {
    url: String,
    credentials: Credentials,
    tls: TlsOptions,
    timeout: Duration,
    connect_timeout: Duration,
    renew_after: Duration,
}

impl ClientBuilder {
    /// A client for the server at `url` (`https://pve.example:8006`; a trailing
    /// `/api2/json` is accepted).
    #[must_use]
    pub fn new(url: impl Into<String>, credentials: Credentials) -> Self {
        Self {
            url: url.into(),
            credentials,
            tls: TlsOptions::default(),
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            renew_after: Duration::from_secs(90 * 60),
        }
    }

    /// Which certificates to trust (default: the system's).
    #[must_use]
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = tls;
        self
    }

    /// Time limit of one HTTP request (default 60 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Renew a ticket once it is this old (default 90 min, well inside its 2 h life, so a
    /// console opened just before renewal still has time to connect).
    #[must_use]
    pub fn renew_after(mut self, age: Duration) -> Self {
        self.renew_after = age;
        self
    }

    /// Builds the client. It does not contact the server; the first call logs in.
    pub fn build(self) -> Result<Client> {
        let mut base = Url::parse(self.url.trim_end_matches('/'))
            .map_err(|e| Error::Config(format!("the URL {:?} is not valid: {e}", self.url)))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(Error::Config(format!(
                "the URL {:?} must start with https:// (or http:// for tests)",
                self.url
            )));
        }
        if !base.path().ends_with("/api2/json") {
            let path = format!("{}/api2/json", base.path().trim_end_matches('/'));
            base.set_path(&path);
        }
        let tls_config = Arc::new(self.tls.client_config()?);
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls_config).clone())
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .build()
            .map_err(|e| Error::Config(format!("could not build the HTTP client: {e}")))?;
        let auth = match self.credentials {
            Credentials::Token(token) => AuthState::Token(token),
            Credentials::Password(login) => AuthState::Session {
                login: Some(login),
                ticket: None,
            },
            Credentials::Ticket(ticket) => AuthState::Session {
                login: None,
                ticket: Some(ticket),
            },
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                tls_config,
                renew_after: self.renew_after,
                auth: Mutex::new(auth),
            }),
        })
    }
}

#[derive(Debug)]
enum AuthState {
    Token(ApiToken),
    Session {
        login: Option<PasswordLogin>,
        ticket: Option<Ticket>,
    },
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    base: Url,
    tls_config: Arc<rustls::ClientConfig>,
    renew_after: Duration,
    auth: Mutex<AuthState>,
}

/// A typed Proxmox VE API client. Cheap to clone; clones share the session.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// How [`Client::wait_task`] polls.
#[derive(Debug, Clone, Copy)]
pub struct TaskWait {
    /// Time between polls.
    pub interval: Duration,
    /// Give up (with [`Error::TaskTimeout`]) after this long.
    pub timeout: Duration,
}

impl Default for TaskWait {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(10 * 60),
        }
    }
}

/// Where and how to open a `vncwebsocket` connection: a WebSocket upgrade the gateway makes
/// itself. The URL carries the one-time VNC ticket, so `Debug` shows neither its query nor
/// the headers' values.
#[derive(Clone)]
pub struct WebSocketTarget {
    /// `wss://host:8006/api2/json/nodes/{node}/qemu/{vmid}/vncwebsocket?port=..&vncticket=..`.
    pub url: Url,
    /// Headers to send with the upgrade: the auth cookie or token.
    pub headers: Vec<(HeaderName, Secret)>,
}

impl fmt::Debug for WebSocketTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.url.clone();
        shown.set_query(Some("<redacted>"));
        f.debug_struct("WebSocketTarget")
            .field("url", &shown.as_str())
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(default = "Option::default")]
    data: Option<T>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    errors: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct NextId(#[serde(deserialize_with = "lenient::u32_lenient")] u32);

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

/// Turns a failed answer into a message: PVE's `message` (or the status line), then its
/// per-parameter `errors`; a non-JSON body is quoted, bounded.
fn error_message(body: &[u8], reason: Option<&str>, status: reqwest::StatusCode) -> String {
    let fallback = reason
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .or_else(|| status.canonical_reason())
        .unwrap_or("no reason given")
        .to_owned();
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
        let mut message = parsed
            .message
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty())
            .unwrap_or(fallback);
        if let Some(errors) = parsed.errors.filter(|e| !e.is_empty()) {
            let details: Vec<String> = errors
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.trim()))
                .collect();
            message = format!("{message} ({})", details.join("; "));
        }
        return message;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return fallback;
    }
    let mut end = text.len().min(MAX_ERROR_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let text = text.get(..end).unwrap_or_default();
    if fallback == text {
        text.to_owned()
    } else {
        format!("{fallback}: {text}")
    }
}

fn header(name: &'static str, value: &Secret) -> Result<(HeaderName, HeaderValue)> {
    let mut value = HeaderValue::from_str(value.expose()).map_err(|_| {
        Error::Config(format!(
            "the {name} value holds characters not allowed in a header"
        ))
    })?;
    value.set_sensitive(true);
    Ok((HeaderName::from_static(name), value))
}

impl Client {
    /// The rustls configuration this client trusts the server with, for opening
    /// `vncwebsocket` connections to the same server.
    #[must_use]
    pub fn tls_config(&self) -> Arc<rustls::ClientConfig> {
        Arc::clone(&self.inner.tls_config)
    }

    /// The API base URL, ending in `/api2/json`.
    #[must_use]
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    fn url(&self, segments: &[&str]) -> Result<Url> {
        let mut url = self.inner.base.clone();
        url.path_segments_mut()
            .map_err(|()| Error::Config("the URL cannot carry a path".to_owned()))?
            .extend(segments);
        Ok(url)
    }

    /// Logs in now (for password credentials) and returns the ticket, so a caller such as
    /// the accessor can keep it. A no-op returning `None` for API tokens.
    pub async fn login(&self) -> Result<Option<Ticket>> {
        let mut auth = self.inner.auth.lock().await;
        match &mut *auth {
            AuthState::Token(_) => Ok(None),
            AuthState::Session { login, ticket } => {
                let fresh = match login {
                    Some(login) => {
                        self.post_ticket(&login.username, &login.password, Some(&login.realm))
                            .await?
                    }
                    None => match ticket.as_ref() {
                        Some(t) => self.post_ticket(&t.username, &t.ticket, None).await?,
                        None => {
                            return Err(Error::Config("no credentials to log in with".to_owned()));
                        }
                    },
                };
                *ticket = Some(fresh.clone());
                Ok(Some(fresh))
            }
        }
    }

    /// The current ticket, if this client uses ticket auth and has one.
    pub async fn ticket(&self) -> Option<Ticket> {
        match &*self.inner.auth.lock().await {
            AuthState::Session { ticket, .. } => ticket.clone(),
            AuthState::Token(_) => None,
        }
    }

    /// `POST /access/ticket` without any session; `password` may be a ticket to renew.
    async fn post_ticket(
        &self,
        username: &str,
        password: &Secret,
        realm: Option<&str>,
    ) -> Result<Ticket> {
        let path = "/access/ticket";
        let form = serde_urlencoded::to_string(LoginRequest {
            username,
            password: password.expose(),
            realm,
        })
        .map_err(|e| Error::Config(format!("could not encode the login: {e}")))?;
        let url = self.url(&["access", "ticket"])?;
        let response = self
            .inner
            .http
            .post(url.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .send()
            .await
            .map_err(|e| transport_error(e, &Method::POST, path, &url))?;
        let answer: LoginResponse =
            decode(&Method::POST, path, response)
                .await?
                .ok_or_else(|| Error::Decode {
                    path: path.to_owned(),
                    detail: "the login answer has no data".to_owned(),
                })?;
        let (Some(ticket), Some(csrf)) = (answer.ticket, answer.csrf_token) else {
            return Err(Error::Decode {
                path: path.to_owned(),
                detail: "the login answer lacks the ticket or CSRFPreventionToken".to_owned(),
            });
        };
        if answer.need_tfa || ticket.expose().starts_with("PVE:!tfa!") {
            return Err(Error::SecondFactorRequired {
                username: answer.username,
            });
        }
        tracing::debug!(user = %answer.username, "obtained a Proxmox VE ticket");
        Ok(Ticket::new(answer.username, ticket, csrf))
    }

    /// The auth headers for one request, logging in or renewing first as needed.
    async fn auth_headers(&self, method: &Method, force_login: bool) -> Result<HeaderMap> {
        let mut headers = HeaderMap::new();
        let mut auth = self.inner.auth.lock().await;
        let ticket = match &mut *auth {
            AuthState::Token(token) => {
                let (n, v) = header("authorization", &token.header_value())?;
                headers.insert(n, v);
                return Ok(headers);
            }
            AuthState::Session { login, ticket } => {
                let needs_login = force_login || ticket.is_none();
                if needs_login {
                    let Some(login) = login else {
                        let username = ticket
                            .as_ref()
                            .map(|t| t.username.clone())
                            .unwrap_or_default();
                        return Err(Error::TicketExpired { username });
                    };
                    *ticket = Some(
                        self.post_ticket(&login.username, &login.password, Some(&login.realm))
                            .await?,
                    );
                } else if let Some(current) = ticket.as_ref()
                    && current.age() >= self.inner.renew_after
                {
                    match self
                        .post_ticket(&current.username, &current.ticket, None)
                        .await
                    {
                        Ok(fresh) => *ticket = Some(fresh),
                        Err(err) => {
                            tracing::warn!(error = %err, "could not renew the Proxmox VE ticket");
                            if let Some(login) = login {
                                *ticket = Some(
                                    self.post_ticket(
                                        &login.username,
                                        &login.password,
                                        Some(&login.realm),
                                    )
                                    .await?,
                                );
                            } else if current.age() >= Ticket::LIFETIME {
                                return Err(Error::TicketExpired {
                                    username: current.username.clone(),
                                });
                            }
                        }
                    }
                }
                ticket.clone()
            }
        };
        if let Some(ticket) = ticket {
            let (n, v) = header("cookie", &ticket.cookie())?;
            headers.insert(n, v);
            if *method != Method::GET {
                let (n, v) = header("csrfpreventiontoken", &ticket.csrf_token)?;
                headers.insert(n, v);
            }
        }
        Ok(headers)
    }

    async fn can_relogin(&self) -> bool {
        matches!(
            &*self.inner.auth.lock().await,
            AuthState::Session { login: Some(_), .. }
        )
    }

    /// Sends one API request and decodes `data`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: Option<String>,
        form: Option<String>,
    ) -> Result<Option<T>> {
        let mut url = self.url(segments)?;
        url.set_query(query.as_deref().filter(|q| !q.is_empty()));
        let path = format!("/{}", segments.join("/"));
        let mut relogged = false;
        loop {
            let headers = self.auth_headers(&method, relogged).await?;
            let mut request = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .headers(headers);
            if let Some(form) = &form {
                request = request
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(form.clone());
            }
            let response = request
                .send()
                .await
                .map_err(|e| transport_error(e, &method, &path, &url))?;
            if response.status() == reqwest::StatusCode::UNAUTHORIZED
                && !relogged
                && self.can_relogin().await
            {
                tracing::info!(%path, "Proxmox VE refused the ticket; logging in again");
                relogged = true;
                continue;
            }
            return decode(&method, &path, response).await;
        }
    }

    async fn get<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T> {
        let path = format!("/{}", segments.join("/"));
        require(&path, self.call(Method::GET, segments, None, None).await?)
    }

    async fn send_form<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        segments: &[&str],
        body: &B,
    ) -> Result<Option<T>> {
        let form = serde_urlencoded::to_string(body)
            .map_err(|e| Error::Config(format!("could not encode the request: {e}")))?;
        self.call(method, segments, None, Some(form)).await
    }

    async fn post_for_upid<B: Serialize>(&self, segments: &[&str], body: &B) -> Result<Upid> {
        let path = format!("/{}", segments.join("/"));
        require(&path, self.send_form(Method::POST, segments, body).await?)
    }

    /// `GET /version`.
    pub async fn version(&self) -> Result<VersionInfo> {
        self.get(&["version"]).await
    }

    /// `GET /access/permissions`: the caller's privileges on every path with an ACL.
    pub async fn permissions(&self) -> Result<Permissions> {
        self.get(&["access", "permissions"]).await
    }

    /// `GET /cluster/resources?type=vm`: every VM and container the caller may see
    /// (PVE filters by `VM.Audit`).
    pub async fn cluster_vms(&self) -> Result<Vec<ClusterVm>> {
        let segments = ["cluster", "resources"];
        require(
            "/cluster/resources",
            self.call(Method::GET, &segments, Some("type=vm".to_owned()), None)
                .await?,
        )
    }

    /// `GET /cluster/nextid`: a VMID free right now (another client may take it first;
    /// see [`Client::with_fresh_vmid`]).
    pub async fn next_id(&self) -> Result<u32> {
        let NextId(id) = self.get(&["cluster", "nextid"]).await?;
        Ok(id)
    }

    /// Runs `create` with a fresh VMID from `/cluster/nextid`, and again with another one
    /// (up to `max_attempts` in all) while it fails because the id was taken meanwhile.
    pub async fn with_fresh_vmid<T, F, Fut>(&self, max_attempts: u32, mut create: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        for attempt in 1..=max_attempts {
            let vmid = self.next_id().await?;
            match create(vmid).await {
                Err(err) if err.is_vmid_taken() => {
                    tracing::info!(vmid, attempt, "VMID taken meanwhile; trying another");
                }
                other => return other,
            }
        }
        Err(Error::VmidsExhausted {
            attempts: max_attempts,
        })
    }

    /// `GET /nodes`.
    pub async fn nodes(&self) -> Result<Vec<NodeSummary>> {
        self.get(&["nodes"]).await
    }

    /// `GET /nodes/{node}/qemu`.
    pub async fn qemu_vms(&self, node: &str) -> Result<Vec<QemuStatus>> {
        self.get(&["nodes", node, "qemu"]).await
    }

    /// `GET /nodes/{node}/qemu/{vmid}/status/current`.
    pub async fn qemu_status(&self, node: &str, vmid: u32) -> Result<QemuStatus> {
        let vmid = vmid.to_string();
        self.get(&["nodes", node, "qemu", &vmid, "status", "current"])
            .await
    }

    /// `GET /nodes/{node}/qemu/{vmid}/config`.
    pub async fn qemu_config(&self, node: &str, vmid: u32) -> Result<QemuConfig> {
        let vmid = vmid.to_string();
        self.get(&["nodes", node, "qemu", &vmid, "config"]).await
    }

    /// `PUT /nodes/{node}/qemu/{vmid}/config`: applies the change synchronously.
    pub async fn set_qemu_config(
        &self,
        node: &str,
        vmid: u32,
        update: &QemuConfigUpdate,
    ) -> Result<()> {
        let vmid = vmid.to_string();
        self.send_form::<IgnoredAny, _>(
            Method::PUT,
            &["nodes", node, "qemu", &vmid, "config"],
            update,
        )
        .await
        .map(drop)
    }

    /// `POST /nodes/{node}/qemu/{vmid}/config`: applies the change in a task, whose UPID is
    /// returned (`None` if there was nothing to do).
    pub async fn set_qemu_config_async(
        &self,
        node: &str,
        vmid: u32,
        update: &QemuConfigUpdate,
    ) -> Result<Option<Upid>> {
        let vmid = vmid.to_string();
        self.send_form(
            Method::POST,
            &["nodes", node, "qemu", &vmid, "config"],
            update,
        )
        .await
    }

    /// `PUT /nodes/{node}/qemu/{vmid}/resize`: grows `disk` (`scsi0`) to `size_gib`. PVE 8
    /// and later answer with a task; PVE 7 finished before answering (`None`).
    pub async fn resize_disk(
        &self,
        node: &str,
        vmid: u32,
        disk: &str,
        size_gib: u64,
    ) -> Result<Option<Upid>> {
        #[derive(Serialize)]
        struct Body<'a> {
            disk: &'a str,
            size: String,
        }
        let vmid = vmid.to_string();
        let body = Body {
            disk,
            size: format!("{size_gib}G"),
        };
        self.send_form(
            Method::PUT,
            &["nodes", node, "qemu", &vmid, "resize"],
            &body,
        )
        .await
    }

    /// `POST /nodes/{node}/qemu/{vmid}/clone`: clones VM or template `vmid`.
    pub async fn clone_qemu(&self, node: &str, vmid: u32, request: &CloneRequest) -> Result<Upid> {
        let vmid = vmid.to_string();
        self.post_for_upid(&["nodes", node, "qemu", &vmid, "clone"], request)
            .await
    }

    /// `POST /nodes/{node}/qemu`: creates a VM.
    pub async fn create_qemu(&self, node: &str, request: &CreateVmRequest) -> Result<Upid> {
        self.post_for_upid(&["nodes", node, "qemu"], request).await
    }

    /// `POST /nodes/{node}/qemu/{vmid}/status/{action}`.
    pub async fn power(&self, node: &str, vmid: u32, action: PowerAction) -> Result<Upid> {
        let vmid = vmid.to_string();
        self.post_for_upid(
            &["nodes", node, "qemu", &vmid, "status", action.as_str()],
            &(),
        )
        .await
    }

    /// `DELETE /nodes/{node}/qemu/{vmid}?purge=1&destroy-unreferenced-disks=1`: removes the
    /// VM, its disks and every reference to it (backups jobs, HA, replication).
    pub async fn delete_qemu(&self, node: &str, vmid: u32) -> Result<Upid> {
        let vmid = vmid.to_string();
        let segments = ["nodes", node, "qemu", &vmid];
        let path = format!("/{}", segments.join("/"));
        require(
            &path,
            self.call(
                Method::DELETE,
                &segments,
                Some("purge=1&destroy-unreferenced-disks=1".to_owned()),
                None,
            )
            .await?,
        )
    }

    /// `GET /pools`.
    pub async fn pools(&self) -> Result<Vec<PoolSummary>> {
        self.get(&["pools"]).await
    }

    /// `POST /pools`.
    pub async fn create_pool(&self, request: &CreatePoolRequest) -> Result<()> {
        self.send_form::<IgnoredAny, _>(Method::POST, &["pools"], request)
            .await
            .map(drop)
    }

    /// `GET /pools/{poolid}`.
    pub async fn pool(&self, poolid: &str) -> Result<PoolDetail> {
        self.get(&["pools", poolid]).await
    }

    /// `POST /nodes/{node}/qemu/{vmid}/vncproxy` with `websocket=1`; with
    /// `generate_password`, PVE also returns a one-time VNC password.
    pub async fn vnc_proxy(
        &self,
        node: &str,
        vmid: u32,
        generate_password: bool,
    ) -> Result<VncProxy> {
        let vmid = vmid.to_string();
        let segments = ["nodes", node, "qemu", &vmid, "vncproxy"];
        let body = VncProxyRequest {
            websocket: true,
            generate_password: generate_password.then_some(true),
        };
        require(
            &format!("/{}", segments.join("/")),
            self.send_form(Method::POST, &segments, &body).await?,
        )
    }

    /// `POST /nodes/{node}/qemu/{vmid}/termproxy`, on `serial` (`serial0`…) if given.
    pub async fn term_proxy(
        &self,
        node: &str,
        vmid: u32,
        serial: Option<&str>,
    ) -> Result<TermProxy> {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            serial: Option<&'a str>,
        }
        let vmid = vmid.to_string();
        let segments = ["nodes", node, "qemu", &vmid, "termproxy"];
        require(
            &format!("/{}", segments.join("/")),
            self.send_form(Method::POST, &segments, &Body { serial })
                .await?,
        )
    }

    /// The `vncwebsocket` upgrade for a proxy opened by [`Client::vnc_proxy`] or
    /// [`Client::term_proxy`]: the `wss://` URL with `port` and `vncticket`, and the auth
    /// headers to send with it (renewing the ticket first if due).
    pub async fn vnc_websocket(
        &self,
        node: &str,
        vmid: u32,
        port: u32,
        vncticket: &Secret,
    ) -> Result<WebSocketTarget> {
        let vmid = vmid.to_string();
        let mut url = self.url(&["nodes", node, "qemu", &vmid, "vncwebsocket"])?;
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme)
            .map_err(|()| Error::Config("cannot make a WebSocket URL".to_owned()))?;
        url.query_pairs_mut()
            .append_pair("port", &port.to_string())
            .append_pair("vncticket", vncticket.expose());
        let headers = self
            .auth_headers(&Method::GET, false)
            .await?
            .iter()
            .map(|(name, value)| {
                (
                    name.clone(),
                    Secret::new(String::from_utf8_lossy(value.as_bytes()).into_owned()),
                )
            })
            .collect();
        Ok(WebSocketTarget { url, headers })
    }

    /// `GET /nodes/{node}/tasks/{upid}/status`, on the node the UPID names.
    pub async fn task_status(&self, upid: &Upid) -> Result<TaskStatus> {
        self.get(&["nodes", upid.node(), "tasks", upid.as_str(), "status"])
            .await
    }

    /// Polls a task until it stops. `OK` and `WARNINGS: n` are success; any other exit
    /// status is [`Error::TaskFailed`]; still running after `wait.timeout` is
    /// [`Error::TaskTimeout`].
    pub async fn wait_task(&self, upid: &Upid, wait: TaskWait) -> Result<TaskOutcome> {
        let started = Instant::now();
        loop {
            let status = self.task_status(upid).await?;
            match status.outcome() {
                Some(TaskOutcome::Failed(exitstatus)) => {
                    return Err(Error::TaskFailed {
                        upid: Box::new(upid.clone()),
                        exitstatus,
                    });
                }
                Some(outcome) => return Ok(outcome),
                None => {}
            }
            let waited = started.elapsed();
            if waited >= wait.timeout {
                return Err(Error::TaskTimeout {
                    upid: Box::new(upid.clone()),
                    waited,
                });
            }
            tokio::time::sleep(wait.interval.min(wait.timeout - waited)).await;
        }
    }
}

fn require<T>(path: &str, data: Option<T>) -> Result<T> {
    data.ok_or_else(|| Error::Decode {
        path: path.to_owned(),
        detail: "the answer's `data` is missing or null".to_owned(),
    })
}

fn transport_error(err: reqwest::Error, method: &Method, path: &str, url: &Url) -> Error {
    if err.is_connect() {
        let mut shown = url.clone();
        shown.set_query(None);
        Error::Connect {
            url: shown.to_string(),
            source: err,
        }
    } else {
        Error::Transport {
            method: method_name(method),
            path: path.to_owned(),
            source: err,
        }
    }
}

async fn decode<T: DeserializeOwned>(
    method: &Method,
    path: &str,
    response: reqwest::Response,
) -> Result<Option<T>> {
    let status = response.status();
    let reason = response
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned());
    let url = response.url().clone();
    let body = response
        .bytes()
        .await
        .map_err(|e| transport_error(e, method, path, &url))?;
    if status.is_success() {
        let envelope: Envelope<T> = serde_json::from_slice(&body).map_err(|e| Error::Decode {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        return Ok(envelope.data);
    }
    let message = error_message(&body, reason.as_deref(), status);
    let path = path.to_owned();
    Err(match status.as_u16() {
        401 => Error::Unauthorized { path, message },
        403 => Error::Forbidden { path, message },
        404 => Error::NotFound { path, message },
        code => Error::Api {
            method: method_name(method),
            path,
            status: code,
            message,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_carry_pve_details() {
        let s = reqwest::StatusCode::BAD_REQUEST;
        let m = error_message(
            br#"{"data":null,"errors":{"vmid":"VM 100 already exists"},"message":"Parameter verification failed.\n"}"#,
            None,
            s,
        );
        assert_eq!(
            m,
            "Parameter verification failed. (vmid: VM 100 already exists)"
        );
        let m = error_message(br#"{"data":null}"#, Some("VM 100 not running"), s);
        assert_eq!(m, "VM 100 not running");
        let m = error_message(b"proxy loop detected\n", None, s);
        assert_eq!(m, "Bad Request: proxy loop detected");
        let long = "é".repeat(1000);
        assert!(error_message(long.as_bytes(), None, s).len() < 600);
        assert_eq!(
            error_message(b"", None, reqwest::StatusCode::FORBIDDEN),
            "Forbidden"
        );
    }

    #[test]
    fn base_url_gets_api_prefix_once() {
        let creds = || Credentials::Token("a@pve!t=s".parse().unwrap());
        for url in [
            "http://pve:8006",
            "http://pve:8006/",
            "http://pve:8006/api2/json",
        ] {
            let c = ClientBuilder::new(url, creds())
                .tls(TlsOptions::Insecure)
                .build()
                .unwrap();
            assert_eq!(c.base_url().as_str(), "http://pve:8006/api2/json");
        }
        assert!(ClientBuilder::new("ftp://pve", creds()).build().is_err());
        assert!(ClientBuilder::new("not a url", creds()).build().is_err());
    }
}
