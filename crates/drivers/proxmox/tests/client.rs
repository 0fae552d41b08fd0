//! The client against a small in-test PVE stand-in over plain HTTP: auth headers, CSRF,
//! ticket renewal and re-login, task polling and error decoding.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use porthole_proxmox::types::PowerAction;
use porthole_proxmox::{
    Client, ClientBuilder, Credentials, Error, PasswordLogin, Retry, Secret, TaskOutcome, TaskWait,
    TlsOptions, Upid,
};

const TOKEN: &str = "PVEAPIToken=porthole@pve!ci=tok-secret";

#[derive(Default)]
struct Pve {
    /// ticket → csrf token
    tickets: HashMap<String, String>,
    issued: u32,
    /// (method, path, password-or-ticket-login) log of ticket posts: password values
    logins: Vec<String>,
    /// every request: (method, path, had cookie, had csrf, had token)
    requests: Vec<(String, String, bool, bool, bool)>,
    polls: u32,
}

type Shared = Arc<Mutex<Pve>>;

fn json(status: StatusCode, body: &str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn form(body: &str) -> HashMap<String, String> {
    serde_urlencoded::from_str(body).unwrap()
}

fn cookie_ticket(headers: &HeaderMap) -> Option<String> {
    let cookie = headers.get("cookie")?.to_str().ok()?;
    cookie
        .split(';')
        .find_map(|c| c.trim().strip_prefix("PVEAuthCookie="))
        .map(str::to_owned)
}

fn handle(pve: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap, body: &str) -> Response {
    let mut pve = pve.lock().unwrap();
    let path = uri
        .path()
        .strip_prefix("/api2/json")
        .unwrap_or("")
        .to_owned();
    let ticket = cookie_ticket(headers);
    let csrf = headers
        .get("csrfpreventiontoken")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(TOKEN);
    pve.requests.push((
        method.to_string(),
        path.clone(),
        ticket.is_some(),
        csrf.is_some(),
        token,
    ));

    if path == "/access/ticket" && method == Method::POST {
        let f = form(body);
        let password = f.get("password").cloned().unwrap_or_default();
        pve.logins.push(password.clone());
        let ok = (f.get("username").map(String::as_str) == Some("alice")
            && f.get("realm").map(String::as_str) == Some("pve")
            && password == "hunter2")
            || pve.tickets.contains_key(&password);
        if !ok {
            return json(
                StatusCode::UNAUTHORIZED,
                r#"{"data":null,"message":"authentication failure\n"}"#,
            );
        }
        pve.issued += 1;
        let n = pve.issued;
        let t = format!("PVE:alice@pve:{n:08X}::sig{n}");
        let c = format!("{n:08X}:csrf{n}");
        pve.tickets.insert(t.clone(), c.clone());
        return json(
            StatusCode::OK,
            &format!(
                r#"{{"data":{{"username":"alice@pve","ticket":"{t}","CSRFPreventionToken":"{c}","cap":{{}}}}}}"#
            ),
        );
    }

    // Authentication: a known ticket, or the token.
    let ticket_csrf = ticket.as_ref().and_then(|t| pve.tickets.get(t).cloned());
    if ticket_csrf.is_none() && !token {
        return json(StatusCode::UNAUTHORIZED, r#"{"data":null}"#);
    }
    if let Some(expected) = ticket_csrf
        && method != Method::GET
        && csrf.as_deref() != Some(expected.as_str())
    {
        return json(
            StatusCode::UNAUTHORIZED,
            r#"{"data":null,"message":"Permission check failed (invalid csrf token)"}"#,
        );
    }

    match (method.as_str(), path.as_str()) {
        ("GET", "/version") => json(
            StatusCode::OK,
            r#"{"data":{"version":"8.2.4","release":"8.2","repoid":"faa83925"}}"#,
        ),
        ("GET", "/cluster/nextid") => json(StatusCode::OK, r#"{"data":"105"}"#),
        ("POST", p) if p.starts_with("/nodes/pve1/qemu/") && p.contains("/status/") => {
            let kind = match p.rsplit('/').next() {
                Some("start") => "qmstart",
                Some("stop") => "qmwarn",
                Some("reset") => "qmfail",
                _ => "qmslow",
            };
            json(
                StatusCode::OK,
                &format!(
                    r#"{{"data":"UPID:pve1:00001234:0012D687:6650F00D:{kind}:100:alice@pve:"}}"#
                ),
            )
        }
        ("GET", p) if p.starts_with("/nodes/pve1/tasks/") => {
            pve.polls += 1;
            let (status, exit) = if p.contains(":qmstart:") {
                ("stopped", "OK")
            } else if p.contains(":qmwarn:") {
                ("stopped", "WARNINGS: 2")
            } else if p.contains(":qmfail:") {
                (
                    "stopped",
                    "VM 100 qmp command 'system_reset' failed - not running",
                )
            } else {
                ("running", "")
            };
            let exit = if exit.is_empty() {
                String::new()
            } else {
                format!(r#","exitstatus":"{exit}""#)
            };
            json(
                StatusCode::OK,
                &format!(
                    r#"{{"data":{{"status":"{status}","type":"qmstart","id":"100","pid":4660,"node":"pve1"{exit}}}}}"#
                ),
            )
        }
        ("POST", "/nodes/pve1/qemu/100/clone") => {
            let newid = form(body).get("newid").cloned().unwrap_or_default();
            if newid == "105" {
                json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    r#"{"data":null,"message":"unable to create VM 105: config file already exists\n"}"#,
                )
            } else {
                json(
                    StatusCode::OK,
                    r#"{"data":"UPID:pve1:00001235:0012D687:6650F00D:qmclone:100:alice@pve:"}"#,
                )
            }
        }
        ("GET", "/cluster/resources") => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"data":null,"errors":{"type":"value 'vm' does not have a value in the enumeration"},"message":"Parameter verification failed.\n"}"#,
        ),
        ("GET", "/nodes/pve1/qemu/999/config") => Response::builder()
            .status(404)
            .body(Body::from(
                "Configuration file 'nodes/pve1/qemu-server/999.conf' does not exist\n",
            ))
            .unwrap(),
        ("GET", "/access/permissions") => json(
            StatusCode::FORBIDDEN,
            r#"{"data":null,"message":"Permission check failed (/, Sys.Audit)\n"}"#,
        ),
        _ => json(
            StatusCode::NOT_IMPLEMENTED,
            r#"{"data":null,"message":"Method not implemented"}"#,
        ),
    }
}

async fn serve() -> (String, Shared) {
    let pve: Shared = Arc::default();
    let state = Arc::clone(&pve);
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: String| {
            let state = Arc::clone(&state);
            async move { handle(&state, &method, &uri, &headers, &body) }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), pve)
}

