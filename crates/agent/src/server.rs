//! The agent's API: this host's VMs, driven through its local driver, for the plane only.
//!
//! Every route sits behind mutual TLS that admits the plane's certificate and nothing else
//! (see [`crate::tls::ClientAuth::Required`]). Driver errors go back as [`WireError`]s.
//! Consoles are WebSockets: binary messages carry the console's bytes, text messages carry
//! [`ConsoleControl`]s. A VNC stream is QEMU's own, unauthenticated yet; its one-time
//! password goes to the plane in a response header, and the plane's gateway answers QEMU's
//! challenge, exactly as it does for a local VM.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{SinkExt, StreamExt};
use porthole_core::driver::{
    BootMedia, ConsoleEndpoint, ConsoleKind, Driver, DriverError, Progress, SharedConsole,
    VmDefinition,
};
use porthole_core::{IsoId, Resources, SnapshotName, TemplateId, VmId};
use serde::Deserialize;
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use porthole_image_cache::ImageCache;

use crate::wire::{
    BootMediaRequest, Cached, ConsoleControl, CreateEvent, Health, ShutdownRequest,
    VNC_PASSWORD_HEADER, WireError,
};

/// How long connecting to a local console socket may take.
const CONSOLE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest piece of console output relayed at once.
const CHUNK: usize = 64 * 1024;

/// What the agent's routes work with.
#[derive(Debug)]
pub struct AgentService {
    driver: Arc<dyn Driver>,
    images: Arc<ImageCache>,
    vms: PathBuf,
}

impl AgentService {
    /// The service for `driver`, whose VMs live in `vms` and boot from `images`.
    pub fn new(driver: Arc<dyn Driver>, images: Arc<ImageCache>, vms: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            driver,
            images,
            vms,
        })
    }

    /// A conflict if any VM on this host is one that `uses` an image.
    fn refuse_if_used(
        &self,
        operation: &'static str,
        uses: impl Fn(&VmDefinition) -> bool,
    ) -> Result<(), Failed> {
        let users = self.definitions().iter().filter(|def| uses(def)).count();
        if users > 0 {
            return Err(Failed(DriverError::Conflict {
                operation: operation.into(),
                reason: format!("{users} VMs on this host use the image"),
            }));
        }
        Ok(())
    }

    /// The definitions of every VM on this host, read from their `vm.json`.
    fn definitions(&self) -> Vec<VmDefinition> {
        std::fs::read_dir(&self.vms)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| std::fs::read(entry.path().join("vm.json")).ok())
            .filter_map(|json| serde_json::from_slice(&json).ok())
            .collect()
    }
}

type Shared = State<Arc<AgentService>>;

/// The agent's routes.
pub fn router(service: Arc<AgentService>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/vms", post(create))
        .route("/v1/vms/{id}", get(status).delete(delete))
        .route("/v1/vms/{id}/power/{action}", post(power))
        .route("/v1/vms/{id}/shutdown", post(shutdown))
        .route("/v1/vms/{id}/resources", post(resize))
        .route("/v1/vms/{id}/boot-media", post(boot_media))
        .route(
            "/v1/cache/templates/{id}",
            axum::routing::delete(evict_template),
        )
        .route("/v1/cache/isos/{id}", axum::routing::delete(evict_iso))
        .route("/v1/vms/{id}/console-output", get(console_output))
        .route("/v1/vms/{id}/console/{kind}", get(console))
        .route(
            "/v1/vms/{id}/snapshots",
            get(snapshots).post(snapshot_create),
        )
        .route(
            "/v1/vms/{id}/snapshots/{name}",
            axum::routing::delete(snapshot_delete),
        )
        .route(
            "/v1/vms/{id}/snapshots/{name}/rollback",
            post(snapshot_rollback),
        )
        .with_state(service)
}

/// A driver error as the plane reads it.
struct Failed(DriverError);

impl From<DriverError> for Failed {
    fn from(error: DriverError) -> Self {
        Failed(error)
    }
}

impl IntoResponse for Failed {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            DriverError::NotFound(_) | DriverError::SnapshotNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            DriverError::Invalid(_) | DriverError::BadImage(_) => StatusCode::UNPROCESSABLE_ENTITY,
            DriverError::Conflict { .. } => StatusCode::CONFLICT,
            DriverError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(WireError::from(&self.0))).into_response()
    }
}

