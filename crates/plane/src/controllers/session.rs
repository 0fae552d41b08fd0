//! Logging in and out.

use axum::Json;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use porthole_api::{ErrorBody, LoginRequest, LoginResponse};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::services::caller::Caller;
use crate::services::{auth, tokens};

/// Exchanges a username and password for a bearer token.
#[utoipa::path(post, path = "/api/v1/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "Too many attempts, or the account is locked")))]
pub async fn login(
    State(app): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    auth::login(
        &app,
        &request.username,
        &request.password,
        request.realm.as_deref(),
        tokens::TokenPurpose::Api,
        Some(remote),
    )
    .await
    .map(Json)
}

/// Revokes the token this request carries.
#[utoipa::path(post, path = "/api/v1/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn logout(State(app): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    auth::logout(&app, &caller.token_hash).await?;
    Ok(StatusCode::NO_CONTENT)
}
