//! API tokens through the router, in process: minted on the profile and shown once, stored
//! only as a digest, listed without their secret, and refused once revoked or expired; bad
//! requests name their field and mint nothing.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::demo_app_with;

const TOKENS: &str = "/api/v1/users/me/tokens";

#[tokio::test]
async fn tokens_are_shown_once_stored_hashed_and_refused_once_revoked_or_expired() {
    let clock = tempfile::NamedTempFile::new().unwrap();
    let set_clock = |at: chrono::DateTime<chrono::Utc>| {
        std::fs::write(clock.path(), at.to_rfc3339()).unwrap();
    };
    let start = chrono::Utc::now();
    set_clock(start);
    let clock_file = clock.path().to_owned();
    let app = demo_app_with(move |config| config.clock_file = Some(clock_file)).await;
    let alice = app.member_token("alice").await;
    let bob = app.member_token("bob").await;

    // Bad requests name their field and mint nothing.
    for (body, status, field) in [
        (
            json!({"label": ""}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "label",
        ),
        (
            json!({"label": "x".repeat(101)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "label",
        ),
        (
            json!({"label": "ci", "days": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "days",
        ),
        (
            json!({"label": "ci", "days": 366}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "days",
        ),
        (
            json!({"label": "ci", "scope": "all"}),
            StatusCode::BAD_REQUEST,
            "scope",
        ),
        (json!({"days": 1}), StatusCode::BAD_REQUEST, "label"),
    ] {
        let (got, error) = app
            .call(Method::POST, TOKENS, Some(&alice), Some(&body))
            .await;
        assert_eq!(
            (got, error["error"]["field"].as_str()),
            (status, Some(field)),
            "{body}: {error}"
        );
    }
    let (_, listed) = app.call(Method::GET, TOKENS, Some(&alice), None).await;
    let labels = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|t| t["label"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(labels(&listed), ["login"], "only the login's own session");

    // Minted: shown once, working, listed by label only, kept only as a digest.
    let (status, minted) = app
        .call(
            Method::POST,
            TOKENS,
            Some(&alice),
            Some(&json!({"label": "ci", "days": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let token = minted["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("pht_"), "{token}");
    let (status, me) = app
        .call(Method::GET, "/api/v1/users/me", Some(&token), None)
        .await;
    assert_eq!(
        (status, me["username"].as_str()),
        (StatusCode::OK, Some("alice"))
    );
    let (_, listed) = app.call(Method::GET, TOKENS, Some(&alice), None).await;
    assert_eq!(labels(&listed), ["login", "ci"]);
    assert!(!listed.to_string().contains(&token), "{listed}");
    for file in ["porthole.db", "porthole.db-wal"] {
        let bytes = std::fs::read(app.data_dir.join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "the token is in {file} in clear"
        );
    }
    let id = listed.as_array().unwrap()[1]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Another user cannot revoke it; its owner can, once.
    let path = format!("{TOKENS}/{id}");
    let (status, _) = app.call(Method::DELETE, &path, Some(&bob), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .call(Method::GET, "/api/v1/users/me", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "bob's attempt changed nothing");
    let (status, _) = app.call(Method::DELETE, &path, Some(&alice), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, refused) = app
        .call(Method::GET, "/api/v1/users/me", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
    assert_eq!(refused["error"]["code"], "unauthorized");
    let (status, _) = app.call(Method::DELETE, &path, Some(&alice), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A token dies with its day; the plane's clock says when.
    let (_, short) = app
        .call(
            Method::POST,
            TOKENS,
            Some(&alice),
            Some(&json!({"label": "short", "days": 1})),
        )
        .await;
    let short = short["token"].as_str().unwrap().to_owned();
    let (status, _) = app
        .call(Method::GET, "/api/v1/users/me", Some(&short), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    set_clock(start + chrono::Duration::days(2));
    let (status, refused) = app
        .call(Method::GET, "/api/v1/users/me", Some(&short), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");

    // Each mint and revoke is in the audit log, attributed.
    let admin = app
        .token("admin", porthole_testing::server::ADMIN_PASSWORD)
        .await;
    let (_, audit) = app
        .call(Method::GET, "/api/v1/audit?actor=alice", Some(&admin), None)
        .await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"token.create") && actions.contains(&"token.revoke"),
        "{actions:?}"
    );
}
