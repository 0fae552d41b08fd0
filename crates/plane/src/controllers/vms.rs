//! Virtual machines.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use porthole_api::{
    CreateSnapshotRequest, CreateVmRequest, CreateVmResponse, ErrorBody, JobResponse,
    UpdateVmRequest, Vm, VmSnapshot,
};
use porthole_core::Action;

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::services::caller::Caller;
use crate::services::vms::{self, parse_action, parse_vm_id};

/// The caller's VMs; every VM for an admin.
#[utoipa::path(get, path = "/api/v1/vms", tag = "vms", security(("bearer" = [])),
    responses((status = 200, body = Vec<Vm>), (status = 401, body = ErrorBody)))]
pub async fn list(State(app): State<AppState>, caller: Caller) -> Result<Json<Vec<Vm>>, ApiError> {
    vms::list(&app, &caller).await.map(Json)
}

/// Creates a VM from a template or an ISO. The VM is created and booted by the returned job.
#[utoipa::path(post, path = "/api/v1/vms", tag = "vms", security(("bearer" = [])),
    request_body = CreateVmRequest,
    responses((status = 202, body = CreateVmResponse), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateVmRequest>,
) -> Result<(StatusCode, Json<CreateVmResponse>), ApiError> {
    let created = vms::create(&app, &caller, request).await?;
    Ok((StatusCode::ACCEPTED, Json(created)))
}

/// One VM.
#[utoipa::path(get, path = "/api/v1/vms/{id}", tag = "vms", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The VM's id")),
    responses((status = 200, body = Vm), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vm>, ApiError> {
    vms::show(&app, &caller, parse_vm_id(&id)?).await.map(Json)
}

/// Changes cores, memory or disk size.
#[utoipa::path(patch, path = "/api/v1/vms/{id}", tag = "vms", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The VM's id")),
    request_body = UpdateVmRequest,
    responses((status = 200, body = Vm), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<UpdateVmRequest>,
) -> Result<Json<Vm>, ApiError> {
    vms::update(&app, &caller, parse_vm_id(&id)?, request)
        .await
        .map(Json)
}

/// Starts a power action: start, stop, shutdown, reset, suspend or resume.
#[utoipa::path(post, path = "/api/v1/vms/{id}/actions/{action}", tag = "vms",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The VM's id"),
        ("action" = String, Path, description = "start, stop, shutdown, reset, suspend or resume")),
    responses((status = 202, body = JobResponse), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn action(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
) -> Result<(StatusCode, Json<JobResponse>), ApiError> {
    let id = parse_vm_id(&id)?;
    let action = parse_action(&action)?;
    let job = vms::act(&app, &caller, id, action).await?;
    Ok((StatusCode::ACCEPTED, Json(JobResponse { job })))
}

/// Renews a VM: it now expires a full lifetime (`--vm-lifetime-days`) from now.
#[utoipa::path(post, path = "/api/v1/vms/{id}/actions/renew", tag = "vms",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The VM's id")),
    responses((status = 200, body = Vm), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn renew(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vm>, ApiError> {
    vms::renew(&app, &caller, parse_vm_id(&id)?).await.map(Json)
}

/// Deletes a VM and every file it had, stopping it first if needed.
#[utoipa::path(delete, path = "/api/v1/vms/{id}", tag = "vms", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The VM's id")),
    responses((status = 202, body = JobResponse), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobResponse>), ApiError> {
    let job = vms::act(&app, &caller, parse_vm_id(&id)?, Action::Delete).await?;
    Ok((StatusCode::ACCEPTED, Json(JobResponse { job })))
}

/// The most recent 64 KiB of the VM's serial console output.
#[utoipa::path(get, path = "/api/v1/vms/{id}/console-output", tag = "vms",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The VM's id")),
    responses((status = 200, description = "Console output", content_type = "text/plain"),
        (status = 404, body = ErrorBody)))]
pub async fn console_output(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let output = vms::console_output(&app, &caller, parse_vm_id(&id)?).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        output,
    ))
}

/// The VM's snapshots.
#[utoipa::path(get, path = "/api/v1/vms/{id}/snapshots", tag = "vms", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The VM's id")),
    responses((status = 200, body = Vec<VmSnapshot>), (status = 404, body = ErrorBody)))]
pub async fn snapshots(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<VmSnapshot>>, ApiError> {
    vms::snapshots(&app, &caller, parse_vm_id(&id)?)
        .await
        .map(Json)
}

/// Takes a snapshot: with the guest's memory if it runs, of the disk if it is stopped.
#[utoipa::path(post, path = "/api/v1/vms/{id}/snapshots", tag = "vms", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The VM's id")),
    request_body = CreateSnapshotRequest,
    responses((status = 202, body = JobResponse), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_snapshot(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<CreateSnapshotRequest>,
) -> Result<(StatusCode, Json<JobResponse>), ApiError> {
    let job = vms::snapshot_job(
        &app,
        &caller,
        parse_vm_id(&id)?,
        Action::Snapshot,
        &request.name,
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(JobResponse { job })))
}

/// Goes back to a snapshot. A running VM can go back only to a snapshot with memory.
#[utoipa::path(post, path = "/api/v1/vms/{id}/snapshots/{name}/rollback", tag = "vms",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The VM's id"),
        ("name" = String, Path, description = "The snapshot")),
    responses((status = 202, body = JobResponse), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn rollback_snapshot(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
) -> Result<(StatusCode, Json<JobResponse>), ApiError> {
    let job = vms::snapshot_job(&app, &caller, parse_vm_id(&id)?, Action::Rollback, &name).await?;
    Ok((StatusCode::ACCEPTED, Json(JobResponse { job })))
}

/// Deletes a snapshot.
#[utoipa::path(delete, path = "/api/v1/vms/{id}/snapshots/{name}", tag = "vms",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The VM's id"),
        ("name" = String, Path, description = "The snapshot")),
    responses((status = 202, body = JobResponse), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn delete_snapshot(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
) -> Result<(StatusCode, Json<JobResponse>), ApiError> {
    let job = vms::snapshot_job(
        &app,
        &caller,
        parse_vm_id(&id)?,
        Action::DeleteSnapshot,
        &name,
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(JobResponse { job })))
}
