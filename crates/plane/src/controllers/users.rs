//! User accounts.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use porthole_api::{CreateUserRequest, ErrorBody, User};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, Caller};
use crate::services::auth;

/// The caller's own account.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = ErrorBody)))]
pub async fn me(caller: Caller) -> Json<User> {
    Json(auth::user_to_wire(&caller.user))
}

/// Creates an account (admins only).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    request_body = CreateUserRequest,
    responses((status = 201, body = User), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateUserRequest>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    caller.require_admin()?;
    let user = auth::create_user(&app, request).await?;
    tracing::info!(user = %user.username, by = %caller.user.username, "user created");
    Ok((StatusCode::CREATED, Json(user)))
}
