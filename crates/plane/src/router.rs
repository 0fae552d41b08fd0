//! Every route, in one table.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::controllers::web::{admin, assets, login, portal};
use crate::controllers::{
    consoles, health, images, jobs, nodes, proxmox, session, users, vms, web,
};
use crate::error::ApiError;
use crate::extract::MAX_JSON_BODY;
use crate::openapi;

/// The plane's HTTP routes.
pub fn router(app: AppState) -> Router {
    let api = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route("/api/v1/openapi.json", get(openapi::openapi))
        .route("/api/v1/login", post(session::login))
        .route("/api/v1/logout", post(session::logout))
        .route("/api/v1/users", get(users::list).post(users::create))
        .route("/api/v1/users/me", get(users::me))
        .route(
            "/api/v1/users/me/ssh-keys",
            get(users::ssh_keys).post(users::add_ssh_key),
        )
        .route(
            "/api/v1/users/me/ssh-keys/{id}",
            delete(users::delete_ssh_key),
        )
        .route(
            "/api/v1/users/me/tokens",
            get(users::tokens).post(users::create_token),
        )
        .route("/api/v1/users/me/tokens/{id}", delete(users::revoke_token))
        .route(
            "/api/v1/users/{username}",
            get(users::show).patch(users::update),
        )
        .route("/api/v1/users/{username}/limits", put(users::set_limits))
        .route(
            "/api/v1/groups",
            get(users::groups).post(users::create_group),
        )
        .route("/api/v1/groups/{name}", delete(users::delete_group))
        .route("/api/v1/groups/{name}/limits", put(users::set_group_limits))
        .route(
            "/api/v1/groups/{name}/members/{username}",
            put(users::add_member).delete(users::remove_member),
        )
        .route("/api/v1/audit", get(users::audit_log))
        .route(
            "/api/v1/templates/{name}",
            delete(images::delete_template).patch(images::approve_template),
        )
        .route(
            "/api/v1/isos/{name}",
            delete(images::delete_iso).patch(images::approve_iso),
        )
        .route("/api/v1/nodes", get(nodes::list).post(nodes::create))
        .route("/api/v1/nodes/{name}", delete(nodes::delete))
        .route("/api/v1/nodes/{name}/templates", post(nodes::link_template))
        .route("/api/v1/vms", get(vms::list).post(vms::create))
        .route(
            "/api/v1/vms/{id}",
            get(vms::show).patch(vms::update).delete(vms::delete),
        )
        .route("/api/v1/vms/{id}/actions/renew", post(vms::renew))
        .route(
            "/api/v1/vms/{id}/snapshots",
            get(vms::snapshots).post(vms::create_snapshot),
        )
        .route(
            "/api/v1/vms/{id}/snapshots/{name}",
            delete(vms::delete_snapshot),
        )
        .route(
            "/api/v1/vms/{id}/snapshots/{name}/rollback",
            post(vms::rollback_snapshot),
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
        .route("/api/v1/console-sessions", get(consoles::sessions))
        .route("/api/v1/proxmox/vms", get(proxmox::list))
        .route("/api/v1/proxmox/vms/{vmid}/console", post(proxmox::ticket))
        .route(
            "/api/v1/proxmox/vms/{vmid}/console/{kind}/ws",
            get(consoles::proxmox_socket),
        );
    let pages = Router::new()
        .route("/", get(login::root))
        .route("/login", get(login::login_page).post(login::login))
        .route("/logout", post(login::logout))
        .route("/vms", get(portal::home))
        .route("/proxmox", get(web::consoles::proxmox_home))
        .route(
            "/proxmox/{vmid}/console/{kind}",
            get(web::consoles::proxmox_console),
        )
        .route("/vms/new", get(portal::new_vm).post(portal::create))
        .route("/vms/{id}", get(portal::vm))
        .route("/vms/{id}/action", post(portal::action))
        .route("/vms/{id}/renew", post(portal::renew))
        .route("/vms/{id}/edit", post(portal::edit))
        .route("/vms/{id}/exempt", post(portal::exempt))
        .route("/vms/{id}/delete", post(portal::delete))
        .route("/vms/{id}/snapshots", post(portal::snapshot))
        .route(
            "/vms/{id}/snapshots/{name}/rollback",
            post(portal::rollback),
        )
        .route(
            "/vms/{id}/snapshots/{name}/delete",
            post(portal::delete_snapshot),
        )
        .route("/profile", get(portal::profile))
        .route("/profile/ssh-keys", post(portal::add_key))
        .route("/profile/ssh-keys/{id}/delete", post(portal::delete_key))
        .route("/profile/tokens", post(portal::create_token))
        .route("/profile/tokens/{id}/revoke", post(portal::revoke_token))
        .route("/admin", get(admin::overview))
        .route(
            "/admin/users",
            get(admin::users_page).post(admin::create_user),
        )
        .route("/admin/users/{name}/limits", post(admin::user_limits))
        .route("/admin/users/{name}/unlock", post(admin::unlock_user))
        .route("/admin/groups", post(admin::create_group))
        .route("/admin/groups/{name}/limits", post(admin::group_limits))
        .route("/admin/groups/{name}/members", post(admin::group_member))
        .route("/admin/images", get(admin::images_page))
        .route("/admin/{kind}/{name}/approve", post(admin::approve))
        .route("/admin/audit", get(admin::audit))
        .route("/vms/{id}/console/{kind}", get(web::consoles::vm_console))
        .route(
            "/external-consoles/{id}/console/{kind}",
            get(web::consoles::external_console),
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
