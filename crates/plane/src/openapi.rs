//! The OpenAPI document, generated from the handlers' annotations and the wire types.
//! A snapshot test keeps every change to it visible in review.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::controllers::{consoles, health, images, jobs, nodes, proxmox, session, users, vms};

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "ops", responses((status = 200, description = "The OpenAPI document")))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

#[derive(OpenApi)]
#[openapi(
    info(title = "porthole", description = "Self-service virtual machines and their consoles."),
    paths(
        health::healthz, health::metrics, openapi,
        session::login, session::logout,
        users::me, users::list, users::create, users::show, users::update, users::set_limits,
        users::groups, users::create_group, users::delete_group, users::set_group_limits,
        users::add_member, users::remove_member, users::audit_log,
        users::ssh_keys, users::add_ssh_key, users::delete_ssh_key,
        users::tokens, users::create_token, users::revoke_token,
        vms::renew, vms::snapshots, vms::create_snapshot, vms::rollback_snapshot,
        vms::delete_snapshot,
        images::list_templates, images::import_template, images::delete_template,
        images::list_isos, images::import_iso, images::delete_iso,
        images::approve_template, images::approve_iso,
        nodes::list, nodes::create, nodes::delete, nodes::link_template,
        vms::list, vms::create, vms::show, vms::update, vms::action, vms::delete,
        vms::console_output,
        jobs::list, jobs::show,
        consoles::vm_ticket, consoles::vm_socket, consoles::external_ticket, consoles::external_socket,
        consoles::list_external, consoles::create_external, consoles::delete_external,
        consoles::grant, consoles::revoke, consoles::sessions,
        proxmox::list, proxmox::ticket, consoles::proxmox_socket,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Logging in"),
        (name = "users", description = "Accounts"),
        (name = "images", description = "Templates and ISOs"),
        (name = "nodes", description = "Hypervisors and clusters VMs run on"),
        (name = "vms", description = "Virtual machines"),
        (name = "jobs", description = "Long-running operations"),
        (name = "consoles", description = "Console tickets, WebSockets and external consoles"),
        (name = "proxmox", description = "Accessor mode: Proxmox VMs by the user's own Proxmox permissions"),
        (name = "ops", description = "Health and self-description"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of API v1.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc
}

#[cfg(test)]
mod tests {
    #[test]
    fn openapi_document_matches_the_snapshot() {
        let doc = super::document();
        let json = serde_json::to_value(&doc).unwrap();
        insta::assert_json_snapshot!("openapi", json);
    }
}