fn password_client(url: &str) -> ClientBuilder {
    ClientBuilder::new(
        url,
        Credentials::Password(PasswordLogin::new("alice", "pve", Secret::new("hunter2"))),
    )
    .tls(TlsOptions::Insecure)
}

#[tokio::test]
async fn ticket_login_sends_cookie_everywhere_and_csrf_only_on_writes() {
    let (url, pve) = serve().await;
    let client = password_client(&url).build().unwrap();
    assert_eq!(client.version().await.unwrap().release, "8.2");
    let upid = client.power("pve1", 100, PowerAction::Start).await.unwrap();
    assert_eq!(upid.task_type(), "qmstart");
    let pve = pve.lock().unwrap();
    assert_eq!(pve.logins, ["hunter2"]);
    let reqs: Vec<_> = pve
        .requests
        .iter()
        .filter(|r| r.1 != "/access/ticket")
        .collect();
    assert_eq!(reqs[0].0, "GET");
    assert!(reqs[0].2 && !reqs[0].3, "GET: cookie, no CSRF: {reqs:?}");
    assert!(reqs[1].2 && reqs[1].3, "POST: cookie and CSRF: {reqs:?}");
}

#[tokio::test]
async fn token_auth_sends_the_token_header_and_never_logs_in() {
    let (url, pve) = serve().await;
    let token = "porthole@pve!ci=tok-secret".parse().unwrap();
    let client = ClientBuilder::new(&url, Credentials::Token(token))
        .build()
        .unwrap();
    client.version().await.unwrap();
    client.power("pve1", 100, PowerAction::Start).await.unwrap();
    let pve = pve.lock().unwrap();
    assert!(pve.logins.is_empty());
    assert!(
        pve.requests.iter().all(|r| r.4 && !r.2 && !r.3),
        "{:?}",
        pve.requests
    );
}

