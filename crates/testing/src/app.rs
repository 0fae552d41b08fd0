//! The plane in-process, for the fast tier: the real router and services over a fresh
//! SQLite database in a temporary directory, with a [`FakeDriver`] as the `local` node, so
//! no test here needs QEMU, a guest, Node or Chromium.
//!
//! A [`TestApp`] is driven two ways, on the same state:
//! 1. [`TestApp::send`] hands a request to the router with `tower::ServiceExt::oneshot`,
//!    as from `127.0.0.1` (no socket involved);
//! 2. it also serves on a loopback port ([`TestApp::url`]), for what needs a real
//!    connection: the typed API client, WebSockets, and the `porthole` CLI.
//!
//! Fixtures that the API would need QEMU's tools for (a template is checked with
//! `qemu-img` on import) are written to the database and the image library directly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use porthole_core::driver::{DiskFormat, PowerState};
use porthole_core::{IsoId, TemplateId};
use porthole_gateway::SessionPolicy;
use porthole_plane::library::ImageLibrary;
use porthole_plane::{
    AccelSetting, AgentSettings, ConsoleSettings, LocalNode, Plane, PlaneConfig, PortalSettings,
};
use porthole_qemu::Accel;
use porthole_store::Store;
use porthole_store::images::{IsoRecord, TemplateRecord};
use serde_json::Value;
use tower::ServiceExt;

use crate::fake::FakeDriver;
use crate::server::{ADMIN_PASSWORD, Served};

/// How long a test waits for a job of the fake node.
const JOB_TIMEOUT: Duration = Duration::from_secs(20);

/// A plane in this process, on a fresh data directory, with a fake `local` node.
#[derive(Debug)]
pub struct TestApp {
    router: axum::Router,
    /// Where it also serves, `http://127.0.0.1:PORT`.
    pub url: String,
    /// The `local` node's driver.
    pub fake: Arc<FakeDriver>,
    /// A second connection to its database, for fixtures and checks.
    pub store: Store,
    /// Its data directory.
    pub data_dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<()>>,
    _temp: tempfile::TempDir,
}

/// The configuration of a test plane in `data_dir`, with `local` as its node.
pub fn test_config(data_dir: &Path, local: LocalNode) -> PlaneConfig {
    PlaneConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_owned(),
        public_url: None,
        demo_guest: None,
        accel: AccelSetting::Fixed(Accel::Tcg),
        qemu: "qemu-system-x86_64".into(),
        token_ttl: Duration::from_secs(3600),
        shutdown_timeout: Duration::from_secs(5),
        admin_password: Some(ADMIN_PASSWORD.into()),
        consoles: ConsoleSettings {
            policy: SessionPolicy::default(),
            ..ConsoleSettings::default()
        },
        portal: PortalSettings::default(),
        clock_file: None,
        accessor: None,
        agents: AgentSettings::default(),
        local_node: local,
        overcommit: Default::default(),
    }
}

impl TestApp {
    /// A plane with the default settings.
    pub async fn start() -> TestApp {
        Self::start_with(|_| {}).await
    }

