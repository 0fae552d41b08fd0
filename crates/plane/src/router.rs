//! Every route, in one table.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::controllers::{assets, consoles, health, images, jobs, session, users, vms, web};
use crate::error::ApiError;
use crate::extract::MAX_JSON_BODY;

/// The plane's HTTP routes.
pub fn router(app: AppState) -> Router {
    let api = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route("/api/v1/openapi.json", get(health::openapi))
        .route("/api/v1/login", post(session::login))
        .route("/api/v1/logout", post(session::logout))
        .route("/api/v1/users", post(users::create))
        .route("/api/v1/users/me", get(users::me))
        .route("/api/v1/templates/{name}", delete(images::delete_template))
        .route("/api/v1/isos/{name}", delete(images::delete_iso))
        .route("/api/v1/vms", get(vms::list).post(vms::create))
        .route(
            "/api/v1/vms/{id}",
            get(vms::show).patch(vms::update).delete(vms::delete),
        )
        .route("/api/v1/vms/{id}/actions/{action}", post(vms::action))
        .route("/api/v1/vms/{id}/console-output", get(vms::console_output))
        .route("/api/v1/jobs", get(jobs::list))
        .route("/api/v1/jobs/{id}", get(jobs::show));
    let consoles = Router::new()
        .route("/api/v1/vms/{id}/console", post(consoles::vm_ticket))
        .route(
            "/api/v1/vms/{id}/console/{kind}/ws",
            get(consoles::vm_socket),
        )
        .route(
            "/api/v1/external-consoles",
            get(consoles::list_external).post(consoles::create_external),
        )
        .route(
            "/api/v1/external-consoles/{id}",
            delete(consoles::delete_external),
        )
        .route(
            "/api/v1/external-consoles/{id}/console",
            post(consoles::external_ticket),
        )
        .route(
            "/api/v1/external-consoles/{id}/console/{kind}/ws",
            get(consoles::external_socket),
        )
        .route(
            "/api/v1/external-consoles/{id}/grants/{username}",
            put(consoles::grant).delete(consoles::revoke),
        )
        .route("/api/v1/console-sessions", get(consoles::sessions));
    let pages = Router::new()
        .route("/", get(web::root))
        .route("/login", get(web::login_page).post(web::login))
        .route("/logout", post(web::logout))
        .route("/vms", get(web::home))
        .route("/vms/{id}", get(web::vm))
        .route("/vms/{id}/console/{kind}", get(web::vm_console))
        .route(
            "/external-consoles/{id}/console/{kind}",
            get(web::external_console),
        )
        .route("/assets/{*path}", get(assets::asset));
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
    api.merge(consoles)
        .merge(pages)
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .merge(uploads)
        .fallback(|| async { ApiError::NotFound("no such route; see /api/v1/openapi.json".into()) })
        // Spans name the path only: console URLs carry a ticket in their query.
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
            tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
        }))
        .with_state(app)
}
