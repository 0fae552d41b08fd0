//! Nodes: listing, adding a Proxmox VE cluster, removing, and linking node templates.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use porthole_api::{CreateNodeRequest, ErrorBody, LinkTemplateRequest, Node, Template};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, Caller};
use crate::services::nodes;

/// Every node, each checked now (admins).
#[utoipa::path(get, path = "/api/v1/nodes", tag = "nodes", security(("bearer" = [])),
    responses((status = 200, body = Vec<Node>), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Node>>, ApiError> {
    nodes::list(&app, &caller).await.map(Json)
}

/// Adds a Proxmox VE cluster as a node, after checking it answers (admins).
#[utoipa::path(post, path = "/api/v1/nodes", tag = "nodes", security(("bearer" = [])),
    request_body = CreateNodeRequest,
    responses((status = 201, body = Node), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateNodeRequest>,
) -> Result<(StatusCode, Json<Node>), ApiError> {
    let node = nodes::add(&app, &caller, request).await?;
    Ok((StatusCode::CREATED, Json(node)))
}

/// Removes a node no VM or template uses (admins).
#[utoipa::path(delete, path = "/api/v1/nodes/{name}", tag = "nodes", security(("bearer" = [])),
    params(("name" = String, Path, description = "The node's name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    nodes::remove(&app, &caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes a template the node keeps (a Proxmox template VM) a porthole template (admins).
#[utoipa::path(post, path = "/api/v1/nodes/{name}/templates", tag = "nodes",
    security(("bearer" = [])), params(("name" = String, Path, description = "The node's name")),
    request_body = LinkTemplateRequest,
    responses((status = 201, body = Template), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn link_template(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<LinkTemplateRequest>,
) -> Result<(StatusCode, Json<Template>), ApiError> {
    let template = nodes::link_template(&app, &caller, &name, request).await?;
    Ok((StatusCode::CREATED, Json(template)))
}
