//! PVE worker tasks: their ids (UPIDs), their status, and what their exit status means.
//!
//! A long operation (start, clone, delete…) answers at once with a UPID and runs in a
//! worker on the node. To learn its outcome:
//! 1. parse the UPID ([`Upid::parse`]) to find the node that runs it;
//! 2. poll `GET /nodes/{node}/tasks/{upid}/status` until `status` is `stopped`
//!    ([`crate::Client::wait_task`] does this with an interval and a timeout);
//! 3. read `exitstatus`: `OK` and `WARNINGS: n` are success, anything else is the error
//!    message ([`TaskOutcome`]).
//!
//! The UPID format is PVE's (`PVE::Tools::upid_decode`):
//! `UPID:{node}:{pid:08X}:{pstart:08X or 9 hex}:{starttime:08X}:{type}:{id}:{user}:`, where
//! the node is a host name, `type` and `user` are non-empty and `id` may be empty, and none
//! of the last three holds `:`, `/` or whitespace.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::lenient;

/// A parsed PVE task id. Displays (and serializes) as the original string.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Upid {
    raw: String,
    node: String,
    pid: u32,
    pstart: u64,
    starttime: u32,
    task_type: String,
    id: String,
    user: String,
}

/// Why a string is not a UPID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Proxmox VE task id (UPID:node:pid:pstart:starttime:type:id:user:): {reason}")]
pub struct UpidError {
    reason: &'static str,
}

fn fail(reason: &'static str) -> UpidError {
    UpidError { reason }
}

fn is_node_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

fn hex_field(s: &str, lengths: std::ops::RangeInclusive<usize>) -> Option<u64> {
    if lengths.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        u64::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

fn is_word(s: &str) -> bool {
    s.chars()
        .all(|c| c != ':' && c != '/' && !c.is_whitespace())
}

impl Upid {
    /// Parses a UPID; never panics, whatever the input.
    pub fn parse(s: &str) -> Result<Self, UpidError> {
        let body = s
            .strip_prefix("UPID:")
            .ok_or_else(|| fail("it must start with `UPID:`"))?;
        let body = body
            .strip_suffix(':')
            .ok_or_else(|| fail("it must end with `:`"))?;
        let parts: Vec<&str> = body.split(':').collect();
        let [node, pid, pstart, starttime, task_type, id, user] = parts.as_slice() else {
            return Err(fail("it must have exactly eight `:`-separated fields"));
        };
        if !is_node_name(node) {
            return Err(fail("the node name is not a host name"));
        }
        let pid = hex_field(pid, 8..=8)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| fail("the pid must be 8 hex digits"))?;
        let pstart =
            hex_field(pstart, 8..=9).ok_or_else(|| fail("pstart must be 8 or 9 hex digits"))?;
        let starttime = hex_field(starttime, 8..=8)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| fail("the start time must be 8 hex digits"))?;
        if task_type.is_empty() || user.is_empty() {
            return Err(fail("the type and user must not be empty"));
        }
        if !is_word(task_type) || !is_word(id) || !is_word(user) {
            return Err(fail("type, id and user must not contain `/` or whitespace"));
        }
        Ok(Self {
            raw: s.to_owned(),
            node: (*node).to_owned(),
            pid,
            pstart,
            starttime,
            task_type: (*task_type).to_owned(),
            id: (*id).to_owned(),
            user: (*user).to_owned(),
        })
    }

    /// The UPID as PVE wrote it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The node that runs the task; its status must be read there.
    #[must_use]
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The worker's process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The worker's process start time, in clock ticks since boot.
    #[must_use]
    pub fn pstart(&self) -> u64 {
        self.pstart
    }

    /// When the task started, in seconds since the Unix epoch.
    #[must_use]
    pub fn starttime(&self) -> u32 {
        self.starttime
    }

    /// The task type (`qmstart`, `qmclone`, `vncproxy`…).
    #[must_use]
    pub fn task_type(&self) -> &str {
        &self.task_type
    }

    /// The object the task works on, usually a VMID; may be empty.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The user (or `user!token`) that started the task.
    #[must_use]
    pub fn user(&self) -> &str {
        &self.user
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl fmt::Debug for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Upid({})", self.raw)
    }
}

impl FromStr for Upid {
    type Err = UpidError;

    fn from_str(s: &str) -> Result<Self, UpidError> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for Upid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Upid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

/// Whether a task still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskRunState {
    /// The worker is still running.
    Running,
    /// The worker has ended; `exitstatus` says how.
    Stopped,
}

/// `GET /nodes/{node}/tasks/{upid}/status`.
#[derive(Debug, Clone, Deserialize)]
pub struct TaskStatus {
    /// Running or stopped.
    pub status: TaskRunState,
    /// Set once stopped: `OK`, `WARNINGS: n`, or an error message.
    #[serde(default)]
    pub exitstatus: Option<String>,
    /// The task type.
    #[serde(default, rename = "type")]
    pub task_type: Option<String>,
    /// The task's object id.
    #[serde(default, deserialize_with = "lenient::opt_string_lenient")]
    pub id: Option<String>,
    /// The user who started it.
    #[serde(default)]
    pub user: Option<String>,
    /// The node that runs it.
    #[serde(default)]
    pub node: Option<String>,
    /// The worker's pid.
    #[serde(default, deserialize_with = "lenient::opt_u32_lenient")]
    pub pid: Option<u32>,
    /// Start time, seconds since the epoch.
    #[serde(default, deserialize_with = "lenient::opt_u64_lenient")]
    pub starttime: Option<u64>,
}

