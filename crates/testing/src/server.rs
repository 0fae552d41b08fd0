//! The real-binary harness: `porthole serve` processes, each with its own data directory,
//! driving real QEMU guests under TCG, and the helpers tests use against them (jobs,
//! consoles, QMP straight to QEMU, API errors, members).
//!
//! A [`Server`] kills its plane and every QEMU process under its data directory when
//! dropped, so a failing test leaves nothing running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use porthole_api::client::Client;
use porthole_api::{CreateVmRequest, Job, Vm};
use porthole_core::{JobState, VmId};

use crate::guest::{guest_dir, make_iso};
use crate::porthole_binary;

/// The admin password every test server starts with.
pub const ADMIN_PASSWORD: &str = "test-admin-password";

/// `porthole`, run inside network namespace `netns` if given (`ip netns exec` execs it, so
/// the child's pid is porthole's own).
pub fn porthole_in(netns: Option<&str>) -> Command {
    match netns {
        Some(netns) => {
            let mut command = Command::new("ip");
            command
                .args(["netns", "exec", netns])
                .arg(porthole_binary());
            command
        }
        None => Command::new(porthole_binary()),
    }
}

/// Makes a small ISO in `dir` (genisoimage, one README) and imports it as `name` with the
/// CLI; returns the ISO's path.
pub fn import_iso(server: &impl Served, token: &str, dir: &Path, name: &str) -> PathBuf {
    let iso = make_iso(dir, name, "PORTHOLE", &[("README", name)]);
    let (code, _, err) = server.cli(
        token,
        &["iso", "import", iso.to_str().unwrap(), "--name", name],
    );
    assert_eq!(code, 0, "{err}");
    iso
}

/// A plane the tests reach over HTTP: a real `porthole serve` ([`Server`]) or one in this
/// process ([`TestApp`](crate::app::TestApp)). The clients, metrics and CLI runs tests use
/// are the same for both.
#[expect(
    async_fn_in_trait,
    reason = "tests call these on concrete planes and never need the futures to be Send"
)]
pub trait Served {
    /// `http://HOST:PORT`.
    fn base_url(&self) -> &str;

    /// The plane's data directory; the CLI's configuration goes beside it.
    fn data_dir(&self) -> &Path;

    /// A client that is not logged in.
    fn anonymous(&self) -> Client {
        Client::new(self.base_url()).unwrap()
    }

    /// A fresh bearer token for `admin`.
    async fn admin_token(&self) -> String {
        self.anonymous()
            .login("admin", ADMIN_PASSWORD)
            .await
            .unwrap()
            .token
    }

    /// A client logged in as `admin`.
    async fn admin(&self) -> Client {
        self.anonymous().with_token(self.admin_token().await)
    }

    /// A client logged in as `username`.
    async fn login(&self, username: &str, password: &str) -> Client {
        let login = self.anonymous().login(username, password).await.unwrap();
        self.anonymous().with_token(login.token)
    }

