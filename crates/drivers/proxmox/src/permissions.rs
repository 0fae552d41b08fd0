//! The privileges a user holds, as `GET /access/permissions` reports them, and how PVE
//! applies them to a path.
//!
//! The answer maps ACL paths (`/`, `/vms`, `/vms/100`, `/pool/alice`…) to the privileges
//! the user holds there, each with a flag: `1` if it propagates to paths below, `0` if it
//! holds on that path only. PVE computes each listed path's set including what it
//! inherits, and a deeper ACL overrides what a shallower one grants. So [`Permissions::has`]:
//! 1. if the path itself is listed, answers from that entry alone;
//! 2. otherwise walks up (`/vms/100` → `/vms` → `/`) to the nearest listed ancestor and
//!    grants the privilege only if it is there with the propagate flag.
//!
//! A VM is also reachable through its pool: [`Permissions::has_on_vm`] grants a privilege
//! on `/vms/{vmid}` or, for a VM in a pool, on `/pool/{pool}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::lenient;

/// Common privilege names.
pub mod privs {
    /// See a VM and its configuration (the accessor lists VMs with it).
    pub const VM_AUDIT: &str = "VM.Audit";
    /// Open a VM's console.
    pub const VM_CONSOLE: &str = "VM.Console";
    /// Start, stop, reset… a VM.
    pub const VM_POWER_MGMT: &str = "VM.PowerMgmt";
    /// Create or delete VMs.
    pub const VM_ALLOCATE: &str = "VM.Allocate";
    /// Clone a VM or template.
    pub const VM_CLONE: &str = "VM.Clone";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Propagates(bool);

impl<'de> Deserialize<'de> for Propagates {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient::flag(d).map(Propagates)
    }
}

/// `GET /access/permissions`: ACL path → privilege → whether it propagates.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Permissions {
    paths: BTreeMap<String, BTreeMap<String, Propagates>>,
}

fn normalize(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    let mut out = String::with_capacity(trimmed.len() + 1);
    for segment in trimmed.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => path.get(..i),
        None => None,
    }
}

impl Permissions {
    /// Builds a permission set from `(path, privilege, propagates)` triples; for tests and
    /// fakes.
    #[must_use]
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str, bool)>) -> Self {
        let mut paths: BTreeMap<String, BTreeMap<String, Propagates>> = BTreeMap::new();
        for (path, privilege, propagates) in entries {
            paths
                .entry(normalize(path))
                .or_default()
                .insert(privilege.to_owned(), Propagates(propagates));
        }
        Self { paths }
    }

    /// Whether the user holds `privilege` on `path`, following PVE's inheritance (see the
    /// module documentation).
    #[must_use]
    pub fn has(&self, path: &str, privilege: &str) -> bool {
        let path = normalize(path);
        if let Some(entry) = self.paths.get(&path) {
            return entry.contains_key(privilege);
        }
        let mut current = parent(&path);
        while let Some(p) = current {
            if let Some(entry) = self.paths.get(p) {
                return entry.get(privilege).is_some_and(|Propagates(yes)| *yes);
            }
            current = parent(p);
        }
        false
    }

    /// Whether the user holds `privilege` on VM `vmid`, directly or through the pool the
    /// VM belongs to.
    #[must_use]
    pub fn has_on_vm(&self, vmid: u32, pool: Option<&str>, privilege: &str) -> bool {
        self.has(&format!("/vms/{vmid}"), privilege)
            || pool.is_some_and(|p| !p.is_empty() && self.has(&format!("/pool/{p}"), privilege))
    }

    /// The listed paths, for diagnostics.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.paths.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::privs::*;
    use super::*;

    #[test]
    fn decodes_pve_answer_with_int_and_string_flags() {
        let p: Permissions = serde_json::from_str(
            r#"{"/": {"Sys.Audit": 1}, "/vms": {"VM.Audit": 1, "VM.Console": 0},
                "/vms/100": {"VM.Audit": "1", "VM.Console": 1}}"#,
        )
        .unwrap();
        assert_eq!(p.paths().count(), 3);
        assert!(p.has("/vms/100", VM_CONSOLE));
    }

    #[test]
    fn exact_path_and_propagation() {
        let p = Permissions::from_entries([
            ("/", "Sys.Audit", true),
            ("/vms", VM_AUDIT, true),
            ("/vms", VM_CONSOLE, false),
            ("/vms/200", VM_CONSOLE, false),
        ]);
        // Propagated from /vms.
        assert!(p.has("/vms/100", VM_AUDIT));
        // On /vms only, not below.
        assert!(p.has("/vms", VM_CONSOLE));
        assert!(!p.has("/vms/100", VM_CONSOLE));
        // Exact entry: answers alone, and it lacks VM.Audit (a deeper ACL overrides).
        assert!(p.has("/vms/200", VM_CONSOLE));
        assert!(!p.has("/vms/200", VM_AUDIT));
        // `/` propagates to everything not listed more specifically.
        assert!(p.has("/nodes/pve1", "Sys.Audit"));
        assert!(!p.has("/vms/100", "Sys.Audit"));
        // Trailing slashes and doubled slashes normalize.
        assert!(p.has("/vms/100/", VM_AUDIT));
        assert!(p.has("//vms//100", VM_AUDIT));
    }

    #[test]
    fn root_propagation_and_empty_set() {
        let root = Permissions::from_entries([("/", VM_CONSOLE, true)]);
        assert!(root.has("/vms/100", VM_CONSOLE));
        assert!(root.has("/", VM_CONSOLE));
        let not_propagated = Permissions::from_entries([("/", VM_CONSOLE, false)]);
        assert!(!not_propagated.has("/vms/100", VM_CONSOLE));
        assert!(!Permissions::default().has("/vms/100", VM_AUDIT));
    }

    #[test]
    fn pools_grant_their_members() {
        let p = Permissions::from_entries([("/pool/alice", VM_AUDIT, true)]);
        assert!(p.has_on_vm(100, Some("alice"), VM_AUDIT));
        assert!(!p.has_on_vm(100, Some("bob"), VM_AUDIT));
        assert!(!p.has_on_vm(100, None, VM_AUDIT));
        assert!(!p.has_on_vm(100, Some("alice"), VM_CONSOLE));
    }
}
