//! Self-service rules through the API: quotas enforced in one transaction, limits per user
//! and per group, and login lockout with its audit trail. In process, on a fake node.

use porthole_api::{SetLimitsRequest, UpdateUserRequest};
use porthole_core::VmState;
use porthole_testing::server::*;

use crate::{demo_app, demo_app_with};

#[tokio::test]
async fn a_hundred_parallel_creates_against_a_quota_of_three_admit_exactly_three() {
    let server = demo_app().await;
    let admin = server.admin().await;
    let alice = member(&server, &admin, "alice").await;
    admin
        .set_user_limits(
            "alice",
            &SetLimitsRequest {
                cores: Some(3),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    let creates = (0..100).map(|i| {
        let alice = alice.clone();
        async move { alice.create_vm(&demo_vm(&format!("race-{i}"))).await }
    });
    let results = futures::future::join_all(creates).await;
    let mut admitted = Vec::new();
    for result in results {
        match result {
            Ok(created) => admitted.push(created),
            Err(e) => {
                let (status, code, message, field) = api_error(e);
                assert_eq!(
                    (status, code.as_str(), field.as_deref()),
                    (422, "quota_exceeded", Some("cores")),
                    "{message}"
                );
                assert!(message.contains("of your 3 cores"), "{message}");
            }
        }
    }
    assert_eq!(
        admitted.len(),
        3,
        "exactly the quota's worth of VMs is admitted"
    );
    assert_eq!(
        alice.vms().await.unwrap().len(),
        3,
        "refused creates left no row"
    );
    for created in &admitted {
        succeed(&alice, &created.job).await;
    }
    let me = alice.me().await.unwrap();
    assert_eq!((me.usage.cores, me.limits.cores), (3, 3));
    assert_eq!(me.usage.disk_gib, 3);

    // A stopped VM frees its cores; starting it again counts against the quota.
    let first = &admitted[0].vm;
    succeed(
        &alice,
        &alice.vm_action(first.id, "stop").await.unwrap().job,
    )
    .await;
    assert_eq!(alice.me().await.unwrap().usage.cores, 2);
    let (status, code, _, field) = api_error(
        alice
            .create_vm(&porthole_api::CreateVmRequest {
                cores: 2,
                ..demo_vm("too-big")
            })
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, code.as_str(), field.as_deref()),
        (422, "quota_exceeded", Some("cores"))
    );
    let squeeze = alice.create_vm(&demo_vm("squeeze")).await.unwrap();
    succeed(&alice, &squeeze.job).await;
    let (status, _, message, field) =
        api_error(alice.vm_action(first.id, "start").await.unwrap_err());
    assert_eq!(
        (status, field.as_deref()),
        (422, Some("cores")),
        "{message}"
    );
    assert_eq!(alice.vm(first.id).await.unwrap().state, VmState::Stopped);

    // The disk limit counts every VM, running or not; growing a disk is checked too.
    admin
        .set_user_limits(
            "alice",
            &SetLimitsRequest {
                cores: Some(3),
                disk_gib: Some(5),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (status, _, message, field) = api_error(
        alice
            .update_vm(
                first.id,
                &porthole_api::UpdateVmRequest {
                    disk_gib: Some(3),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, field.as_deref()),
        (422, Some("disk_gib")),
        "{message}"
    );
    assert_eq!(
        alice.vm(first.id).await.unwrap().disk_gib,
        1,
        "a refused resize changes nothing"
    );

    // Admins see the refusals in the audit log, named and attributed.
    let audit = admin.audit_log(500).await.unwrap();
    let denied = audit
        .iter()
        .filter(|e| e.action == "vm.create" && e.actor == "alice" && e.outcome == "denied")
        .count();
    assert_eq!(denied, 98, "97 racing creates and one too big");
    assert!(audit.iter().any(|e| e.action == "user.limits"
        && e.actor == "admin"
        && e.target_name.as_deref() == Some("alice")
        && e.remote_addr.as_deref() == Some("127.0.0.1")));
}

#[tokio::test]
async fn limits_resolve_from_user_then_group_then_default_and_reject_bad_input() {
    let server = demo_app_with(|config| {
        config.portal.default_limits.cores = 2;
        config.portal.default_limits.memory_mib = 1024;
    })
    .await;
    let admin = server.admin().await;
    let bob = member(&server, &admin, "bob").await;
    let me = bob.me().await.unwrap();
    assert_eq!(
        (me.limits.cores, me.limits.memory_mib, me.limits.disk_gib),
        (2, 1024, 100)
    );

    admin.create_group("lab").await.unwrap();
    admin
        .set_group_limits(
            "lab",
            &SetLimitsRequest {
                cores: Some(8),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    admin.add_group_member("lab", "bob").await.unwrap();
    let me = bob.me().await.unwrap();
    assert_eq!(
        (me.limits.cores, me.groups.clone()),
        (8, vec!["lab".to_owned()])
    );
    admin
        .set_user_limits(
            "bob",
            &SetLimitsRequest {
                cores: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(bob.me().await.unwrap().limits.cores, 1);

    // Members cannot change limits; bad values name their field and change nothing.
    let (status, ..) = api_error(
        bob.set_user_limits(
            "bob",
            &SetLimitsRequest {
                cores: Some(99),
                ..Default::default()
            },
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(status, 403);
    let (status, _, _, field) = api_error(
        admin
            .set_user_limits(
                "bob",
                &SetLimitsRequest {
                    memory_mib: Some(u64::MAX),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((status, field.as_deref()), (422, Some("memory_mib")));
    let http = reqwest::Client::new();
    let raw = http
        .put(format!("{}/api/v1/users/bob/limits", server.url))
        .bearer_auth(admin.token().unwrap())
        .json(&serde_json::json!({ "cores": -1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert!(raw.text().await.unwrap().contains("cores"));
    assert_eq!(bob.me().await.unwrap().limits.cores, 1);
    let (status, ..) = api_error(
        admin
            .set_user_limits("nobody", &SetLimitsRequest::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 404);

    // Memory is checked against the limit too, and a VM renews to a full lifetime.
    let (status, _, _, field) = api_error(
        bob.create_vm(&porthole_api::CreateVmRequest {
            memory_mib: 2048,
            ..demo_vm("big")
        })
        .await
        .unwrap_err(),
    );
    assert_eq!((status, field.as_deref()), (422, Some("memory_mib")));
    let created = bob.create_vm(&demo_vm("lives")).await.unwrap();
    let expires = created.vm.expires_at.expect("VMs expire by default");
    let lifetime = expires - created.vm.created_at;
    assert_eq!(lifetime.num_days(), 90);
    succeed(&bob, &created.job).await;
    let renewed = bob.renew_vm(created.vm.id).await.unwrap();
    assert!(renewed.expires_at.unwrap() > expires);
    // Only admins exempt VMs.
    let exempt = porthole_api::UpdateVmRequest {
        expiry_exempt: Some(true),
        ..Default::default()
    };
    assert_eq!(
        api_error(bob.update_vm(created.vm.id, &exempt).await.unwrap_err()).0,
        403
    );
    assert!(
        admin
            .update_vm(created.vm.id, &exempt)
            .await
            .unwrap()
            .expiry_exempt
    );
}

#[tokio::test]
async fn wrong_passwords_lock_the_account_until_an_admin_unlocks_it() {
    let server = demo_app_with(|config| config.portal.max_login_failures = 3).await;
    let admin = server.admin().await;
    member(&server, &admin, "carol").await;
    let anonymous = server.anonymous();
    for _ in 0..2 {
        let (status, ..) = api_error(
            anonymous
                .login("carol", "wrong-password")
                .await
                .unwrap_err(),
        );
        assert_eq!(status, 401);
    }
    let (status, code, message, _) = api_error(
        anonymous
            .login("carol", "wrong-password")
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (429, "too_many_requests"));
    assert!(message.contains("locked"), "{message}");
    // Locked: even the right password is refused.
    let (status, ..) = api_error(
        anonymous
            .login("carol", "carol-password")
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 429);
    assert!(admin.user("carol").await.unwrap().locked_until.is_some());

    admin
        .update_user(
            "carol",
            &UpdateUserRequest {
                unlock: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    anonymous.login("carol", "carol-password").await.unwrap();

    let audit = admin.audit_log(100).await.unwrap();
    let logins: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "login" && e.actor == "carol")
        .map(|e| e.outcome.as_str())
        .collect();
    // Newest first: the good login, the refused one while locked, the three wrong ones, and
    // the first login when the account was made.
    assert_eq!(logins, ["ok", "denied", "denied", "denied", "denied", "ok"]);
}