impl TaskStatus {
    /// The outcome, once the task has stopped; `None` while it runs.
    #[must_use]
    pub fn outcome(&self) -> Option<TaskOutcome> {
        match self.status {
            TaskRunState::Running => None,
            TaskRunState::Stopped => Some(TaskOutcome::from_exitstatus(
                self.exitstatus
                    .as_deref()
                    .unwrap_or("unknown (no exit status reported)"),
            )),
        }
    }
}

/// How a stopped task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome {
    /// `OK`.
    Ok,
    /// `WARNINGS: n`: it succeeded and logged `n` warnings.
    Warnings(u32),
    /// Anything else: the exit status is PVE's error message.
    Failed(String),
}

impl TaskOutcome {
    /// Classifies an `exitstatus`.
    #[must_use]
    pub fn from_exitstatus(exitstatus: &str) -> Self {
        let s = exitstatus.trim();
        if s == "OK" {
            return Self::Ok;
        }
        if let Some(n) = s.strip_prefix("WARNINGS:")
            && let Ok(n) = n.trim().parse::<u32>()
        {
            return Self::Warnings(n);
        }
        Self::Failed(s.to_owned())
    }

    /// Whether the task succeeded (with or without warnings).
    #[must_use]
    pub fn is_success(&self) -> bool {
        !matches!(self, Self::Failed(_))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const START: &str = "UPID:pve1:000A1B2C:0012D687:6650F00D:qmstart:100:root@pam:";

    #[test]
    fn parses_a_real_upid() {
        let u = Upid::parse(START).unwrap();
        assert_eq!(u.node(), "pve1");
        assert_eq!(u.pid(), 0x000A_1B2C);
        assert_eq!(u.pstart(), 0x0012_D687);
        assert_eq!(u.starttime(), 0x6650_F00D);
        assert_eq!(u.task_type(), "qmstart");
        assert_eq!(u.id(), "100");
        assert_eq!(u.user(), "root@pam");
        assert_eq!(u.to_string(), START);
    }

    #[test]
    fn accepts_tokens_empty_ids_and_long_pstart() {
        let u = Upid::parse("UPID:node-2:00001234:123456789:6650F00D:vncproxy::porthole@pve!main:")
            .unwrap();
        assert_eq!(u.id(), "");
        assert_eq!(u.user(), "porthole@pve!main");
        assert_eq!(u.pstart(), 0x1_2345_6789);
    }

    #[test]
    fn rejects_malformed_upids() {
        for bad in [
            "",
            "UPID:",
            "UPID:pve1:000A1B2C:0012D687:6650F00D:qmstart:100:root@pam",
            "upid:pve1:000A1B2C:0012D687:6650F00D:qmstart:100:root@pam:",
            "UPID:-pve:000A1B2C:0012D687:6650F00D:qmstart:100:root@pam:",
            "UPID:pve1:A1B2C:0012D687:6650F00D:qmstart:100:root@pam:",
            "UPID:pve1:000A1B2C:0012D687:6650F00D::100:root@pam:",
            "UPID:pve1:000A1B2C:0012D687:6650F00D:qmstart:100::",
            "UPID:pve1:000A1B2C:0012D687:6650F00D:qm start:100:root@pam:",
            "UPID:pve1:000A1B2C:0012D687:6650F00D:qmstart:1/0:root@pam:",
            "UPID:pve1:000A1B2C:0012D687:6650F00D:qmstart:100:root@pam:extra:",
            "UPID:pve1:0000000G:0012D687:6650F00D:qmstart:100:root@pam:",
            "UPID:pvé:000A1B2C:0012D687:6650F00D:qmstart:100:root@pam:",
        ] {
            assert!(Upid::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn exit_statuses() {
        assert_eq!(TaskOutcome::from_exitstatus("OK"), TaskOutcome::Ok);
        assert_eq!(
            TaskOutcome::from_exitstatus("WARNINGS: 2"),
            TaskOutcome::Warnings(2)
        );
        assert_eq!(
            TaskOutcome::from_exitstatus("WARNINGS:1"),
            TaskOutcome::Warnings(1)
        );
        let failed = TaskOutcome::from_exitstatus("VM 100 already running");
        assert_eq!(failed, TaskOutcome::Failed("VM 100 already running".into()));
        assert!(!failed.is_success());
        assert!(!TaskOutcome::from_exitstatus("WARNINGS: many").is_success());
        assert!(!TaskOutcome::from_exitstatus("unexpected status").is_success());
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = Upid::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_upid_like_strings(s in "UPID:[a-zA-Z0-9:\\-/ é!@]{0,60}:?") {
            let _ = Upid::parse(&s);
        }

        #[test]
        fn well_formed_upids_round_trip(
            node in "[a-z][a-z0-9\\-]{0,10}[a-z0-9]",
            pid in any::<u32>(),
            pstart in 0u64..0xF_FFFF_FFFF,
            starttime in any::<u32>(),
            task_type in "[a-z]{1,10}",
            id in "[0-9]{0,6}",
            user in "[a-z]{1,8}@(pam|pve)(![a-z]{1,5})?",
        ) {
            let raw = format!("UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{task_type}:{id}:{user}:");
            let u = Upid::parse(&raw).unwrap();
            prop_assert_eq!(u.node(), node.as_str());
            prop_assert_eq!(u.pid(), pid);
            prop_assert_eq!(u.pstart(), pstart);
            prop_assert_eq!(u.starttime(), starttime);
            prop_assert_eq!(u.task_type(), task_type.as_str());
            prop_assert_eq!(u.id(), id.as_str());
            prop_assert_eq!(u.user(), user.as_str());
            prop_assert_eq!(u.as_str(), raw.as_str());
        }
    }
}