    /// The plane's Prometheus metrics as text.
    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base_url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one metric sample, e.g. `porthole_console_sessions_open{kind="vnc"}`.
    async fn metric(&self, sample: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|line| {
                line.strip_prefix(sample)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    /// Runs the CLI against this plane with `token`, returning (exit code, stdout, stderr).
    fn cli(&self, token: &str, args: &[&str]) -> (i32, String, String) {
        let output = Command::new(porthole_binary())
            .args(args)
            .env("PORTHOLE_URL", self.base_url())
            .env("PORTHOLE_TOKEN", token)
            .env(
                "PORTHOLE_CONFIG",
                self.data_dir().with_file_name("cli.toml"),
            )
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

impl Served for Server {
    fn base_url(&self) -> &str {
        &self.url
    }

    fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

/// A running `porthole serve`.
#[derive(Debug)]
pub struct Server {
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    child: Option<Child>,
    pub url: String,
    log: PathBuf,
    extra_args: Vec<String>,
    accel: String,
    /// The network namespace it runs in and the address it listens on there.
    netns: Option<(String, String)>,
    /// Where agents join, if it listens for them.
    pub agent_url: Option<String>,
}

impl Server {
    /// Starts a plane with the demo template, in a fresh data directory.
    pub async fn start() -> Server {
        Self::start_with(&[]).await
    }

    /// Starts a plane with extra `serve` arguments.
    pub async fn start_with(extra_args: &[&str]) -> Server {
        let accel = std::env::var("PORTHOLE_TEST_ACCEL").unwrap_or_else(|_| "tcg".into());
        Self::start_with_accel(&accel, extra_args).await
    }

    /// Starts a plane with `--accel accel` and extra `serve` arguments.
    pub async fn start_with_accel(accel: &str, extra_args: &[&str]) -> Server {
        Self::start_full(accel, None, extra_args).await
    }

    /// Starts a plane in network namespace `netns`, listening on `ip`.
    pub async fn start_in(netns: &str, ip: &str, extra_args: &[&str]) -> Server {
        let accel = std::env::var("PORTHOLE_TEST_ACCEL").unwrap_or_else(|_| "tcg".into());
        Self::start_full(&accel, Some((netns.to_owned(), ip.to_owned())), extra_args).await
    }

    async fn start_full(
        accel: &str,
        netns: Option<(String, String)>,
        extra_args: &[&str],
    ) -> Server {
        let temp = tempfile::Builder::new()
            .prefix("ph")
            .tempdir_in("/tmp")
            .unwrap();
        let mut server = Server {
            data_dir: temp.path().join("d"),
            log: temp.path().join("serve.log"),
            _temp: Some(temp),
            child: None,
            url: String::new(),
            extra_args: extra_args.iter().map(|a| (*a).to_owned()).collect(),
            accel: accel.to_owned(),
            netns,
            agent_url: None,
        };
        server.launch().await;
        server
    }

    async fn launch(&mut self) {
        let earlier_log = self.log().len();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let listen = match &self.netns {
            Some((_, ip)) => format!("{ip}:0"),
            None => "127.0.0.1:0".to_owned(),
        };
        let mut command = porthole_in(self.netns.as_ref().map(|(netns, _)| netns.as_str()));
        let child = command
            .args([
                "serve",
                "--listen",
                &listen,
                "--demo",
                "--accel",
                &self.accel,
            ])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--demo-guest")
            .arg(guest_dir())
            .args(["--shutdown-timeout", "20"])
            .args(&self.extra_args)
            .env("PORTHOLE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("PORTHOLE_LOG", "info,porthole=debug,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let log = self.log()[earlier_log..].to_owned();
            let serving = log
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("porthole: serving on "));
            if let Some(rest) = serving {
                self.url = rest.split_whitespace().next().unwrap().to_owned();
                self.agent_url = log
                    .lines()
                    .rev()
                    .find_map(|l| l.strip_prefix("porthole: agents join at "))
                    .map(str::to_owned);
                break;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("porthole serve exited with {status}:\n{log}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "serve did not start:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The plane's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9` the plane. QEMU processes live on.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts the plane again on the same data directory.
    pub async fn restart(&mut self) {
        self.kill9();
        self.launch().await;
    }

    /// Every file under the VMs directory.
    pub fn vm_files(&self) -> Vec<PathBuf> {
        files_under(&self.data_dir.join("vms"))
    }

    /// Pids of live QEMU processes that belong to this data directory.
    pub fn qemu_pids(&self) -> Vec<i32> {
        let marker = self.data_dir.to_string_lossy().into_owned();
        qemu_processes()
            .into_iter()
            .filter(|(_, cmd)| cmd.contains(&marker))
            .map(|(pid, _)| pid)
            .collect()
    }

    /// Pids of live QEMU processes running VM `id`.
    pub fn qemu_pids_of(&self, id: VmId) -> Vec<i32> {
        let marker = id.to_string();
        qemu_processes()
            .into_iter()
            .filter(|(_, cmd)| cmd.contains(&marker))
            .map(|(pid, _)| pid)
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        for pid in self.qemu_pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if std::thread::panicking() {
            eprintln!("--- porthole serve log ---\n{}", self.log());
        }
    }
}

/// Every file (not directory) under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.push(path.clone());
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Live (not zombie) QEMU processes, with their command lines joined by spaces.
pub fn qemu_processes() -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !cmd.split(' ').next().unwrap_or("").contains("qemu-system") {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .chars()
            .next();
        if state != Some('Z') {
            found.push((pid, cmd));
        }
    }
    found
}

/// A create request for the demo template.
pub fn demo_vm(name: &str) -> CreateVmRequest {
    CreateVmRequest::small(name, "demo")
}

/// Waits up to `timeout` for job `job` to finish.
pub async fn finish(client: &Client, job: &Job, timeout: Duration) -> Job {
    tokio::time::timeout(
        timeout,
        client.wait_for_job(job.id, Duration::from_millis(50), |_| {}),
    )
    .await
    .expect("job did not finish in time")
    .unwrap()
}

/// Waits for `job` and asserts it succeeded.
pub async fn succeed(client: &Client, job: &Job) -> Job {
    let job = finish(client, job, Duration::from_secs(90)).await;
    assert_eq!(
        job.state,
        JobState::Succeeded,
        "job failed: {:?}",
        job.error
    );
    job
}

/// Creates a demo VM and waits until it runs.
pub async fn running_vm(client: &Client, name: &str) -> Vm {
    let created = client.create_vm(&demo_vm(name)).await.unwrap();
    succeed(client, &created.job).await;
    client.vm(created.vm.id).await.unwrap()
}

/// Polls `check` every 100 ms until it returns `Some`, for up to `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the VM's serial console has shown `text`.
pub async fn console_shows(client: &Client, id: VmId, text: &str) -> String {
    eventually(
        Duration::from_secs(90),
        &format!("{text:?} on the serial console"),
        || async {
            let output = client.console_output(id).await.unwrap();
            output.contains(text).then_some(output)
        },
    )
    .await
}

/// Runs one QMP command on VM `id`'s monitor socket directly, independently of porthole,
/// and returns QEMU's reply line.
pub fn qmp(server: &Server, id: VmId, command: &serde_json::Value) -> String {
    use std::io::{BufRead, BufReader, Write};
    let socket = server
        .data_dir
        .join("vms")
        .join(id.to_string())
        .join("qmp.sock");
    let stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line).unwrap(); // greeting
    writeln!(writer, "{{\"execute\":\"qmp_capabilities\"}}\n{command}").unwrap();
    let mut returns = 0;
    while returns < 2 {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(!line.contains("\"error\""), "QMP: {line}");
        returns += usize::from(line.contains("\"return\""));
    }
    line
}

/// The text on the VM's VGA screen, read independently of porthole: QMP `pmemsave` dumps
/// the VGA text buffer (guest physical 0xB8000, character and attribute byte pairs).
pub fn vga_text(server: &Server, id: VmId) -> String {
    let dump = server.data_dir.join("vms").join(format!("{id}.vga"));
    let command = serde_json::json!({
        "execute": "pmemsave",
        "arguments": { "val": 0xB8000, "size": 4000, "filename": dump.to_string_lossy() },
    });
    qmp(server, id, &command);
    let bytes = std::fs::read(&dump).unwrap();
    std::fs::remove_file(&dump).unwrap();
    bytes.chunks(2).map(|pair| pair[0] as char).collect()
}

/// A PNG of the VM's screen taken by QEMU itself (QMP `screendump`), not through VNC.
pub fn screendump(server: &Server, id: VmId, path: &Path) {
    let command = serde_json::json!({
        "execute": "screendump",
        "arguments": { "filename": path.to_string_lossy(), "format": "png" },
    });
    qmp(server, id, &command);
}

/// Waits until the guest's serial shell has printed its prompt, so typed input reaches it.
/// (`porthole-guest ready` comes earlier, before init starts the shell; input that arrives
/// before the shell takes the terminal is flushed.)
pub async fn shell_ready(client: &Client, id: VmId) {
    console_shows(client, id, "porthole-guest:/# ").await;
}

/// The status, code, message and field of an API error; panics on any other failure.
pub fn api_error(
    error: porthole_api::client::ClientError,
) -> (u16, String, String, Option<String>) {
    match error {
        porthole_api::client::ClientError::Api {
            status,
            code,
            message,
            field,
        } => (status, code, message, field),
        other => panic!("expected an API error, got: {other}"),
    }
}

/// Makes a member account and returns a client logged in as them.
pub async fn member(server: &impl Served, admin: &Client, username: &str) -> Client {
    let password = format!("{username}-password");
    admin
        .create_user(&porthole_api::CreateUserRequest {
            username: username.into(),
            password: password.clone(),
            role: porthole_core::Role::Member,
            email: Some(format!("{username}@example.org")),
        })
        .await
        .unwrap();
    server.login(username, &password).await
}
