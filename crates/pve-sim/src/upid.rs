//! Proxmox task ids (UPIDs): `UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{type}:{id}:{user}:`.

use std::fmt;

/// A Proxmox unique process id, naming one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upid {
    /// The node the task runs on.
    pub node: String,
    /// The worker's process id.
    pub pid: u32,
    /// The worker's process start time, in clock ticks.
    pub pstart: u64,
    /// The task's start time, in seconds since the epoch.
    pub starttime: i64,
    /// The task type, e.g. `qmstart`.
    pub kind: String,
    /// The task's object id, usually the VM id (may be empty).
    pub id: String,
    /// The user (or token) who started it.
    pub user: String,
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UPID:{}:{:08X}:{:08X}:{:08X}:{}:{}:{}:",
            self.node, self.pid, self.pstart, self.starttime, self.kind, self.id, self.user
        )
    }
}

impl Upid {
    /// Parses a UPID string; `None` if it is not one.
    pub fn parse(s: &str) -> Option<Upid> {
        let rest = s.strip_prefix("UPID:")?.strip_suffix(':')?;
        let parts: Vec<&str> = rest.splitn(7, ':').collect();
        let [node, pid, pstart, starttime, kind, id, user] = parts.as_slice() else {
            return None;
        };
        Some(Upid {
            node: (*node).to_owned(),
            pid: u32::from_str_radix(pid, 16).ok()?,
            pstart: u64::from_str_radix(pstart, 16).ok()?,
            starttime: i64::from_str_radix(starttime, 16).ok()?,
            kind: (*kind).to_owned(),
            id: (*id).to_owned(),
            user: (*user).to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_like_pve() {
        let upid = Upid {
            node: "pve1".into(),
            pid: 0x1a2b,
            pstart: 0x3c4d5e,
            starttime: 0x6500_0000,
            kind: "qmstart".into(),
            id: "100".into(),
            user: "root@pam".into(),
        };
        let s = upid.to_string();
        assert_eq!(
            s,
            "UPID:pve1:00001A2B:003C4D5E:65000000:qmstart:100:root@pam:"
        );
        assert_eq!(Upid::parse(&s), Some(upid));
        let tok = "UPID:pve2:00000001:00000002:00000003:vncproxy:101:a@pve!t:";
        assert_eq!(Upid::parse(tok).map(|u| u.user), Some("a@pve!t".to_owned()));
        assert_eq!(Upid::parse("UPID:bad"), None);
    }
}
