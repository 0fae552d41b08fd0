//! Job progress.

use axum::Json;
use axum::extract::{Path, State};
use porthole_api::{ErrorBody, Job};
use porthole_core::JobId;

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::Caller;
use crate::services::vms::job_to_wire;

/// How many jobs the list shows.
const RECENT_JOBS: u32 = 100;

/// One job. Members see only jobs they asked for.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The job's id")),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let missing = || ApiError::NotFound(format!("no job with id {id} is visible to you"));
    let job_id: JobId = id.parse().map_err(|_| missing())?;
    match app.store.job(job_id).await? {
        Some(job) if caller.is_admin() || job.requested_by == caller.user.id => {
            Ok(Json(job_to_wire(&job)))
        }
        _ => Err(missing()),
    }
}

/// Recent jobs, newest first: the caller's, or everyone's for an admin.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", security(("bearer" = [])),
    responses((status = 200, body = Vec<Job>)))]
pub async fn list(State(app): State<AppState>, caller: Caller) -> Result<Json<Vec<Job>>, ApiError> {
    let user = (!caller.is_admin()).then_some(caller.user.id);
    let jobs = app.store.recent_jobs(user, RECENT_JOBS).await?;
    Ok(Json(jobs.iter().map(job_to_wire).collect()))
}
