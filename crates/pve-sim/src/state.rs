//! The simulated cluster: nodes, VMs with their configs, pools, tasks and open console
//! listeners, behind one lock that is never held across an await.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::auth::AccessControl;
use crate::backend::{Backend, PowerState, VmSpec};
use crate::clock::Clock;
use crate::upid::Upid;

/// A simulated PVE node.
#[derive(Clone, Debug)]
pub struct Node {
    /// Node name.
    pub name: String,
    /// Memory in bytes.
    pub maxmem: u64,
    /// Memory used in bytes (excluding running VMs, which are added).
    pub mem: u64,
    /// CPU threads.
    pub maxcpu: u32,
    /// CPU load, 0..1.
    pub cpu: f64,
}

/// A simulated VM.
#[derive(Clone, Debug)]
pub struct Vm {
    /// The VM id.
    pub vmid: u32,
    /// The node it lives on.
    pub node: String,
    /// Its pool, if any.
    pub pool: Option<String>,
    /// The config keys and values, as in `/etc/pve/qemu-server/ID.conf`.
    pub config: BTreeMap<String, String>,
    /// Power state.
    pub status: PowerState,
    /// When it was last started (sim clock), for `uptime`.
    pub started_at: Option<i64>,
    /// Whether it is a template.
    pub template: bool,
}

impl Vm {
    /// The VM's name (config `name`, else `VM ID`).
    pub fn name(&self) -> String {
        self.config
            .get("name")
            .cloned()
            .unwrap_or_else(|| format!("VM {}", self.vmid))
    }

    /// Memory in MiB.
    pub fn memory_mib(&self) -> u64 {
        self.config
            .get("memory")
            .and_then(|m| m.parse().ok())
            .unwrap_or(512)
    }

    /// Cores × sockets.
    pub fn cpus(&self) -> u32 {
        let get = |k: &str| {
            self.config
                .get(k)
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(1)
        };
        get("cores") * get("sockets")
    }

    /// The disk size in bytes, from `scsi0`/`virtio0`/... `size=NG`.
    pub fn disk_bytes(&self) -> u64 {
        self.config
            .iter()
            .filter(|(k, v)| is_disk_key(k) && !v.contains("media=cdrom"))
            .filter_map(|(_, v)| v.split(',').find_map(|p| p.strip_prefix("size=")))
            .map(parse_size)
            .sum()
    }

    /// What the backend needs.
    pub fn spec(&self) -> VmSpec {
        VmSpec {
            name: self.name(),
            memory: self.memory_mib(),
            cores: self.cpus(),
        }
    }
}

/// Whether a config key names a disk slot.
pub fn is_disk_key(key: &str) -> bool {
    ["ide", "sata", "scsi", "virtio", "efidisk", "tpmstate"]
        .iter()
        .any(|p| {
            key.strip_prefix(p)
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        })
}