#[tokio::test]
async fn wrong_password_is_unauthorized_and_not_retryable() {
    let (url, _pve) = serve().await;
    let client = ClientBuilder::new(
        &url,
        Credentials::Password(PasswordLogin::new("alice", "pve", Secret::new("wrong"))),
    )
    .build()
    .unwrap();
    let err = client.version().await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("authentication failure"), "{err}");
    assert_eq!(err.retry(), Retry::Never);
    assert!(!format!("{err:?} {err}").contains("wrong"));
}

#[tokio::test]
async fn ticket_is_renewed_with_itself_when_old() {
    let (url, pve) = serve().await;
    let client = password_client(&url)
        .renew_after(Duration::from_millis(100))
        .build()
        .unwrap();
    client.version().await.unwrap();
    let first = client.ticket().await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    client.version().await.unwrap();
    let second = client.ticket().await.unwrap();
    assert_ne!(first.ticket, second.ticket);
    let pve = pve.lock().unwrap();
    // The first login used the password; the renewal posted the old ticket.
    assert_eq!(pve.logins.len(), 2);
    assert_eq!(pve.logins[0], "hunter2");
    assert_eq!(pve.logins[1], first.ticket.expose());
}

#[tokio::test]
async fn a_rejected_ticket_triggers_one_fresh_login() {
    let (url, pve) = serve().await;
    let client = password_client(&url).build().unwrap();
    client.version().await.unwrap();
    pve.lock().unwrap().tickets.clear(); // the server forgets every ticket (expiry, restart)
    client.power("pve1", 100, PowerAction::Start).await.unwrap();
    assert_eq!(pve.lock().unwrap().logins, ["hunter2", "hunter2"]);
}

#[tokio::test]
async fn a_foreign_ticket_without_password_reports_expiry() {
    let (url, pve) = serve().await;
    let ticket = password_client(&url)
        .build()
        .unwrap()
        .login()
        .await
        .unwrap()
        .unwrap();
    let client = ClientBuilder::new(&url, Credentials::Ticket(ticket))
        .build()
        .unwrap();
    client.version().await.unwrap();
    pve.lock().unwrap().tickets.clear();
    let err = client.version().await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
}

#[tokio::test]
async fn task_polling_outcomes() {
    let (url, pve) = serve().await;
    let client = password_client(&url).build().unwrap();
    let wait = TaskWait {
        interval: Duration::from_millis(20),
        timeout: Duration::from_millis(200),
    };

    let ok = client.power("pve1", 100, PowerAction::Start).await.unwrap();
    assert_eq!(client.wait_task(&ok, wait).await.unwrap(), TaskOutcome::Ok);

    let warn = client.power("pve1", 100, PowerAction::Stop).await.unwrap();
    assert_eq!(
        client.wait_task(&warn, wait).await.unwrap(),
        TaskOutcome::Warnings(2)
    );

    let fail = client.power("pve1", 100, PowerAction::Reset).await.unwrap();
    match client.wait_task(&fail, wait).await.unwrap_err() {
        Error::TaskFailed { exitstatus, upid } => {
            assert!(exitstatus.contains("not running"));
            assert_eq!(*upid, fail);
        }
        other => panic!("{other:?}"),
    }

    let slow = client
        .power("pve1", 100, PowerAction::Shutdown)
        .await
        .unwrap();
    let before = pve.lock().unwrap().polls;
    let err = client.wait_task(&slow, wait).await.unwrap_err();
    assert!(matches!(err, Error::TaskTimeout { .. }), "{err:?}");
    assert!(err.to_string().contains("poll it again"));
    let polls = pve.lock().unwrap().polls - before;
    assert!((3..=12).contains(&polls), "{polls} polls");
}

