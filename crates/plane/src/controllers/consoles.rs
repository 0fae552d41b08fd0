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
use porthole_core::ConsoleKind;
use porthole_gateway::{Frame, Framing, Rejection, TransportError};
use porthole_store::consoles::{ConsoleTarget, parse_console_kind};
use serde::Deserialize;

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, OriginCheck, check_origin};
use crate::services::accessor::parse_vmid;
use crate::services::caller::Caller;
use crate::services::consoles::external::{self, parse_id as parse_external_id};
use crate::services::consoles::{sessions, tickets};
use crate::services::vms::parse_vm_id;

/// Largest WebSocket message a client may send.
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

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
    tickets::mint_vm_ticket(&app, &caller, parse_vm_id(&id)?, request.kind)
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
    tickets::mint_external_ticket(&app, &caller, parse_external_id(&id)?, request.kind)
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
    if let OriginCheck::Foreign(origin) = check_origin(app.config.public_url.as_deref(), headers) {
        tracing::info!(%origin, "console connection from a foreign origin");
        return Err(sessions::rejected(&app, Rejection::ForeignOrigin, remote));
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
    let admission =
        sessions::admit(&app, query.ticket.as_deref(), target, kind, framing, remote).await?;
    let upgrade = upgrade
        .protocols(["binary"])
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0);
    Ok(upgrade.on_upgrade(move |socket| async move {
        sessions::run_session(&app, frames(socket), admission, framing, remote).await;
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

/// External consoles: all of them for admins, the granted ones for members.
#[utoipa::path(get, path = "/api/v1/external-consoles", tag = "consoles", security(("bearer" = [])),
    responses((status = 200, body = Vec<ExternalConsole>)))]
pub async fn list_external(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ExternalConsole>>, ApiError> {
    external::list(&app, &caller).await.map(Json)
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
    let console = external::create(&app, &caller, request).await?;
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
    external::delete(&app, &caller, &id).await?;
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
    external::set_grant(&app, &caller, &id, &username, true).await?;
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
    external::set_grant(&app, &caller, &id, &username, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The audit records of recent console sessions (admins only).
#[utoipa::path(get, path = "/api/v1/console-sessions", tag = "consoles", security(("bearer" = [])),
    responses((status = 200, body = Vec<ConsoleSession>), (status = 403, body = ErrorBody)))]
pub async fn sessions(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ConsoleSession>>, ApiError> {
    sessions::recent(&app, &caller).await.map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ws_paths_route_here() {
        let vm = porthole_core::VmId::random();
        assert_eq!(
            crate::services::consoles::ws_path(ConsoleTarget::Vm(vm), ConsoleKind::Serial),
            format!("/api/v1/vms/{vm}/console/serial/ws")
        );
    }
}