type Answer<T> = Result<Json<T>, Failed>;

async fn health(State(agent): Shared) -> Answer<Health> {
    Ok(Json(Health {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        capacity: agent.driver.capacity().unwrap_or_default(),
        inventory: agent.driver.inventory().await?,
        cached: Cached {
            templates: agent.images.cached_templates(),
            isos: agent.images.cached_isos(),
        },
    }))
}

async fn status(State(agent): Shared, Path(id): Path<VmId>) -> Answer<porthole_core::PowerState> {
    Ok(Json(agent.driver.status(id).await?))
}

async fn delete(State(agent): Shared, Path(id): Path<VmId>) -> Answer<()> {
    Ok(Json(agent.driver.delete(id).await?))
}

async fn power(State(agent): Shared, Path((id, action)): Path<(VmId, String)>) -> Answer<()> {
    let driver = &agent.driver;
    match action.as_str() {
        "start" => driver.start(id).await?,
        "stop" => driver.stop(id).await?,
        "reset" => driver.reset(id).await?,
        "suspend" => driver.suspend(id).await?,
        "resume" => driver.resume(id).await?,
        _ => return Err(Failed(DriverError::Unsupported("this power action".into()))),
    }
    Ok(Json(()))
}

async fn shutdown(
    State(agent): Shared,
    Path(id): Path<VmId>,
    Json(request): Json<ShutdownRequest>,
) -> Answer<()> {
    let timeout = Duration::from_secs(request.timeout_secs);
    Ok(Json(agent.driver.shutdown(id, timeout).await?))
}

async fn resize(
    State(agent): Shared,
    Path(id): Path<VmId>,
    Json(resources): Json<Resources>,
) -> Answer<()> {
    Ok(Json(agent.driver.resize(id, resources).await?))
}

async fn console_output(State(agent): Shared, Path(id): Path<VmId>) -> Result<Vec<u8>, Failed> {
    Ok(agent.driver.console_output(id).await?)
}

#[derive(Deserialize)]
struct SnapshotRequest {
    name: SnapshotName,
}

async fn snapshots(
    State(agent): Shared,
    Path(id): Path<VmId>,
) -> Answer<Vec<porthole_core::Snapshot>> {
    Ok(Json(agent.driver.snapshots(id).await?))
}

async fn snapshot_create(
    State(agent): Shared,
    Path(id): Path<VmId>,
    Json(request): Json<SnapshotRequest>,
) -> Answer<()> {
    Ok(Json(agent.driver.snapshot_create(id, &request.name).await?))
}

async fn snapshot_delete(
    State(agent): Shared,
    Path((id, name)): Path<(VmId, SnapshotName)>,
) -> Answer<()> {
    Ok(Json(agent.driver.snapshot_delete(id, &name).await?))
}

async fn snapshot_rollback(
    State(agent): Shared,
    Path((id, name)): Path<(VmId, SnapshotName)>,
) -> Answer<()> {
    Ok(Json(agent.driver.snapshot_rollback(id, &name).await?))
}

/// Drops a cached template no VM on this host is layered on.
async fn evict_template(State(agent): Shared, Path(id): Path<TemplateId>) -> Answer<()> {
    agent.refuse_if_used(
        "dropping a cached template",
        |def| matches!(&def.boot, BootMedia::Template { id: used, .. } if *used == id),
    )?;
    Ok(Json(agent.images.evict_template(id).await?))
}

/// Drops a cached ISO no VM on this host boots from or has in its drive.
async fn evict_iso(State(agent): Shared, Path(id): Path<IsoId>) -> Answer<()> {
    agent.refuse_if_used("dropping a cached ISO", |def| {
        matches!(&def.boot, BootMedia::Iso { id: used } if *used == id) || def.cdrom == Some(id)
    })?;
    Ok(Json(agent.images.evict_iso(id).await?))
}