#[tokio::test]
async fn error_bodies_are_decoded_into_messages() {
    let (url, _pve) = serve().await;
    let client = password_client(&url).build().unwrap();

    let err = client.cluster_vms().await.unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert_eq!(err.retry(), Retry::Always, "5xx on GET may be retried");
    let text = err.to_string();
    assert!(
        text.contains("Parameter verification failed.") && text.contains("type: value 'vm'"),
        "{text}"
    );

    let err = client.qemu_config("pve1", 999).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(
        err.to_string().contains("999.conf' does not exist"),
        "{err}"
    );

    let err = client.permissions().await.unwrap_err();
    assert!(matches!(err, Error::Forbidden { .. }), "{err:?}");
    assert!(err.to_string().contains("Sys.Audit"), "{err}");
}

#[tokio::test]
async fn connection_refused_is_a_retryable_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = password_client(&format!("http://{addr}")).build().unwrap();
    let err = client.version().await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert_eq!(err.retry(), Retry::Always);
}

#[tokio::test]
async fn taken_vmid_is_retried_with_a_fresh_one() {
    let (url, _pve) = serve().await;
    let client = password_client(&url).build().unwrap();
    let mut tried = Vec::new();
    let upid: Upid = client
        .with_fresh_vmid(3, |vmid| {
            // The stand-in's nextid is always 105, which is taken; the second attempt uses 106
            // as if nextid had moved on.
            let vmid = if tried.is_empty() { vmid } else { vmid + 1 };
            tried.push(vmid);
            let client = client.clone();
            async move {
                let mut req = porthole_proxmox::types::CloneRequest::new(vmid);
                req.full = Some(true);
                client.clone_qemu("pve1", 100, &req).await
            }
        })
        .await
        .unwrap();
    assert_eq!(upid.task_type(), "qmclone");
    assert_eq!(tried, [105, 106]);

    let err = client
        .with_fresh_vmid(2, |vmid| {
            let client = client.clone();
            async move {
                client
                    .clone_qemu(
                        "pve1",
                        100,
                        &porthole_proxmox::types::CloneRequest::new(vmid),
                    )
                    .await
            }
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::VmidsExhausted { attempts: 2 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn vnc_websocket_target_carries_ticket_and_cookie_but_debug_hides_them() {
    let (url, _pve) = serve().await;
    let client: Client = password_client(&url).build().unwrap();
    let target = client
        .vnc_websocket("pve1", 100, 5900, &Secret::new("PVEVNC:abc+/="))
        .await
        .unwrap();
    assert_eq!(target.url.scheme(), "ws");
    assert_eq!(
        target.url.path(),
        "/api2/json/nodes/pve1/qemu/100/vncwebsocket"
    );
    let query: HashMap<_, _> = target.url.query_pairs().into_owned().collect();
    assert_eq!(query["port"], "5900");
    assert_eq!(query["vncticket"], "PVEVNC:abc+/=");
    assert!(
        target
            .headers
            .iter()
            .any(|(n, v)| n == "cookie" && v.expose().starts_with("PVEAuthCookie=PVE:alice@pve:"))
    );
    let debug = format!("{target:?}");
    assert!(
        !debug.contains("PVEVNC") && !debug.contains("PVE:alice"),
        "{debug}"
    );
}
