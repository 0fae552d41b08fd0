//! Consoles: tickets, the WebSocket endpoints, external consoles and the session audit.
//!
//! Every check of a WebSocket connection happens before the upgrade, so a refused client
//! gets an HTTP status and not one byte of console: a foreign `Origin` (403), a missing,
//! unknown, used or expired ticket (401), a ticket for another console or kind or a user who
//! lost access (403), too many sessions (429), a console that is not running (409).

use std::net::SocketAddr;

use axum::Json;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures::{SinkExt, StreamExt, future};
use porthole_api::{
    ConsoleSession, ConsoleTicket, ConsoleTicketRequest, CreateExternalConsoleRequest, ErrorBody,
    ExternalConsole,
};
use porthole_core::{ConsoleKind, ExternalConsoleId};
use porthole_gateway::{Frame, Framing, Rejection, TransportError};
use porthole_store::consoles::{ConsoleTarget, parse_console_kind};
use serde::Deserialize;

use crate::app::AppState;
use crate::controllers::proxmox::parse_vmid;
use crate::error::ApiError;
use crate::extract::{ApiJson, Caller, OriginCheck, check_origin};
use crate::services::audit::{self, Target};
use crate::services::consoles::{self, Admission, Refusal, external_to_wire, session_to_wire};
use crate::services::vms::parse_vm_id;

/// Largest WebSocket message a client may send.
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// How many session records the audit list shows.
const RECENT_SESSIONS: u32 = 200;