    /// A plane whose settings `configure` changes first.
    pub async fn start_with(configure: impl FnOnce(&mut PlaneConfig)) -> TestApp {
        let temp = tempfile::tempdir().unwrap();
        let data_dir = temp.path().join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        let data_dir = data_dir.canonicalize().unwrap();
        let fake = FakeDriver::new(Arc::new(ImageLibrary::at(&data_dir)));
        let mut config = test_config(&data_dir, LocalNode::Driver(fake.clone()));
        configure(&mut config);
        let plane = Plane::open(config).await.expect("the test plane opens");
        let url = format!("http://{}", plane.local_addr().unwrap());
        let router = plane
            .router()
            .layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            let _ = plane
                .serve(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        let store = Store::open_sqlite(&data_dir.join("porthole.db"))
            .await
            .unwrap();
        TestApp {
            router,
            url,
            fake,
            store,
            data_dir,
            stop: Some(stop),
            serving: Some(serving),
            _temp: temp,
        }
    }

    /// Hands `request` to the router, in process.
    pub async fn send(&self, request: Request<Body>) -> axum::response::Response {
        self.router.clone().oneshot(request).await.unwrap()
    }

    /// Sends `method path` with `token` (bearer) and a JSON `body`; returns the status and
    /// the JSON answer (`null` for an empty one).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.send(request).await;
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!("not JSON ({status}): {}", String::from_utf8_lossy(&bytes))
            })
        };
        (status, value)
    }

    /// Logs `username` in through the router and returns their bearer token.
    pub async fn token(&self, username: &str, password: &str) -> String {
        let body = serde_json::json!({ "username": username, "password": password });
        let (status, login) = self
            .call(Method::POST, "/api/v1/login", None, Some(&body))
            .await;
        assert_eq!(status, StatusCode::OK, "{login}");
        login["token"].as_str().unwrap().to_owned()
    }

    /// A new member `username` (password `USERNAME-password`), and their bearer token.
    pub async fn member_token(&self, username: &str) -> String {
        let admin = self.token("admin", ADMIN_PASSWORD).await;
        let body = serde_json::json!({
            "username": username,
            "password": format!("{username}-password"),
            "role": "member",
        });
        let (status, created) = self
            .call(Method::POST, "/api/v1/users", Some(&admin), Some(&body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        self.token(username, &format!("{username}-password")).await
    }

    /// A template called `name` (1 GiB, raw), approved for members or not: a row and its
    /// disk file, as an import leaves them.
    pub async fn template(&self, name: &str, approved: bool) -> TemplateId {
        let id = TemplateId::random();
        let dir = self.data_dir.join("templates").join(id.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("disk"), b"a raw disk").unwrap();
        let record = TemplateRecord {
            id,
            name: name.into(),
            disk_format: DiskFormat::Raw,
            virtual_size: 1 << 30,
            file_size: 10,
            sha256: "0".repeat(64),
            kernel_sha256: None,
            initrd_sha256: None,
            cmdline: None,
            created_at: 0,
            approved,
            on_node: None,
        };
        self.store.insert_template(&record).await.unwrap();
        id
    }

    /// An ISO called `name`, approved for members or not.
    pub async fn iso(&self, name: &str, approved: bool) -> IsoId {
        let id = IsoId::random();
        std::fs::write(
            self.data_dir.join("isos").join(format!("{id}.iso")),
            b"an installer",
        )
        .unwrap();
        let record = IsoRecord {
            id,
            name: name.into(),
            file_size: 12,
            sha256: "0".repeat(64),
            created_at: 0,
            approved,
        };
        self.store.insert_iso(&record).await.unwrap();
        id
    }

    /// Waits for job `id` to end, and returns it.
    pub async fn finish(&self, token: &str, id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + JOB_TIMEOUT;
        loop {
            let (status, job) = self
                .call(
                    Method::GET,
                    &format!("/api/v1/jobs/{id}"),
                    Some(token),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{job}");
            if matches!(job["state"].as_str(), Some("succeeded" | "failed")) {
                return job;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {id} did not end: {job}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Creates VM `name` from template `template` as `token`'s user, and waits until it
    /// runs; returns the VM.
    pub async fn running_vm(&self, token: &str, name: &str, template: &str) -> Value {
        let body = serde_json::json!({
            "name": name, "template": template, "cores": 1, "memory_mib": 256, "disk_gib": 1,
        });
        let (status, created) = self
            .call(Method::POST, "/api/v1/vms", Some(token), Some(&body))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{created}");
        let job = self
            .finish(token, created["job"]["id"].as_str().unwrap())
            .await;
        assert_eq!(job["state"], "succeeded", "{job}");
        let vm = created["vm"]["id"].as_str().unwrap();
        assert_eq!(
            self.fake.power(vm.parse().unwrap()),
            Some(PowerState::Running)
        );
        let (_, vm) = self
            .call(Method::GET, &format!("/api/v1/vms/{vm}"), Some(token), None)
            .await;
        vm
    }

    /// The files under the data directory's `vms/`: none, with a fake node.
    pub fn vm_files(&self) -> Vec<PathBuf> {
        crate::server::files_under(&self.data_dir.join("vms"))
    }
}

impl Served for TestApp {
    fn base_url(&self) -> &str {
        &self.url
    }

    fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            serving.abort();
        }
    }
}
