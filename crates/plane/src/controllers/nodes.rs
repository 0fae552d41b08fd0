//! Nodes: listing, adding a Proxmox VE cluster, removing, and linking node templates.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use porthole_api::{CreateNodeRequest, ErrorBody, LinkTemplateRequest, Node, Template};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::services::caller::Caller;
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

/// Removes a node no VM or template uses (admins). With `forget_vms=true`, a node that is
/// offline is removed with its VMs' records; nothing on the host is touched.
#[utoipa::path(delete, path = "/api/v1/nodes/{name}", tag = "nodes", security(("bearer" = [])),
    params(("name" = String, Path, description = "The node's name"),
        ("forget_vms" = Option<bool>, Query, description = "Also forget the VMs of a node that is offline")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn delete(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<StatusCode, ApiError> {
    let forget_vms = match query.as_deref() {
        None | Some("") | Some("forget_vms=false") => false,
        Some("forget_vms=true") => true,
        Some(_) => {
            return Err(ApiError::invalid(
                "forget_vms",
                "the only parameter is forget_vms=true or forget_vms=false",
            ));
        }
    };
    nodes::remove(&app, &caller, &name, forget_vms).await?;
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