/// A single-use ticket for a VM's console.
#[utoipa::path(post, path = "/api/v1/vms/{id}/console", tag = "consoles", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The VM's id")),
    request_body = ConsoleTicketRequest,
    responses((status = 200, body = ConsoleTicket), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn vm_ticket(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<ConsoleTicketRequest>,
) -> Result<Json<ConsoleTicket>, ApiError> {
    consoles::mint_vm_ticket(&app, &caller, parse_vm_id(&id)?, request.kind)
        .await
        .map(Json)
}

/// A single-use ticket for an external console.
#[utoipa::path(post, path = "/api/v1/external-consoles/{id}/console", tag = "consoles",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The external console's id")),
    request_body = ConsoleTicketRequest,
    responses((status = 200, body = ConsoleTicket), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn external_ticket(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<ConsoleTicketRequest>,
) -> Result<Json<ConsoleTicket>, ApiError> {
    consoles::mint_external_ticket(&app, &caller, parse_external_id(&id)?, request.kind)
        .await
        .map(Json)
}

/// The query of a console WebSocket URL.
#[derive(Debug, Deserialize)]
pub struct ConsoleQuery {
    /// The ticket; for termproxy framing it may come in the login line instead.
    ticket: Option<String>,
    /// `binary` (the default) or `termproxy`.
    framing: Option<String>,
}

/// The WebSocket of a VM's console. Open it with `?ticket=TICKET`, subprotocol `binary`.
#[utoipa::path(get, path = "/api/v1/vms/{id}/console/{kind}/ws", tag = "consoles",
    params(("id" = uuid::Uuid, Path, description = "The VM's id"),
        ("kind" = String, Path, description = "vnc or serial"),
        ("ticket" = Option<String>, Query, description = "The console ticket"),
        ("framing" = Option<String>, Query, description = "binary (default) or termproxy")),
    responses((status = 101, description = "The console stream"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn vm_socket(
    State(app): State<AppState>,
    Path((id, kind)): Path<(String, String)>,
    Query(query): Query<ConsoleQuery>,
    headers: HeaderMap,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let target = ConsoleTarget::Vm(parse_vm_id(&id)?);
    accept(app, target, &kind, query, &headers, remote, upgrade).await
}

/// The WebSocket of an external console. Open it with `?ticket=TICKET`.
#[utoipa::path(get, path = "/api/v1/external-consoles/{id}/console/{kind}/ws", tag = "consoles",
    params(("id" = uuid::Uuid, Path, description = "The external console's id"),
        ("kind" = String, Path, description = "vnc or serial"),
        ("ticket" = Option<String>, Query, description = "The console ticket"),
        ("framing" = Option<String>, Query, description = "binary (default) or termproxy")),
    responses((status = 101, description = "The console stream"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn external_socket(
    State(app): State<AppState>,
    Path((id, kind)): Path<(String, String)>,
    Query(query): Query<ConsoleQuery>,
    headers: HeaderMap,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let target = ConsoleTarget::External(parse_external_id(&id)?);
    accept(app, target, &kind, query, &headers, remote, upgrade).await
}

/// The WebSocket of a Proxmox VM's console in accessor mode. Open it with `?ticket=TICKET`.
#[utoipa::path(get, path = "/api/v1/proxmox/vms/{vmid}/console/{kind}/ws", tag = "proxmox",
    params(("vmid" = u32, Path, description = "The VMID"),
        ("kind" = String, Path, description = "vnc or serial"),
        ("ticket" = Option<String>, Query, description = "The console ticket"),
        ("framing" = Option<String>, Query, description = "binary (default) or termproxy")),
    responses((status = 101, description = "The console stream"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn proxmox_socket(
    State(app): State<AppState>,
    Path((vmid, kind)): Path<(String, String)>,
    Query(query): Query<ConsoleQuery>,
    headers: HeaderMap,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    accept(
        app,
        ConsoleTarget::Proxmox(parse_vmid(&vmid)?),
        &kind,
        query,
        &headers,
        remote,
        upgrade,
    )
    .await
}

async fn accept(
    app: AppState,
    target: ConsoleTarget,
    kind: &str,
    query: ConsoleQuery,
    headers: &HeaderMap,
    remote: SocketAddr,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let rejected = |reason: Rejection| {
        app.consoles.metrics.reject(reason);
        tracing::info!(reason = reason.as_str(), from = %remote, "console connection refused");
        ApiError::ConsoleRejected(reason)
    };
    if let OriginCheck::Foreign(origin) = check_origin(app.config.public_url.as_deref(), headers) {
        tracing::info!(%origin, "console connection from a foreign origin");
        return Err(rejected(Rejection::ForeignOrigin));
    }
    let kind = parse_console_kind(kind).ok_or_else(|| {
        ApiError::NotFound(format!("no console kind {kind:?}; use vnc or serial"))
    })?;
    let framing = match query.framing.as_deref() {
        None | Some("binary") => Framing::Binary,
        Some("termproxy") if kind == ConsoleKind::Serial => Framing::Termproxy,
        Some("termproxy") => {
            return Err(ApiError::malformed(
                Some("framing"),
                "framing: termproxy is for serial consoles",
            ));
        }
        Some(other) => {
            return Err(ApiError::malformed(
                Some("framing"),
                format!("framing: {other:?} is not binary or termproxy"),
            ));
        }
    };
    let admission = match query.ticket.as_deref().filter(|t| !t.is_empty()) {
        Some(ticket) => match consoles::redeem(&app, ticket, target, kind).await {
            Ok(redeemed) => match app.consoles.limiter.try_acquire(&redeemed.user.id) {
                Some(slot) => Admission::Redeemed(Box::new(redeemed), slot),
                None => return Err(rejected(Rejection::TooManySessions)),
            },
            Err(Refusal::Rejected(reason)) => return Err(rejected(reason)),
            Err(Refusal::Unavailable(why)) => {
                return Err(ApiError::conflict(
                    None,
                    format!("console unavailable: {why}"),
                ));
            }
            Err(Refusal::Internal(e)) => return Err(e),
        },
        None if framing == Framing::Termproxy => Admission::LoginLine(target, kind),
        None => return Err(rejected(Rejection::Missing)),
    };
    let upgrade = upgrade
        .protocols(["binary"])
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0);
    Ok(upgrade.on_upgrade(move |socket| async move {
        consoles::run_session(&app, frames(socket), admission, framing, remote).await;
    }))
}

/// axum's WebSocket as the gateway's frames.
fn frames(
    socket: WebSocket,
) -> impl futures::Stream<Item = Result<Frame, TransportError>>
+ futures::Sink<Frame, Error = axum::Error>
+ Unpin {
    socket
        .with(|frame: Frame| {
            future::ready(Ok::<_, axum::Error>(match frame {
                Frame::Binary(data) => Message::Binary(data),
                Frame::Text(text) => Message::Text(text.into()),
                Frame::Ping(data) => Message::Ping(data),
                Frame::Pong(data) => Message::Pong(data),
                Frame::Close(close) => Message::Close(close.map(|(code, reason)| CloseFrame {
                    code,
                    reason: reason.into(),
                })),
            }))
        })
        .map(|message| match message {
            Ok(Message::Binary(data)) => Ok(Frame::Binary(data)),
            Ok(Message::Text(text)) => Ok(Frame::Text(text.as_str().to_owned())),
            Ok(Message::Ping(data)) => Ok(Frame::Ping(data)),
            Ok(Message::Pong(data)) => Ok(Frame::Pong(data)),
            Ok(Message::Close(close)) => Ok(Frame::Close(
                close.map(|c| (c.code, c.reason.as_str().to_owned())),
            )),
            // tungstenite reports size limits as capacity errors; its words are the only handle.
            Err(e)
                if e.to_string().contains("too long") || e.to_string().contains("Space limit") =>
            {
                Err(TransportError::MessageTooBig)
            }
            Err(e) => Err(TransportError::Other(e.to_string())),
        })
}

fn parse_external_id(text: &str) -> Result<ExternalConsoleId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::NotFound(format!("no external console has the id {text:?}")))
}

/// External consoles: all of them for admins, the granted ones for members.
#[utoipa::path(get, path = "/api/v1/external-consoles", tag = "consoles", security(("bearer" = [])),
    responses((status = 200, body = Vec<ExternalConsole>)))]
pub async fn list_external(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ExternalConsole>>, ApiError> {
    let user = (!caller.is_admin()).then_some(caller.user.id);
    Ok(Json(
        app.store
            .external_consoles(user)
            .await?
            .iter()
            .map(external_to_wire)
            .collect(),
    ))
}

/// Registers a console that is not a porthole VM (admins only).
#[utoipa::path(post, path = "/api/v1/external-consoles", tag = "consoles", security(("bearer" = [])),
    request_body = CreateExternalConsoleRequest,
    responses((status = 201, body = ExternalConsole), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_external(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateExternalConsoleRequest>,
) -> Result<(StatusCode, Json<ExternalConsole>), ApiError> {
    caller.require_admin()?;
    let name = request.name.clone();
    let result = consoles::create_external(&app, request).await;
    let target = result.as_ref().map_or(
        Target {
            kind: "external_console",
            id: None,
            name: Some(name),
        },
        |c| Target::new("external_console", c.id, &c.name),
    );
    let console = audit::recorded(
        &app,
        (&caller).into(),
        "external_console.create",
        Some(target),
        None,
        result,
    )
    .await?;
    tracing::info!(console = %console.name, by = %caller.user.username, "external console registered");
    Ok((StatusCode::CREATED, Json(console)))
}

/// Removes an external console and its grants (admins only).
#[utoipa::path(delete, path = "/api/v1/external-consoles/{id}", tag = "consoles", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The external console's id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_external(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    let id = parse_external_id(&id)?;
    let result = app.store.delete_external_console(id).await;
    let target = Target::new("external_console", id, "");
    audit::recorded(
        &app,
        (&caller).into(),
        "external_console.delete",
        Some(target),
        None,
        result,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lets a user open an external console (admins only).
#[utoipa::path(put, path = "/api/v1/external-consoles/{id}/grants/{username}", tag = "consoles",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The external console's id"),
        ("username" = String, Path, description = "Who")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn grant(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, username)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (console, user) = grant_parts(&app, &caller, &id, &username).await?;
    let result = app
        .store
        .grant_external_console(console, user, app.clock.now_millis())
        .await;
    let target = Target::new("external_console", console, "");
    audit::recorded(
        &app,
        (&caller).into(),
        "external_console.grant",
        Some(target),
        Some(username),
        result,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Takes a user's access to an external console away (admins only).
#[utoipa::path(delete, path = "/api/v1/external-consoles/{id}/grants/{username}", tag = "consoles",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The external console's id"),
        ("username" = String, Path, description = "Who")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, username)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (console, user) = grant_parts(&app, &caller, &id, &username).await?;
    let result = app.store.revoke_external_console(console, user).await;
    let target = Target::new("external_console", console, "");
    audit::recorded(
        &app,
        (&caller).into(),
        "external_console.revoke",
        Some(target),
        Some(username),
        result,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn grant_parts(
    app: &AppState,
    caller: &Caller,
    id: &str,
    username: &str,
) -> Result<(ExternalConsoleId, porthole_core::UserId), ApiError> {
    caller.require_admin()?;
    let id = parse_external_id(id)?;
    app.store
        .external_console(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no external console {id}")))?;
    let user = app
        .store
        .user_by_name(username)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no user {username:?}")))?;
    Ok((id, user.id))
}

/// The audit records of recent console sessions (admins only).
#[utoipa::path(get, path = "/api/v1/console-sessions", tag = "consoles", security(("bearer" = [])),
    responses((status = 200, body = Vec<ConsoleSession>), (status = 403, body = ErrorBody)))]
pub async fn sessions(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ConsoleSession>>, ApiError> {
    caller.require_admin()?;
    Ok(Json(
        app.store
            .console_sessions(RECENT_SESSIONS)
            .await?
            .iter()
            .map(session_to_wire)
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ws_paths_route_here() {
        let vm = porthole_core::VmId::random();
        assert_eq!(
            consoles::ws_path(ConsoleTarget::Vm(vm), ConsoleKind::Serial),
            format!("/api/v1/vms/{vm}/console/serial/ws")
        );
    }
}
