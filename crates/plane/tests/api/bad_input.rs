//! Bad input gets a 4xx JSON error that names the field, and changes nothing: no row, no
//! file, no VM on the node.

use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use porthole_api::{ErrorBody, UpdateVmRequest};
use porthole_core::VmState;
use porthole_core::driver::PowerState;
use porthole_testing::app::TestApp;
use porthole_testing::server::*;

use crate::demo_app;

/// Sends `body` as-is to `POST /api/v1/vms`, in process, and returns the status and error.
async fn post_vm(
    server: &TestApp,
    token: &str,
    body: &str,
    content_type: &str,
) -> (u16, ErrorBody) {
    let request = Request::post("/api/v1/vms")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = server.send(request).await;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    let error = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not an error body: {text}"));
    (status, error)
}

#[tokio::test]
async fn bad_create_requests_are_refused_and_change_nothing() {
    let server = demo_app().await;
    let token = server.admin_token().await;
    let vm = |fields: &str| format!(r#"{{"template": "demo", {fields}}}"#);
    let good = r#""cores": 1, "memory_mib": 256, "disk_gib": 1"#;
    let cases: Vec<(String, u16, &str)> = vec![
        (vm(&format!(r#""name": "", {good}"#)), 422, "name"),
        (
            vm(&format!(r#""name": "{}", {good}"#, "a".repeat(64))),
            422,
            "name",
        ),
        (vm(&format!(r#""name": "Web_1", {good}"#)), 422, "name"),
        (vm(&format!(r#""name": "-web", {good}"#)), 422, "name"),
        (
            vm(r#""name": "ok", "cores": 0, "memory_mib": 256, "disk_gib": 1"#),
            422,
            "cores",
        ),
        (
            vm(r#""name": "ok", "cores": 100000, "memory_mib": 256, "disk_gib": 1"#),
            422,
            "cores",
        ),
        (
            vm(r#""name": "ok", "cores": 1, "memory_mib": 0, "disk_gib": 1"#),
            422,
            "memory_mib",
        ),
        (
            vm(r#""name": "ok", "cores": 1, "memory_mib": 99999999999, "disk_gib": 1"#),
            422,
            "memory_mib",
        ),
        (
            vm(r#""name": "ok", "cores": 1, "memory_mib": 256, "disk_gib": 0"#),
            422,
            "disk_gib",
        ),
        (
            vm(r#""name": "ok", "cores": 1, "memory_mib": 256, "disk_gib": 9999999"#),
            422,
            "disk_gib",
        ),
        (
            vm(r#""name": "ok", "cores": -1, "memory_mib": 256, "disk_gib": 1"#),
            400,
            "cores",
        ),
        (
            vm(r#""name": "ok", "cores": "two", "memory_mib": 256, "disk_gib": 1"#),
            400,
            "cores",
        ),
        (
            vm(r#""name": "ok", "memory_mib": 256, "disk_gib": 1"#),
            400,
            "cores",
        ),
        (
            vm(&format!(r#""name": "ok", {good}, "colour": "blue""#)),
            400,
            "colour",
        ),
        (
            format!(r#"{{"name": "ok", "template": "nosuch", {good}}}"#),
            422,
            "template",
        ),
        (format!(r#"{{"name": "ok", {good}}}"#), 422, "template"),
        (
            format!(r#"{{"name": "ok", "template": "demo", "iso": "x", {good}}}"#),
            422,
            "iso",
        ),
        (
            format!(r#"{{"name": "ok", "iso": "nosuch", {good}}}"#),
            422,
            "iso",
        ),
        (
            vm(&format!(
                r#""name": "ok", {good}, "ssh_keys": ["ssh-ed25519 AAAA"]"#
            )),
            422,
            "ssh_keys",
        ),
    ];
    for (body, status, field) in &cases {
        let (got, error) = post_vm(&server, &token, body, "application/json").await;
        assert_eq!(got, *status, "{body}: {}", error.error.message);
        assert_eq!(
            error.error.field.as_deref(),
            Some(*field),
            "{body}: {}",
            error.error.message
        );
        assert!(
            error.error.message.starts_with(field),
            "message must name {field}: {}",
            error.error.message
        );
    }
    for malformed in [r#"{"name": "ok", "#, "not json", ""] {
        let (status, error) = post_vm(&server, &token, malformed, "application/json").await;
        assert_eq!(status, 400, "{malformed:?}");
        assert_eq!(error.error.code, "malformed_request");
    }
    let (status, _) = post_vm(
        &server,
        &token,
        &vm(&format!(r#""name": "ok", {good}"#)),
        "text/plain",
    )
    .await;
    assert_eq!(status, 400);

    // Nothing was created by any of them.
    let admin = server.admin().await;
    assert!(admin.vms().await.unwrap().is_empty());
    assert!(admin.jobs().await.unwrap().is_empty());
    assert!(server.vm_files().is_empty());
    assert!(server.fake.is_empty());
}

#[tokio::test]
async fn illegal_actions_conflict_and_start_nothing() {
    let server = demo_app().await;
    let admin = server.admin().await;
    let vm = running_vm(&admin, "busy").await;
    let jobs_before = admin.jobs().await.unwrap().len();
    let code = |e: porthole_api::client::ClientError| match e {
        porthole_api::client::ClientError::Api {
            status,
            code,
            message,
            field,
        } => (status, code, message, field),
        other => panic!("{other}"),
    };

    let (status, kind, message, _) = code(admin.vm_action(vm.id, "start").await.unwrap_err());
    assert_eq!(
        (status, kind.as_str(), message.as_str()),
        (409, "illegal_state", "cannot start a VM that is running")
    );
    assert_eq!(
        code(admin.vm_action(vm.id, "resume").await.unwrap_err()).0,
        409
    );
    let (status, _, message, _) = code(
        admin
            .update_vm(
                vm.id,
                &UpdateVmRequest {
                    cores: Some(2),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 409);
    assert!(message.contains("stop it first"), "{message}");
    let (status, _, _, field) = code(
        admin
            .update_vm(
                vm.id,
                &UpdateVmRequest {
                    disk_gib: Some(0),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((status, field.as_deref()), (422, Some("disk_gib")));
    assert_eq!(
        code(admin.vm_action(vm.id, "explode").await.unwrap_err()).0,
        404
    );
    let taken = admin.create_vm(&demo_vm("busy")).await.unwrap_err();
    let (status, _, _, field) = code(taken);
    assert_eq!((status, field.as_deref()), (409, Some("name")));

    assert_eq!(
        admin.jobs().await.unwrap().len(),
        jobs_before,
        "a refused action queued a job"
    );
    assert_eq!(server.fake.power(vm.id), Some(PowerState::Running));

    let stop = admin.vm_action(vm.id, "stop").await.unwrap().job;
    succeed(&admin, &stop).await;
    for action in ["stop", "shutdown", "suspend", "reset", "resume"] {
        assert_eq!(
            code(admin.vm_action(vm.id, action).await.unwrap_err()).0,
            409,
            "{action} while stopped"
        );
    }
    assert_eq!(admin.vm(vm.id).await.unwrap().state, VmState::Stopped);
    assert_eq!(server.fake.power(vm.id), Some(PowerState::Stopped));
}

#[tokio::test]
async fn authentication_and_ownership_are_enforced() {
    let server = demo_app().await;
    let admin = server.admin().await;
    let vm = running_vm(&admin, "admins").await;

    assert_eq!(
        server.anonymous().vms().await.unwrap_err().status(),
        Some(401)
    );
    assert_eq!(
        server
            .anonymous()
            .with_token("pht_forged")
            .vms()
            .await
            .unwrap_err()
            .status(),
        Some(401)
    );
    assert_eq!(
        server
            .anonymous()
            .login("admin", "wrong password")
            .await
            .unwrap_err()
            .status(),
        Some(401)
    );
    assert_eq!(
        server
            .anonymous()
            .login("nobody", "wrong password")
            .await
            .unwrap_err()
            .status(),
        Some(401)
    );

    let request = porthole_api::CreateUserRequest {
        username: "alice".into(),
        password: "alice-password".into(),
        role: porthole_core::Role::Member,
        email: None,
    };
    admin.create_user(&request).await.unwrap();
    let alice = server.login("alice", "alice-password").await;
    assert!(
        alice.vms().await.unwrap().is_empty(),
        "a member sees another user's VM"
    );
    assert_eq!(alice.vm(vm.id).await.unwrap_err().status(), Some(404));
    assert_eq!(
        alice.vm_action(vm.id, "stop").await.unwrap_err().status(),
        Some(404)
    );
    assert_eq!(
        alice.delete_vm(vm.id).await.unwrap_err().status(),
        Some(404)
    );
    assert_eq!(
        alice.create_user(&request).await.unwrap_err().status(),
        Some(403)
    );
    assert_eq!(
        alice.delete_template("demo").await.unwrap_err().status(),
        Some(403)
    );

    let own = running_vm(&alice, "alices").await;
    assert_eq!(own.owner, "alice");
    assert_eq!(admin.vms().await.unwrap().len(), 2, "admins see every VM");

    // Logging out revokes the token.
    alice.logout().await.unwrap();
    assert_eq!(alice.vms().await.unwrap_err().status(), Some(401));
    assert_eq!(admin.vm(vm.id).await.unwrap().state, VmState::Running);
}
