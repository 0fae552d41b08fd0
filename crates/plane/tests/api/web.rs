//! The web UI's session handling: login redirects, cookie flags, the content security
//! policy, and cookie-signed requests refused unless they come from porthole's own pages.

use porthole_core::ConsoleKind;
use porthole_testing::app::TestApp;
use porthole_testing::server::*;

use crate::demo_app;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION, ORIGIN, SET_COOKIE};

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of the page's CSRF token (its hidden `csrf` field or its meta tag).
fn csrf_of(html: &str) -> String {
    let start = html
        .find("name=\"csrf-token\" content=\"")
        .map(|i| i + "name=\"csrf-token\" content=\"".len())
        .expect("the page has a CSRF token");
    html[start..].split('"').next().unwrap().to_owned()
}

/// Opens the login page: its binding cookie (`name=value`) and its form's CSRF token.
async fn login_form(server: &TestApp, http: &reqwest::Client) -> (String, String) {
    let page = http
        .get(format!("{}/login", server.url))
        .send()
        .await
        .unwrap();
    let cookie = page.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with("porthole_login=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();
    (cookie, csrf_of(&page.text().await.unwrap()))
}

async fn log_in(
    server: &TestApp,
    http: &reqwest::Client,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let (cookie, csrf) = login_form(server, http).await;
    let mut request = http
        .post(format!("{}/login", server.url))
        .header("cookie", cookie)
        .form(&[
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
            ("next", "/vms"),
            ("csrf", &csrf),
        ]);
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn sessions_use_strict_http_only_cookies_and_origin_checks() {
    let server = demo_app().await;
    let http = no_redirects();

    let page = http
        .get(format!("{}/vms/some-vm/console/vnc", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        page.headers()[LOCATION],
        "/login?next=/vms/some-vm/console/vnc"
    );

    let login_page = http
        .get(format!("{}/login", server.url))
        .send()
        .await
        .unwrap();
    let csp = login_page.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );

    // A login form posted without its token, with another form's token, or without the
    // binding cookie is refused before the password is even looked at.
    let (cookie, csrf) = login_form(&server, &http).await;
    let (_, other_csrf) = login_form(&server, &http).await;
    for (cookie, token) in [
        (Some(cookie.as_str()), None),
        (Some(cookie.as_str()), Some(other_csrf.as_str())),
        (None, Some(csrf.as_str())),
    ] {
        let mut form = vec![("username", "admin"), ("password", ADMIN_PASSWORD)];
        form.extend(token.map(|t| ("csrf", t)));
        let mut request = http.post(format!("{}/login", server.url)).form(&form);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let refused = request.send().await.unwrap();
        assert_eq!(
            refused.status(),
            StatusCode::FORBIDDEN,
            "{cookie:?} {token:?}"
        );
        assert!(refused.text().await.unwrap().contains("csrf"));
    }

    let wrong = http
        .post(format!("{}/login", server.url))
        .header("cookie", &cookie)
        .form(&[
            ("username", "admin"),
            ("password", "wrong"),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("wrong username or password")
    );

    let foreign = log_in(&server, &http, &[("origin", "https://evil.example")]).await;
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);

    let response = log_in(&server, &http, &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/vms");
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP must not mark the cookie Secure: {cookie}"
    );
    let behind_tls = log_in(&server, &http, &[("x-forwarded-proto", "https")]).await;
    assert!(
        behind_tls.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );
    let session = cookie.split(';').next().unwrap().to_owned();

    // Signed in by cookie, pages work; state changes need porthole's own Origin.
    let home = http
        .get(format!("{}/vms", server.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), StatusCode::OK);
    let page_csrf = csrf_of(&home.text().await.unwrap());
    let admin = server.admin().await;
    let vm = running_vm(&admin, "web").await;
    let ticket_url = format!("{}/api/v1/vms/{}/console", server.url, vm.id);
    let body = serde_json::json!({ "kind": "serial" });
    let own = server.url.trim_end_matches('/').to_owned();
    let post = |origin: Option<&str>, csrf: Option<&str>| {
        let mut request = http
            .post(&ticket_url)
            .header("cookie", &session)
            .json(&body);
        if let Some(origin) = origin {
            request = request.header(ORIGIN, origin);
        }
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request.send()
    };
    let status = |r: reqwest::Result<reqwest::Response>| r.unwrap().status();
    assert_eq!(
        status(post(Some("https://evil.example"), Some(&page_csrf)).await),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(post(None, Some(&page_csrf)).await),
        StatusCode::FORBIDDEN
    );
    // porthole's own Origin is not enough: the page's token must come too.
    assert_eq!(status(post(Some(&own), None).await), StatusCode::FORBIDDEN);
    assert_eq!(
        status(post(Some(&own), Some(&other_csrf)).await),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(post(Some(&own), Some(&page_csrf)).await),
        StatusCode::OK
    );
    // Bearer tokens are not ambient, so they need no Origin.
    admin
        .vm_console_ticket(vm.id, ConsoleKind::Serial)
        .await
        .unwrap();

    // A VM page whose VM is gone (say, its delete finished first) sends the user to the list.
    let gone = porthole_core::VmId::random();
    for (query, to) in [
        ("?notice=deleting%20web", "/vms?notice=deleted"),
        ("", "/vms?error=that+VM+does+not+exist+(any+more)"),
    ] {
        let page = http
            .get(format!("{}/vms/{gone}{query}", server.url))
            .header("cookie", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::SEE_OTHER);
        assert_eq!(page.headers()[LOCATION], to);
    }

    // Logging out ends the session; the form must carry its token.
    let logout = |csrf: &str| {
        http.post(format!("{}/logout", server.url))
            .header("cookie", &session)
            .header(ORIGIN, &own)
            .form(&[("csrf", csrf)])
            .send()
    };
    assert_eq!(status(logout("").await), StatusCode::FORBIDDEN);
    assert_eq!(status(logout(&page_csrf).await), StatusCode::SEE_OTHER);
    let after = http
        .get(format!("{}/vms", server.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::SEE_OTHER);

    // Assets come only from the embedded list.
    for path in [
        "/assets/novnc/core/rfb.js",
        "/assets/xterm/lib/xterm.mjs",
        "/assets/app/vnc.js",
    ] {
        assert_eq!(
            http.get(format!("{}{path}", server.url))
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::OK,
            "{path}"
        );
    }
    for path in [
        "/assets/novnc/package.json",
        "/assets/app/../../Cargo.toml",
        "/assets/playwright-core/index.js",
    ] {
        assert_eq!(
            http.get(format!("{}{path}", server.url))
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}
