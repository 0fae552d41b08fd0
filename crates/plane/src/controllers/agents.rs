//! The plane's listener for agents (`serve --agent-listen`): TLS 1.3, where a client
//! certificate is optional only for fetching the CA and joining with a token.

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use porthole_agent::tls::PeerCertificate;
use porthole_agent::wire::{Enrolled, HelloRequest, JoinRequest, RenewRequest, SHA256_HEADER};
use std::net::SocketAddr;

use crate::app::AppState;
use crate::error::ApiError;
use crate::services::agents;

/// The agent listener's routes.
pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/agent/v1/ca", get(ca))
        .route("/agent/v1/join", post(join))
        .route("/agent/v1/hello", post(hello))
        .route("/agent/v1/renew", post(renew))
        .route("/agent/v1/templates/{id}/{part}", get(template_file))
        .route("/agent/v1/isos/{id}", get(iso_file))
        .with_state(app)
}

async fn ca(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        agents::ca_pem(&app),
    )
}

async fn join(
    State(app): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Json(request): Json<JoinRequest>,
) -> Result<Json<Enrolled>, ApiError> {
    Ok(Json(agents::join(&app, request, Some(remote)).await?))
}

async fn hello(
    State(app): State<AppState>,
    Extension(peer): Extension<PeerCertificate>,
    Json(request): Json<HelloRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    agents::hello(&app, &peer, request).await?;
    Ok(Json(serde_json::json!({})))
}

async fn renew(
    State(app): State<AppState>,
    Extension(peer): Extension<PeerCertificate>,
    Json(request): Json<RenewRequest>,
) -> Result<Json<Enrolled>, ApiError> {
    Ok(Json(agents::renew(&app, &peer, request).await?))
}

async fn template_file(
    State(app): State<AppState>,
    Extension(peer): Extension<PeerCertificate>,
    Path((id, part)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (path, sha256) = agents::template_file(&app, &peer, &id, &part).await?;
    send_file(&path, sha256).await
}

async fn iso_file(
    State(app): State<AppState>,
    Extension(peer): Extension<PeerCertificate>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (path, sha256) = agents::iso_file(&app, &peer, &id).await?;
    send_file(&path, sha256).await
}

/// Streams an image file with its length and recorded SHA-256.
async fn send_file(path: &std::path::Path, sha256: String) -> Result<Response, ApiError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("opening {}: {e}", path.display())))?;
    let length = file.metadata().await.map_err(ApiError::internal)?.len();
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, length.to_string()),
            (header::HeaderName::from_static(SHA256_HEADER), sha256),
        ],
        body,
    )
        .into_response())
}