/// Creates a VM, streaming [`CreateEvent`]s as JSON lines: progress while a template image
/// is fetched and the disk made, then the outcome. The work goes on if the plane hangs up;
/// the plane's retry of the job then finds it done (creates are idempotent).
async fn create(State(agent): Shared, Json(def): Json<VmDefinition>) -> Response {
    let (events, stream) = mpsc::unbounded_channel::<CreateEvent>();
    tokio::spawn(async move {
        let progress = ChannelProgress::new(events.clone());
        let outcome = agent.driver.create(&def, &progress).await;
        let last = match outcome {
            Ok(()) => CreateEvent::Done,
            Err(e) => CreateEvent::Failed {
                error: WireError::from(&e),
            },
        };
        let _ = events.send(last);
    });
    let lines = tokio_stream_of(stream).map(|event| {
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(line)
    });
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(Body::from_stream(lines))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn tokio_stream_of<T: Send + 'static>(
    mut receiver: mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// A change of CD-ROM and boot order; the driver fetches the ISO first if this host lacks
/// it.
async fn boot_media(
    State(agent): Shared,
    Path(id): Path<VmId>,
    Json(request): Json<BootMediaRequest>,
) -> Answer<()> {
    Ok(Json(
        agent
            .driver
            .set_boot_media(id, request.cdrom, request.order)
            .await?,
    ))
}

/// Progress sent down the create stream, at most once per percent or step.
struct ChannelProgress {
    events: mpsc::UnboundedSender<CreateEvent>,
    last: Mutex<(i32, String)>,
}

impl ChannelProgress {
    fn new(events: mpsc::UnboundedSender<CreateEvent>) -> Self {
        Self {
            events,
            last: Mutex::new((-1, String::new())),
        }
    }
}

impl Progress for ChannelProgress {
    fn update(&self, fraction: f32, step: &str) {
        let percent = (fraction * 100.0) as i32;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.0 == percent && last.1 == step {
            return;
        }
        *last = (percent, step.to_owned());
        let _ = self.events.send(CreateEvent::Progress {
            fraction,
            step: step.to_owned(),
        });
    }
}

/// Opens a VM console as a WebSocket.
async fn console(
    State(agent): Shared,
    Path((id, kind)): Path<(VmId, ConsoleKind)>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, Failed> {
    match agent.driver.console(id, kind).await? {
        ConsoleEndpoint::Unix { path, password } => {
            let stream = tokio::time::timeout(CONSOLE_CONNECT_TIMEOUT, UnixStream::connect(&path))
                .await
                .map_err(|_| DriverError::Timeout {
                    operation: "console connect".into(),
                    seconds: CONSOLE_CONNECT_TIMEOUT.as_secs(),
                })?
                .map_err(|e| DriverError::io(format!("connecting to {}", path.display()), e))?;
            let mut response = upgrade.on_upgrade(move |socket| relay_stream(socket, stream));
            if let Some(password) = password
                && let Ok(value) = HeaderValue::from_str(&password)
            {
                response.headers_mut().insert(VNC_PASSWORD_HEADER, value);
            }
            Ok(response)
        }
        ConsoleEndpoint::Shared(shared) => {
            let driver = Arc::clone(&agent.driver);
            Ok(upgrade.on_upgrade(move |socket| relay_shared(socket, shared, driver, id)))
        }
        _ => Err(Failed(DriverError::Unsupported(
            "this kind of console".into(),
        ))),
    }
}

/// Relays a console socket both ways until either side ends.
async fn relay_stream(socket: WebSocket, mut stream: UnixStream) {
    let (mut tx, mut rx) = socket.split();
    let mut buf = vec![0u8; CHUNK];
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                        break;
                    }
                }
            },
            message = rx.next() => match message {
                Some(Ok(Message::Binary(data))) => {
                    if stream.write_all(&data).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = tx.send(Message::Close(None)).await;
}

/// Relays a shared console (the serial port): its recent output first, then everything
/// after; input and resizes go to the device.
async fn relay_shared(
    socket: WebSocket,
    shared: Arc<dyn SharedConsole>,
    driver: Arc<dyn Driver>,
    id: VmId,
) {
    let (mut tx, mut rx) = socket.split();
    let (backlog, mut feed) = shared.attach();
    if !backlog.is_empty() && tx.send(Message::Binary(backlog.into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            output = feed.recv() => match output {
                Ok(bytes) => {
                    if tx.send(Message::Binary(bytes)).await.is_err() {
                        break;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            message = rx.next() => match message {
                Some(Ok(Message::Binary(data))) => {
                    if shared.write(&data).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Text(text))) => {
                    if let Ok(ConsoleControl::Resize { cols, rows }) = serde_json::from_str(&text)
                        && let Err(e) = driver.resize_console(id, cols, rows).await
                    {
                        tracing::debug!(vm = %id, error = %e, "console resize not delivered");
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = tx.send(Message::Close(None)).await;
}
