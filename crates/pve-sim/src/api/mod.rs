//! The HTTP API under `/api2/json`: authentication (ticket cookie with CSRF, or API token),
//! parameter parsing (query string, form or JSON body) and one handler per endpoint.
//!
//! This module is the routing table; the handlers live in one module per PVE path group:
//! `access` (`/access`), `cluster` (`/cluster`), `nodes` (`/nodes`), `qemu` and `qemu_config`
//! (`/nodes/{node}/qemu`), `consoles` (vncproxy, termproxy), `tasks` (`/nodes/{node}/tasks`)
//! and `pools` (`/pools`). `request` reads a request into parameters and an identity;
//! `checks` holds the privilege and existence checks.

mod access;
mod checks;
mod cluster;
mod consoles;
mod nodes;
mod pools;
mod qemu;
mod qemu_config;
mod request;
mod tasks;

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::auth::Identity;
use crate::error::ApiError;
use crate::state::Sim;

pub use request::{Params, authenticate, cookie, parse_params, percent_decode};

use access::{login, permissions};
use cluster::{nextid, resources};
use consoles::console_proxy;
use nodes::nodes;
use pools::{create_pool, delete_pool, pool, pools, update_pool};
use qemu::{clone_vm, create_vm, destroy_vm, list_qemu, power, resize_disk, status_current};
use qemu_config::{get_config, set_config};
use request::{allow, parse_vmid};
use tasks::{task_log, task_status};

type ApiResult = Result<Value, ApiError>;

/// The single entry point for every `/api2/json` route except the websocket.
pub async fn dispatch(
    AxState(sim): AxState<Arc<Sim>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match handle(&sim, &method, &uri, &headers, &body).await {
        Ok(data) => Json(json!({ "data": data })).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn handle(
    sim: &Arc<Sim>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult {
    let Some(path) = uri.path().strip_prefix("/api2/json") else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "Not Implemented",
        ));
    };
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let params = parse_params(uri, headers, body)?;
    if method == Method::POST && segs == ["access", "ticket"] {
        return login(sim, &params);
    }
    if method == Method::GET && segs == ["access", "ticket"] {
        return Ok(Value::Null);
    }
    let who = authenticate(sim, method, headers)?;
    let m = method.as_str();
    match (m, segs.as_slice()) {
        ("GET", ["version"]) => {
            allow(&params, &[])?;
            Ok(json!({ "version": "8.2.4", "release": "8.2", "repoid": "faa83925c9641325" }))
        }
        ("GET", ["access", "permissions"]) => permissions(sim, &who, &params),
        ("GET", ["cluster", "resources"]) => resources(sim, &who, &params).await,
        ("GET", ["cluster", "nextid"]) => nextid(sim, &params),
        ("GET", ["nodes"]) => nodes(sim, &who),
        ("GET", ["pools"]) => pools(sim, &who, &params),
        ("POST", ["pools"]) => create_pool(sim, &who, &params),
        ("GET", ["pools", id]) => pool(sim, &who, id),
        ("PUT", ["pools", id]) => update_pool(sim, &who, id, &params),
        ("DELETE", ["pools", id]) => delete_pool(sim, &who, id),
        ("GET", ["nodes", node, "qemu"]) => list_qemu(sim, &who, node).await,
        ("POST", ["nodes", node, "qemu"]) => create_vm(sim, &who, node, &params),
        ("GET", ["nodes", node, "tasks", upid, "status"]) => task_status(sim, &who, node, upid),
        ("GET", ["nodes", node, "tasks", upid, "log"]) => task_log(sim, &who, node, upid),
        (_, ["nodes", node, "qemu", vmid, rest @ ..]) => {
            let vmid = parse_vmid(vmid)?;
            vm_endpoint(sim, &who, m, node, vmid, rest, &params).await
        }
        _ => Err(ApiError::not_implemented(m, path)),
    }
}

async fn vm_endpoint(
    sim: &Arc<Sim>,
    who: &Identity,
    m: &str,
    node: &str,
    vmid: u32,
    rest: &[&str],
    params: &Params,
) -> ApiResult {
    match (m, rest) {
        ("DELETE", []) => destroy_vm(sim, who, node, vmid, params),
        ("GET", ["config"]) => get_config(sim, who, node, vmid),
        ("POST", ["config"]) => set_config(sim, who, node, vmid, params, true),
        ("PUT", ["config"]) => set_config(sim, who, node, vmid, params, false),
        ("GET", ["status", "current"]) => status_current(sim, who, node, vmid).await,
        ("POST", ["status", action]) => power(sim, who, node, vmid, action, params),
        ("POST", ["clone"]) => clone_vm(sim, who, node, vmid, params),
        ("PUT", ["resize"]) => resize_disk(sim, who, node, vmid, params),
        ("POST", ["vncproxy"]) => console_proxy(sim, who, node, vmid, params, true),
        ("POST", ["termproxy"]) => console_proxy(sim, who, node, vmid, params, false),
        _ => Err(ApiError::not_implemented(
            m,
            &format!("/nodes/{node}/qemu/{vmid}/{}", rest.join("/")),
        )),
    }
}
