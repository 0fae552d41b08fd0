//! A typed client for the v1 API, used by the CLI and the tests.
//!
//! Every method returns the decoded body or a [`ClientError`]; an error reply from the plane
//! becomes [`ClientError::Api`] with the plane's own code and message, so callers can show
//! it as is.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use reqwest::multipart::{Form, Part};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::io::ReaderStream;
use url::Url;

use crate::types::*;
use porthole_core::{ConsoleKind, ExternalConsoleId, JobId, SshKeyId, VmId};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The plane answered with an error.
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The plane's machine-readable code.
        code: String,
        /// The plane's message.
        message: String,
        /// The request field at fault, if any.
        field: Option<String>,
    },
    /// The plane could not be reached. Safe to retry: the request never arrived.
    #[error("cannot reach porthole at {url}")]
    Connect {
        /// The base URL.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The request failed on the way, or its reply could not be decoded.
    #[error("request to porthole failed")]
    Transport(#[source] reqwest::Error),
    /// The plane answered with something that is not the API.
    #[error("unexpected reply from porthole (HTTP {status}): {body}")]
    Unexpected {
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The URL given is not usable.
    #[error("invalid URL {0:?}: give it as http://HOST:PORT or https://HOST")]
    Url(String),
    /// A local file to upload could not be read.
    #[error("cannot read {path}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    /// The HTTP status of an [`ClientError::Api`] error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Where an uploaded image comes from.
#[derive(Clone, Debug)]
pub enum ImageSource {
    /// A local file.
    File(PathBuf),
    /// A URL the client downloads and streams on, without a temporary copy.
    Url(Url),
}

impl ImageSource {
    /// `http(s)://...` is a URL; anything else a path.
    pub fn parse(text: &str) -> Self {
        match Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => ImageSource::Url(url),
            _ => ImageSource::File(PathBuf::from(text)),
        }
    }
}

/// A template to import: a disk image and, for direct boot, a kernel, initrd and cmdline.
#[derive(Clone, Debug)]
pub struct TemplateUpload {
    /// The template's name.
    pub name: String,
    /// The base disk image (qcow2 or raw).
    pub disk: ImageSource,
    /// A kernel to boot directly.
    pub kernel: Option<ImageSource>,
    /// An initrd for the kernel.
    pub initrd: Option<ImageSource>,
    /// The kernel command line.
    pub cmdline: Option<String>,
}

/// Called with the number of bytes sent since the last call.
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// A client for one porthole plane.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl Client {
    /// A client for the plane at `base`, e.g. `http://127.0.0.1:8080`.
    pub fn new(base: &str) -> Result<Self, ClientError> {
        let mut url = Url::parse(base).map_err(|_| ClientError::Url(base.into()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(ClientError::Url(base.into()));
        }
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("porthole/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientError::Transport)?;
        Ok(Self {
            http,
            base: url,
            token: None,
        })
    }

    /// The same client, sending `token` as its bearer token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The plane's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = self
            .base
            .join(path.trim_start_matches('/'))
            .expect("API paths are valid");
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `request` and returns the body of a successful reply, or the plane's error.
    async fn execute(
        &self,
        request: RequestBuilder,
    ) -> Result<(StatusCode, bytes::Bytes), ClientError> {
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(ClientError::Transport)?;
        if status.is_success() {
            return Ok((status, body));
        }
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(ErrorBody { error }) => Err(ClientError::Api {
                status: status.as_u16(),
                code: error.code,
                message: error.message,
                field: error.field,
            }),
            Err(_) => Err(unexpected(status, &body)),
        }
    }

    async fn send<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, ClientError> {
        let (status, body) = self.execute(request).await?;
        let body = if body.is_empty() {
            &b"null"[..]
        } else {
            &body[..]
        };
        serde_json::from_slice(body).map_err(|_| unexpected(status, body))
    }

    fn transport(&self, error: reqwest::Error) -> ClientError {
        if error.is_connect() {
            ClientError::Connect {
                url: self.base.to_string(),
                source: error,
            }
        } else {
            ClientError::Transport(error)
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.request(Method::GET, path)).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    /// `GET /healthz`.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get("healthz").await
    }

    /// `POST /api/v1/login`.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
    ) -> Result<LoginResponse, ClientError> {
        let body = LoginRequest {
            username: username.into(),
            password: password.into(),
            realm: None,
        };
        self.post("api/v1/login", &body).await
    }

    /// `GET /api/v1/proxmox/vms` (accessor mode): the Proxmox VMs this user may see.
    pub async fn proxmox_vms(&self) -> Result<Vec<ProxmoxVm>, ClientError> {
        self.get("api/v1/proxmox/vms").await
    }

    /// `POST /api/v1/proxmox/vms/{vmid}/console` (accessor mode): a console ticket.
    pub async fn proxmox_console_ticket(
        &self,
        vmid: u32,
        kind: ConsoleKind,
    ) -> Result<ConsoleTicket, ClientError> {
        self.post(
            &format!("api/v1/proxmox/vms/{vmid}/console"),
            &ConsoleTicketRequest { kind },
        )
        .await
    }

    /// `POST /api/v1/logout`: revokes this client's token.
    pub async fn logout(&self) -> Result<(), ClientError> {
        self.send(self.request(Method::POST, "api/v1/logout")).await
    }

    /// `GET /api/v1/users/me`.
    pub async fn me(&self) -> Result<User, ClientError> {
        self.get("api/v1/users/me").await
    }

    /// `POST /api/v1/users`.
    pub async fn create_user(&self, user: &CreateUserRequest) -> Result<User, ClientError> {
        self.post("api/v1/users", user).await
    }

    /// `GET /api/v1/users` (admins).
    pub async fn users(&self) -> Result<Vec<User>, ClientError> {
        self.get("api/v1/users").await
    }

    /// `GET /api/v1/users/{username}`.
    pub async fn user(&self, username: &str) -> Result<User, ClientError> {
        self.get(&format!("api/v1/users/{}", seg(username))).await
    }

    /// `PATCH /api/v1/users/{username}` (admins).
    pub async fn update_user(
        &self,
        username: &str,
        request: &UpdateUserRequest,
    ) -> Result<User, ClientError> {
        self.send(
            self.request(Method::PATCH, &format!("api/v1/users/{}", seg(username)))
                .json(request),
        )
        .await
    }

    /// `PUT /api/v1/users/{username}/limits` (admins).
    pub async fn set_user_limits(
        &self,
        username: &str,
        limits: &SetLimitsRequest,
    ) -> Result<User, ClientError> {
        self.send(
            self.request(
                Method::PUT,
                &format!("api/v1/users/{}/limits", seg(username)),
            )
            .json(limits),
        )
        .await
    }

    /// `GET /api/v1/groups` (admins).
    pub async fn groups(&self) -> Result<Vec<Group>, ClientError> {
        self.get("api/v1/groups").await
    }

    /// `POST /api/v1/groups` (admins).
    pub async fn create_group(&self, name: &str) -> Result<Group, ClientError> {
        self.post("api/v1/groups", &CreateGroupRequest { name: name.into() })
            .await
    }

    /// `PUT /api/v1/groups/{name}/limits` (admins).
    pub async fn set_group_limits(
        &self,
        name: &str,
        limits: &SetLimitsRequest,
    ) -> Result<Group, ClientError> {
        self.send(
            self.request(Method::PUT, &format!("api/v1/groups/{}/limits", seg(name)))
                .json(limits),
        )
        .await
    }

    /// `PUT /api/v1/groups/{name}/members/{username}` (admins).
    pub async fn add_group_member(&self, name: &str, username: &str) -> Result<Group, ClientError> {
        self.send(self.request(
            Method::PUT,
            &format!("api/v1/groups/{}/members/{}", seg(name), seg(username)),
        ))
        .await
    }

    /// `DELETE /api/v1/groups/{name}/members/{username}` (admins).
    pub async fn remove_group_member(
        &self,
        name: &str,
        username: &str,
    ) -> Result<Group, ClientError> {
        self.send(self.request(
            Method::DELETE,
            &format!("api/v1/groups/{}/members/{}", seg(name), seg(username)),
        ))
        .await
    }

    /// `DELETE /api/v1/groups/{name}` (admins). Its members keep their accounts.
    pub async fn delete_group(&self, name: &str) -> Result<(), ClientError> {
        self.send(self.request(Method::DELETE, &format!("api/v1/groups/{}", seg(name))))
            .await
    }

    /// `GET /api/v1/users/me/ssh-keys`: the SSH keys on the caller's profile.
    pub async fn ssh_keys(&self) -> Result<Vec<SshKey>, ClientError> {
        self.get("api/v1/users/me/ssh-keys").await
    }

    /// `POST /api/v1/users/me/ssh-keys`.
    pub async fn add_ssh_key(&self, request: &AddSshKeyRequest) -> Result<SshKey, ClientError> {
        self.post("api/v1/users/me/ssh-keys", request).await
    }

    /// `DELETE /api/v1/users/me/ssh-keys/{id}`.
    pub async fn delete_ssh_key(&self, id: SshKeyId) -> Result<(), ClientError> {
        self.send(self.request(Method::DELETE, &format!("api/v1/users/me/ssh-keys/{id}")))
            .await
    }

    /// `GET /api/v1/audit` (admins): the newest `limit` records.
    pub async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, ClientError> {
        self.audit(limit, None, None).await
    }

    /// `GET /api/v1/audit` (admins): the newest `limit` records, only `actor`'s if given,
    /// only those older than `before` (unix milliseconds) if given.
    pub async fn audit(
        &self,
        limit: u32,
        actor: Option<&str>,
        before: Option<i64>,
    ) -> Result<Vec<AuditEntry>, ClientError> {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("limit", &limit.to_string());
        if let Some(actor) = actor {
            query.append_pair("actor", actor);
        }
        if let Some(before) = before {
            query.append_pair("before", &before.to_string());
        }
        self.get(&format!("api/v1/audit?{}", query.finish())).await
    }

    /// `POST /api/v1/vms/{id}/actions/renew`.
    pub async fn renew_vm(&self, id: VmId) -> Result<Vm, ClientError> {
        self.send(self.request(Method::POST, &format!("api/v1/vms/{id}/actions/renew")))
            .await
    }

    /// `GET /api/v1/vms/{id}/snapshots`.
    pub async fn snapshots(&self, id: VmId) -> Result<Vec<VmSnapshot>, ClientError> {
        self.get(&format!("api/v1/vms/{id}/snapshots")).await
    }

    /// `POST /api/v1/vms/{id}/snapshots`: queues taking snapshot `name`.
    pub async fn create_snapshot(&self, id: VmId, name: &str) -> Result<JobResponse, ClientError> {
        let body = CreateSnapshotRequest { name: name.into() };
        self.post(&format!("api/v1/vms/{id}/snapshots"), &body)
            .await
    }

    /// `POST /api/v1/vms/{id}/snapshots/{name}/rollback`.
    pub async fn rollback_snapshot(
        &self,
        id: VmId,
        name: &str,
    ) -> Result<JobResponse, ClientError> {
        let path = format!("api/v1/vms/{id}/snapshots/{}/rollback", seg(name));
        self.send(self.request(Method::POST, &path)).await
    }

    /// `DELETE /api/v1/vms/{id}/snapshots/{name}`.
    pub async fn delete_snapshot(&self, id: VmId, name: &str) -> Result<JobResponse, ClientError> {
        let path = format!("api/v1/vms/{id}/snapshots/{}", seg(name));
        self.send(self.request(Method::DELETE, &path)).await
    }

    /// `GET /api/v1/templates`.
    pub async fn templates(&self) -> Result<Vec<Template>, ClientError> {
        self.get("api/v1/templates").await
    }

    /// `POST /api/v1/templates`: uploads a template as a multipart stream. `progress` hears
    /// about every chunk sent; the total is [`Client::upload_size`] of the parts.
    pub async fn import_template(
        &self,
        upload: &TemplateUpload,
        progress: ProgressFn,
    ) -> Result<Template, ClientError> {
        let mut form = Form::new().text("name", upload.name.clone());
        if let Some(cmdline) = &upload.cmdline {
            form = form.text("cmdline", cmdline.clone());
        }
        form = form.part("disk", self.part(&upload.disk, &progress).await?);
        if let Some(kernel) = &upload.kernel {
            form = form.part("kernel", self.part(kernel, &progress).await?);
        }
        if let Some(initrd) = &upload.initrd {
            form = form.part("initrd", self.part(initrd, &progress).await?);
        }
        self.send(
            self.request(Method::POST, "api/v1/templates")
                .multipart(form),
        )
        .await
    }

    /// `PATCH /api/v1/templates/{name}` (admins): approves a template for members, or not.
    pub async fn approve_template(
        &self,
        name: &str,
        approved: bool,
    ) -> Result<Template, ClientError> {
        self.send(
            self.request(Method::PATCH, &format!("api/v1/templates/{}", seg(name)))
                .json(&ApproveImageRequest { approved }),
        )
        .await
    }

    /// `PATCH /api/v1/isos/{name}` (admins): approves an ISO for members, or not.
    pub async fn approve_iso(&self, name: &str, approved: bool) -> Result<Iso, ClientError> {
        self.send(
            self.request(Method::PATCH, &format!("api/v1/isos/{}", seg(name)))
                .json(&ApproveImageRequest { approved }),
        )
        .await
    }

    /// `DELETE /api/v1/templates/{name}`.
    pub async fn delete_template(&self, name: &str) -> Result<(), ClientError> {
        self.send(self.request(Method::DELETE, &format!("api/v1/templates/{}", seg(name))))
            .await
    }

    /// `GET /api/v1/nodes` (admins).
    pub async fn nodes(&self) -> Result<Vec<Node>, ClientError> {
        self.get("api/v1/nodes").await
    }

    /// `POST /api/v1/nodes` (admins): adds a node, after checking it answers.
    pub async fn add_node(&self, request: &CreateNodeRequest) -> Result<Node, ClientError> {
        self.post("api/v1/nodes", request).await
    }

    /// `DELETE /api/v1/nodes/{name}` (admins): removes a node no VM or template uses.
    pub async fn remove_node(&self, name: &str) -> Result<(), ClientError> {
        self.send(self.request(Method::DELETE, &format!("api/v1/nodes/{}", seg(name))))
            .await
    }

    /// `DELETE /api/v1/nodes/{name}?forget_vms=true` (admins): removes a node that is
    /// offline, forgetting its VMs' records.
    pub async fn forget_node(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("api/v1/nodes/{}?forget_vms=true", seg(name));
        self.send(self.request(Method::DELETE, &path)).await
    }

    /// `POST /api/v1/nodes/{node}/templates` (admins): links a template the node keeps.
    pub async fn link_template(
        &self,
        node: &str,
        request: &LinkTemplateRequest,
    ) -> Result<Template, ClientError> {
        self.post(&format!("api/v1/nodes/{}/templates", seg(node)), request)
            .await
    }

    /// `DELETE /api/v1/isos/{name}`.
    pub async fn delete_iso(&self, name: &str) -> Result<(), ClientError> {
        self.send(self.request(Method::DELETE, &format!("api/v1/isos/{}", seg(name))))
            .await
    }

    /// `GET /api/v1/isos`.
    pub async fn isos(&self) -> Result<Vec<Iso>, ClientError> {
        self.get("api/v1/isos").await
    }

    /// `POST /api/v1/isos`: uploads an ISO as a multipart stream.
    pub async fn import_iso(
        &self,
        name: &str,
        source: &ImageSource,
        progress: ProgressFn,
    ) -> Result<Iso, ClientError> {
        let form = Form::new()
            .text("name", name.to_owned())
            .part("iso", self.part(source, &progress).await?);
        self.send(self.request(Method::POST, "api/v1/isos").multipart(form))
            .await
    }

    /// The number of bytes `source` will send, when it is known in advance.
    pub async fn upload_size(&self, source: &ImageSource) -> Result<Option<u64>, ClientError> {
        match source {
            ImageSource::File(path) => file_len(path).map(Some),
            ImageSource::Url(url) => {
                let response = self
                    .http
                    .head(url.clone())
                    .send()
                    .await
                    .map_err(ClientError::Transport)?;
                Ok(response
                    .status()
                    .is_success()
                    .then(|| response.content_length())
                    .flatten())
            }
        }
    }

    async fn part(&self, source: &ImageSource, progress: &ProgressFn) -> Result<Part, ClientError> {
        let progress = Arc::clone(progress);
        let count = move |chunk: &bytes::Bytes| progress(chunk.len() as u64);
        let (body, len, filename) = match source {
            ImageSource::File(path) => {
                let file =
                    tokio::fs::File::open(path)
                        .await
                        .map_err(|source| ClientError::File {
                            path: path.clone(),
                            source,
                        })?;
                let len = file_len(path)?;
                let stream = ReaderStream::with_capacity(file, 256 * 1024).inspect_ok(count);
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                (reqwest::Body::wrap_stream(stream), Some(len), name)
            }
            ImageSource::Url(url) => {
                let response = self
                    .http
                    .get(url.clone())
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(ClientError::Transport)?;
                let len = response.content_length();
                let stream = response.bytes_stream().inspect_ok(count);
                let name = url
                    .path_segments()
                    .and_then(|mut s| s.next_back())
                    .map(str::to_owned);
                (reqwest::Body::wrap_stream(stream), len, name)
            }
        };
        let part = match len {
            Some(len) => Part::stream_with_length(body, len),
            None => Part::stream(body),
        };
        Ok(part.file_name(filename.unwrap_or_else(|| "image".into())))
    }

    /// `GET /api/v1/vms`.
    pub async fn vms(&self) -> Result<Vec<Vm>, ClientError> {
        self.get("api/v1/vms").await
    }

    /// `GET /api/v1/vms/{id}`.
    pub async fn vm(&self, id: VmId) -> Result<Vm, ClientError> {
        self.get(&format!("api/v1/vms/{id}")).await
    }

    /// Finds a VM by id or by name.
    pub async fn find_vm(&self, id_or_name: &str) -> Result<Vm, ClientError> {
        if let Ok(id) = id_or_name.parse::<VmId>() {
            return self.vm(id).await;
        }
        self.vms()
            .await?
            .into_iter()
            .find(|vm| vm.name == id_or_name)
            .ok_or_else(|| ClientError::Api {
                status: 404,
                code: "not_found".into(),
                message: format!("no VM named {id_or_name:?} is visible to you"),
                field: None,
            })
    }

    /// `POST /api/v1/vms`.
    pub async fn create_vm(
        &self,
        request: &CreateVmRequest,
    ) -> Result<CreateVmResponse, ClientError> {
        self.post("api/v1/vms", request).await
    }

    /// `PATCH /api/v1/vms/{id}`.
    pub async fn update_vm(&self, id: VmId, request: &UpdateVmRequest) -> Result<Vm, ClientError> {
        self.send(
            self.request(Method::PATCH, &format!("api/v1/vms/{id}"))
                .json(request),
        )
        .await
    }

    /// `POST /api/v1/vms/{id}/actions/{action}`.
    pub async fn vm_action(&self, id: VmId, action: &str) -> Result<JobResponse, ClientError> {
        self.send(self.request(Method::POST, &format!("api/v1/vms/{id}/actions/{action}")))
            .await
    }

    /// `DELETE /api/v1/vms/{id}`.
    pub async fn delete_vm(&self, id: VmId) -> Result<JobResponse, ClientError> {
        self.send(self.request(Method::DELETE, &format!("api/v1/vms/{id}")))
            .await
    }

    /// `GET /api/v1/vms/{id}/console-output`: the recent serial console output.
    pub async fn console_output(&self, id: VmId) -> Result<String, ClientError> {
        let request = self.request(Method::GET, &format!("api/v1/vms/{id}/console-output"));
        let (_, body) = self.execute(request).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// `POST /api/v1/vms/{id}/console`: a single-use console ticket.
    pub async fn vm_console_ticket(
        &self,
        id: VmId,
        kind: ConsoleKind,
    ) -> Result<ConsoleTicket, ClientError> {
        self.post(
            &format!("api/v1/vms/{id}/console"),
            &ConsoleTicketRequest { kind },
        )
        .await
    }

    /// `GET /api/v1/external-consoles`.
    pub async fn external_consoles(&self) -> Result<Vec<ExternalConsole>, ClientError> {
        self.get("api/v1/external-consoles").await
    }

    /// `POST /api/v1/external-consoles`.
    pub async fn create_external_console(
        &self,
        request: &CreateExternalConsoleRequest,
    ) -> Result<ExternalConsole, ClientError> {
        self.post("api/v1/external-consoles", request).await
    }

    /// `DELETE /api/v1/external-consoles/{id}`.
    pub async fn delete_external_console(&self, id: ExternalConsoleId) -> Result<(), ClientError> {
        self.send(self.request(Method::DELETE, &format!("api/v1/external-consoles/{id}")))
            .await
    }

    /// `PUT /api/v1/external-consoles/{id}/grants/{username}`.
    pub async fn grant_external_console(
        &self,
        id: ExternalConsoleId,
        username: &str,
    ) -> Result<(), ClientError> {
        let path = format!("api/v1/external-consoles/{id}/grants/{}", seg(username));
        self.send(self.request(Method::PUT, &path)).await
    }

    /// `DELETE /api/v1/external-consoles/{id}/grants/{username}`.
    pub async fn revoke_external_console(
        &self,
        id: ExternalConsoleId,
        username: &str,
    ) -> Result<(), ClientError> {
        let path = format!("api/v1/external-consoles/{id}/grants/{}", seg(username));
        self.send(self.request(Method::DELETE, &path)).await
    }

    /// `POST /api/v1/external-consoles/{id}/console`: a single-use console ticket.
    pub async fn external_console_ticket(
        &self,
        id: ExternalConsoleId,
        kind: ConsoleKind,
    ) -> Result<ConsoleTicket, ClientError> {
        self.post(
            &format!("api/v1/external-consoles/{id}/console"),
            &ConsoleTicketRequest { kind },
        )
        .await
    }

    /// Finds an external console by id or by name.
    pub async fn find_external_console(
        &self,
        id_or_name: &str,
    ) -> Result<ExternalConsole, ClientError> {
        let consoles = self.external_consoles().await?;
        consoles
            .into_iter()
            .find(|c| c.name == id_or_name || c.id.to_string() == id_or_name)
            .ok_or_else(|| ClientError::Api {
                status: 404,
                code: "not_found".into(),
                message: format!("no external console named {id_or_name:?} is visible to you"),
                field: None,
            })
    }

    /// `GET /api/v1/console-sessions`: the audit records of recent console sessions (admins).
    pub async fn console_sessions(&self) -> Result<Vec<ConsoleSession>, ClientError> {
        self.get("api/v1/console-sessions").await
    }

    /// The WebSocket URL for `ticket`: `ws(s)://HOST/ws_path?ticket=...`, plus
    /// `&framing=termproxy` when asked for.
    pub fn console_url(&self, ticket: &ConsoleTicket, termproxy: bool) -> Url {
        let mut url = self
            .base
            .join(ticket.ws_path.trim_start_matches('/'))
            .expect("ws_path is a path");
        let scheme = if self.base.scheme() == "https" {
            "wss"
        } else {
            "ws"
        };
        url.set_scheme(scheme)
            .expect("ws and wss are valid schemes");
        url.query_pairs_mut().append_pair("ticket", &ticket.ticket);
        if termproxy {
            url.query_pairs_mut().append_pair("framing", "termproxy");
        }
        url
    }

    /// The bearer token this client sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// `GET /api/v1/jobs/{id}`.
    pub async fn job(&self, id: JobId) -> Result<Job, ClientError> {
        self.get(&format!("api/v1/jobs/{id}")).await
    }

    /// `GET /api/v1/jobs`: recent jobs.
    pub async fn jobs(&self) -> Result<Vec<Job>, ClientError> {
        self.get("api/v1/jobs").await
    }

    /// Polls job `id` every `interval` until it finishes, calling `on_update` with each
    /// observation. Returns the finished job, whether it succeeded or failed.
    pub async fn wait_for_job(
        &self,
        id: JobId,
        interval: Duration,
        mut on_update: impl FnMut(&Job),
    ) -> Result<Job, ClientError> {
        loop {
            let job = self.job(id).await?;
            on_update(&job);
            if job.state.is_final() {
                return Ok(job);
            }
            tokio::time::sleep(interval).await;
        }
    }
}

/// `text` as one URL path segment: everything but unreserved characters percent-encoded, so
/// a `/`, `?` or `#` in a name stays inside its segment.
fn seg(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn file_len(path: &Path) -> Result<u64, ClientError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| ClientError::File {
            path: path.to_owned(),
            source,
        })
}

fn unexpected(status: StatusCode, body: &[u8]) -> ClientError {
    let text = String::from_utf8_lossy(body);
    ClientError::Unexpected {
        status: status.as_u16(),
        body: text.chars().take(200).collect(),
    }
}
