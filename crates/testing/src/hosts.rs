//! Hosts for multi-host tests: network namespaces on one bridge, and `porthole agent`
//! processes running in them.
//!
//! [`Hosts`] makes a bridge in the test's own namespace and one namespace per host, each
//! joined to the bridge by a veth pair, all in a /24 of their own; dropping it deletes them.
//! Taking a host's link down cuts it off without a single RST, as a pulled cable does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::server::{porthole_in, qemu_processes};

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Network namespaces on one bridge.
#[derive(Debug)]
pub struct Hosts {
    tag: String,
    subnet: String,
    count: usize,
}

impl Hosts {
    /// `count` hosts, each reachable from the test and from each other.
    pub fn create(count: usize) -> Hosts {
        let pid = std::process::id();
        let hosts = Hosts {
            tag: format!("ph{}", pid % 100_000),
            subnet: format!("10.{}.{}", 100 + pid % 100, (pid / 100) % 250),
            count,
        };
        let bridge = hosts.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}.1/24", hosts.subnet),
            "dev",
            &bridge,
        ]);
        ip(&["link", "set", &bridge, "up"]);
        for i in 0..count {
            let (netns, outside, inside) =
                (hosts.netns(i), hosts.link(i), format!("{}i{i}", hosts.tag));
            ip(&["netns", "add", &netns]);
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ]);
            ip(&["link", "set", &inside, "netns", &netns]);
            ip(&["link", "set", &outside, "master", &bridge]);
            ip(&["link", "set", &outside, "up"]);
            let address = format!("{}/24", hosts.ip(i));
            ip(&["-n", &netns, "addr", "add", &address, "dev", &inside]);
            ip(&["-n", &netns, "link", "set", &inside, "up"]);
            ip(&["-n", &netns, "link", "set", "lo", "up"]);
        }
        hosts
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    /// Host `i`'s link, on the bridge side.
    fn link(&self, i: usize) -> String {
        format!("{}o{i}", self.tag)
    }

    /// Host `i`'s namespace.
    pub fn netns(&self, i: usize) -> String {
        format!("{}-host{i}", self.tag)
    }

    /// Host `i`'s address.
    pub fn ip(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 2)
    }

    /// Cuts host `i` off the network.
    pub fn cut(&self, i: usize) {
        ip(&["link", "set", &self.link(i), "down"]);
    }

    /// Plugs host `i` back in.
    pub fn restore(&self, i: usize) {
        ip(&["link", "set", &self.link(i), "up"]);
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for i in 0..self.count {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.netns(i)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge()])
            .status();
    }
}

/// A `porthole agent` process.
#[derive(Debug)]
pub struct Agent {
    /// Its data directory.
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    child: Option<Child>,
    log: PathBuf,
    command: Vec<String>,
    netns: Option<String>,
}

impl Agent {
    /// Starts an agent with `args` after `porthole agent --accel tcg --data-dir DIR`, in
    /// namespace `netns` if given, with a fresh data directory.
    pub fn start(netns: Option<&str>, args: &[&str]) -> Agent {
        let temp = tempfile::Builder::new()
            .prefix("pa")
            .tempdir_in("/tmp")
            .unwrap();
        let data_dir = temp.path().join("d");
        Self::launched(
            data_dir,
            temp.path().join("agent.log"),
            Some(temp),
            netns,
            args,
        )
    }

    /// Starts an agent on an existing data directory (e.g. a copy of another's).
    pub fn start_in(data_dir: &Path, netns: Option<&str>, args: &[&str]) -> Agent {
        let log = data_dir.with_extension("log");
        Self::launched(data_dir.to_owned(), log, None, netns, args)
    }

    fn launched(
        data_dir: PathBuf,
        log: PathBuf,
        temp: Option<tempfile::TempDir>,
        netns: Option<&str>,
        args: &[&str],
    ) -> Agent {
        let mut agent = Agent {
            data_dir,
            log,
            _temp: temp,
            child: None,
            command: args.iter().map(|a| (*a).to_owned()).collect(),
            netns: netns.map(str::to_owned),
        };
        agent.launch(&[]);
        agent
    }

    /// Starts it again with `args` instead (after [`Agent::kill9`]).
    pub fn relaunch(&mut self, args: &[&str]) {
        self.launch(args);
    }

    fn launch(&mut self, replacement: &[&str]) {
        if !replacement.is_empty() {
            self.command = replacement.iter().map(|a| (*a).to_owned()).collect();
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = porthole_in(self.netns.as_deref())
            .args(["agent", "--accel", "tcg", "--data-dir"])
            .arg(&self.data_dir)
            .args(&self.command)
            .env("PORTHOLE_LOG", "info,porthole_agent=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until it serves, or panics with its log if it exits.
    pub async fn serving(&mut self) {
        let started = Instant::now();
        while !self.log().contains("the agent is serving") {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("porthole agent exited with {status}:\n{}", self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the agent did not start:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for it to exit, and returns how with its log.
    pub async fn exit(&mut self) -> (ExitStatus, String) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return (status, self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the agent did not exit:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills it at once; its QEMU processes keep running.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
        let marker = self.data_dir.to_string_lossy().into_owned();
        for (pid, command) in qemu_processes() {
            if command.contains(&marker) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}
