//! Job progress.

use axum::Json;
use axum::extract::{Path, State};
use porthole_api::{ErrorBody, Job};

use crate::app::AppState;
use crate::error::ApiError;
use crate::services::caller::Caller;
use crate::services::jobs;

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
    jobs::visible(&app, &caller, &id).await.map(Json)
}

/// Recent jobs, newest first: the caller's, or everyone's for an admin.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", security(("bearer" = [])),
    responses((status = 200, body = Vec<Job>)))]
pub async fn list(State(app): State<AppState>, caller: Caller) -> Result<Json<Vec<Job>>, ApiError> {
    jobs::recent(&app, &caller, RECENT_JOBS).await.map(Json)
}