/// Parses `32G`, `512M`, `1T` or bytes.
pub fn parse_size(s: &str) -> u64 {
    let (num, mult) = match s.chars().last() {
        Some('K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        Some('T') => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    num.parse::<u64>().unwrap_or(0) * mult
}

/// A pool.
#[derive(Clone, Debug, Default)]
pub struct Pool {
    /// Its comment.
    pub comment: Option<String>,
}

/// A task (worker) and its outcome.
#[derive(Clone, Debug)]
pub struct Task {
    /// Its UPID.
    pub upid: Upid,
    /// `None` while running, else the exit status (`OK`, an error, `WARNINGS: n`).
    pub exitstatus: Option<String>,
    /// Log lines.
    pub log: Vec<String>,
}

/// What a console listener proxies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleKind {
    /// VNC; the client must authenticate with this password.
    Vnc {
        /// The RFB password (the generated one, else the console ticket).
        password: String,
    },
    /// A serial terminal (termproxy).
    Term,
}

/// An open console listener made by vncproxy/termproxy, waiting for one connection.
#[derive(Clone, Debug)]
pub struct ConsoleListener {
    /// The VM.
    pub vmid: u32,
    /// The "port" handed to the client.
    pub port: u16,
    /// The console ticket.
    pub ticket: String,
    /// Who asked for it.
    pub authid: String,
    /// What it proxies to.
    pub kind: ConsoleKind,
    /// When it was opened (sim clock).
    pub created: i64,
    /// The worker task's UPID.
    pub upid: String,
}

/// Everything mutable.
#[derive(Debug, Default)]
pub struct State {
    /// Users, tokens and ACLs.
    pub access: AccessControl,
    /// Nodes by name.
    pub nodes: BTreeMap<String, Node>,
    /// VMs by id.
    pub vms: BTreeMap<u32, Vm>,
    /// Pools by id.
    pub pools: BTreeMap<String, Pool>,
    /// Tasks by UPID string.
    pub tasks: HashMap<String, Task>,
    /// Console listeners waiting for their connection.
    pub consoles: Vec<ConsoleListener>,
    /// The next worker pid.
    pub next_pid: u32,
    /// Every terminal size a termproxy client sent, by VMID, oldest first.
    pub terminal_sizes: Vec<(u32, u16, u16)>,
}

/// How long a console listener waits for its connection, in seconds (PVE: 10 s).
pub const CONSOLE_ACCEPT_WINDOW: i64 = 10;

/// The simulator: state, clock, backend and timing.
#[derive(Debug)]
pub struct Sim {
    state: Mutex<State>,
    /// The injectable clock.
    pub clock: Clock,
    /// What runs the guests.
    pub backend: Arc<dyn Backend>,
    /// The minimum time a task runs.
    pub task_duration: Duration,
    /// The server certificate (PEM), reported by vncproxy.
    pub cert_pem: String,
}

impl Sim {
    /// A simulator over `state`.
    pub fn new(
        state: State,
        clock: Clock,
        backend: Arc<dyn Backend>,
        task_duration: Duration,
        cert_pem: String,
    ) -> Self {
        Self {
            state: Mutex::new(state),
            clock,
            backend,
            task_duration,
            cert_pem,
        }
    }

    /// Locks the state (a poisoned lock is recovered: the state stays usable for tests).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a running task and returns its UPID.
    pub fn new_task(&self, node: &str, kind: &str, id: &str, authid: &str) -> String {
        let now = self.clock.now();
        let mut st = self.lock();
        st.next_pid = st.next_pid.wrapping_add(1).max(1000);
        let upid = Upid {
            node: node.to_owned(),
            pid: st.next_pid,
            pstart: u64::from(st.next_pid) * 7 + 123_456,
            starttime: now,
            kind: kind.to_owned(),
            id: id.to_owned(),
            user: authid.to_owned(),
        };
        let s = upid.to_string();
        st.tasks.insert(
            s.clone(),
            Task {
                upid,
                exitstatus: None,
                log: Vec::new(),
            },
        );
        s
    }

    /// Marks a task finished.
    pub fn finish_task(&self, upid: &str, exitstatus: impl Into<String>) {
        let exit = exitstatus.into();
        let mut st = self.lock();
        if let Some(task) = st.tasks.get_mut(upid)
            && task.exitstatus.is_none()
        {
            if exit != "OK" {
                task.log.push(format!("TASK ERROR: {exit}"));
            } else {
                task.log.push("TASK OK".to_owned());
            }
            task.exitstatus = Some(exit);
        }
    }

    /// Runs `work` as a task: it takes at least `task_duration`, and its error (if any)
    /// becomes the exit status.
    pub fn spawn_task<F>(
        self: &Arc<Self>,
        node: &str,
        kind: &str,
        id: &str,
        authid: &str,
        work: F,
    ) -> String
    where
        F: Future<Output = Result<(), String>> + Send + 'static,
    {
        let upid = self.new_task(node, kind, id, authid);
        let sim = Arc::clone(self);
        let task_upid = upid.clone();
        tokio::spawn(async move {
            let (result, ()) = tokio::join!(work, tokio::time::sleep(sim.task_duration));
            sim.finish_task(&task_upid, result.err().unwrap_or_else(|| "OK".to_owned()));
        });
        upid
    }
}
