//! Accounts, groups, limits and the audit log.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use porthole_api::{
    AddSshKeyRequest, ApiToken, AuditEntry, CreateGroupRequest, CreateTokenRequest,
    CreateUserRequest, ErrorBody, Group, LoginResponse, SetLimitsRequest, SshKey,
    UpdateUserRequest, User,
};
use serde::Deserialize;

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::services::audit;
use crate::services::caller::Caller;
use crate::services::{auth, ssh_keys, users};

/// The caller's own account, with their limits and usage.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = ErrorBody)))]
pub async fn me(State(app): State<AppState>, caller: Caller) -> Result<Json<User>, ApiError> {
    auth::user_view(&app, &caller.user).await.map(Json)
}

/// Every account (admins).
#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Vec<User>), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<User>>, ApiError> {
    users::list(&app, &caller).await.map(Json)
}

/// Creates an account (admins).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    request_body = CreateUserRequest,
    responses((status = 201, body = User), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateUserRequest>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let created = users::create(&app, &caller, request).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// One account (admins, or the user themself).
#[utoipa::path(get, path = "/api/v1/users/{username}", tag = "users", security(("bearer" = [])),
    params(("username" = String, Path, description = "The username")),
    responses((status = 200, body = User), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
) -> Result<Json<User>, ApiError> {
    users::show(&app, &caller, &username).await.map(Json)
}

/// Changes an account's role, email or password, or unlocks it (admins).
#[utoipa::path(patch, path = "/api/v1/users/{username}", tag = "users", security(("bearer" = [])),
    params(("username" = String, Path, description = "The username")),
    request_body = UpdateUserRequest,
    responses((status = 200, body = User), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(app): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
    ApiJson(request): ApiJson<UpdateUserRequest>,
) -> Result<Json<User>, ApiError> {
    users::update(&app, &caller, &username, request)
        .await
        .map(Json)
}

/// Sets a user's own limits; `null` parts inherit from their groups or the site (admins).
#[utoipa::path(put, path = "/api/v1/users/{username}/limits", tag = "users",
    security(("bearer" = [])),
    params(("username" = String, Path, description = "The username")),
    request_body = SetLimitsRequest,
    responses((status = 200, body = User), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_limits(
    State(app): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
    ApiJson(request): ApiJson<SetLimitsRequest>,
) -> Result<Json<User>, ApiError> {
    users::set_user_limits(&app, &caller, &username, request)
        .await
        .map(Json)
}

/// Every group (admins).
#[utoipa::path(get, path = "/api/v1/groups", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Vec<Group>), (status = 403, body = ErrorBody)))]
pub async fn groups(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Group>>, ApiError> {
    users::groups(&app, &caller).await.map(Json)
}

/// Makes a group (admins).
#[utoipa::path(post, path = "/api/v1/groups", tag = "users", security(("bearer" = [])),
    request_body = CreateGroupRequest,
    responses((status = 201, body = Group), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_group(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateGroupRequest>,
) -> Result<(StatusCode, Json<Group>), ApiError> {
    let group = users::create_group(&app, &caller, request).await?;
    Ok((StatusCode::CREATED, Json(group)))
}

/// Removes a group; its members keep their accounts (admins).
#[utoipa::path(delete, path = "/api/v1/groups/{name}", tag = "users", security(("bearer" = [])),
    params(("name" = String, Path, description = "The group")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_group(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    users::delete_group(&app, &caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets a group's limits; `null` parts are the site default (admins).
#[utoipa::path(put, path = "/api/v1/groups/{name}/limits", tag = "users",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The group")),
    request_body = SetLimitsRequest,
    responses((status = 200, body = Group), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_group_limits(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<SetLimitsRequest>,
) -> Result<Json<Group>, ApiError> {
    users::set_group_limits(&app, &caller, &name, request)
        .await
        .map(Json)
}

/// Adds a user to a group (admins).
#[utoipa::path(put, path = "/api/v1/groups/{name}/members/{username}", tag = "users",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The group"),
        ("username" = String, Path, description = "The user")),
    responses((status = 200, body = Group), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn add_member(
    State(app): State<AppState>,
    caller: Caller,
    Path((name, username)): Path<(String, String)>,
) -> Result<Json<Group>, ApiError> {
    users::set_member(&app, &caller, &name, &username, true)
        .await
        .map(Json)
}

/// Removes a user from a group (admins).
#[utoipa::path(delete, path = "/api/v1/groups/{name}/members/{username}", tag = "users",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The group"),
        ("username" = String, Path, description = "The user")),
    responses((status = 200, body = Group), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_member(
    State(app): State<AppState>,
    caller: Caller,
    Path((name, username)): Path<(String, String)>,
) -> Result<Json<Group>, ApiError> {
    users::set_member(&app, &caller, &name, &username, false)
        .await
        .map(Json)
}

/// Which audit records to return.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// Only records older than this (unix milliseconds), for paging.
    before: Option<i64>,
    /// Only this actor's records.
    actor: Option<String>,
    /// At most this many, 1 to 1000 (default 100).
    limit: Option<u32>,
}

/// The audit log, newest first (admins).
#[utoipa::path(get, path = "/api/v1/audit", tag = "users", security(("bearer" = [])),
    params(AuditQuery),
    responses((status = 200, body = Vec<AuditEntry>), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn audit_log(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    audit::log(&app, &caller, query.before, query.actor.as_deref(), limit)
        .await
        .map(Json)
}

/// The SSH keys on the caller's profile, put into the VMs they create from templates.
#[utoipa::path(get, path = "/api/v1/users/me/ssh-keys", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Vec<SshKey>)))]
pub async fn ssh_keys(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<SshKey>>, ApiError> {
    ssh_keys::list(&app, &caller).await.map(Json)
}

/// Adds an SSH public key to the caller's profile.
#[utoipa::path(post, path = "/api/v1/users/me/ssh-keys", tag = "users", security(("bearer" = [])),
    request_body = AddSshKeyRequest,
    responses((status = 201, body = SshKey), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn add_ssh_key(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<AddSshKeyRequest>,
) -> Result<(StatusCode, Json<SshKey>), ApiError> {
    let key = ssh_keys::add(&app, &caller, request).await?;
    Ok((StatusCode::CREATED, Json(key)))
}

/// Removes an SSH key from the caller's profile.
#[utoipa::path(delete, path = "/api/v1/users/me/ssh-keys/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The key's id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_ssh_key(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    ssh_keys::delete(&app, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's API tokens and web sessions.
#[utoipa::path(get, path = "/api/v1/users/me/tokens", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Vec<ApiToken>)))]
pub async fn tokens(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ApiToken>>, ApiError> {
    auth::tokens(&app, &caller).await.map(Json)
}

/// Mints a named API token, shown once.
#[utoipa::path(post, path = "/api/v1/users/me/tokens", tag = "users", security(("bearer" = [])),
    request_body = CreateTokenRequest,
    responses((status = 201, body = LoginResponse), (status = 422, body = ErrorBody)))]
pub async fn create_token(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateTokenRequest>,
) -> Result<(StatusCode, Json<LoginResponse>), ApiError> {
    let token = auth::create_token(&app, &caller, request).await?;
    Ok((StatusCode::CREATED, Json(token)))
}

/// Revokes one of the caller's tokens or web sessions.
#[utoipa::path(delete, path = "/api/v1/users/me/tokens/{id}", tag = "users",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The token's id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    auth::revoke_token(&app, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
