//! Every route, in one table.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::controllers::{health, images, jobs, session, users, vms};
use crate::error::ApiError;
use crate::extract::MAX_JSON_BODY;

/// The plane's HTTP routes.
pub fn router(app: AppState) -> Router {
    let uploads = Router::new()
        .route(
            "/api/v1/templates",
            get(images::list_templates).post(images::import_template),
        )
        .route(
            "/api/v1/isos",
            get(images::list_isos).post(images::import_iso),
        )
        // Images stream to disk with their own bound (see services::images).
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/api/v1/openapi.json", get(health::openapi))
        .route("/api/v1/login", post(session::login))
        .route("/api/v1/logout", post(session::logout))
        .route("/api/v1/users", post(users::create))
        .route("/api/v1/users/me", get(users::me))
        .route(
            "/api/v1/templates/{name}",
            axum::routing::delete(images::delete_template),
        )
        .route(
            "/api/v1/isos/{name}",
            axum::routing::delete(images::delete_iso),
        )
        .route("/api/v1/vms", get(vms::list).post(vms::create))
        .route(
            "/api/v1/vms/{id}",
            get(vms::show).patch(vms::update).delete(vms::delete),
        )
        .route("/api/v1/vms/{id}/actions/{action}", post(vms::action))
        .route("/api/v1/vms/{id}/console-output", get(vms::console_output))
        .route("/api/v1/jobs", get(jobs::list))
        .route("/api/v1/jobs/{id}", get(jobs::show))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .merge(uploads)
        .fallback(|| async { ApiError::NotFound("no such route; see /api/v1/openapi.json".into()) })
        .layer(TraceLayer::new_for_http())
        .with_state(app)
}
