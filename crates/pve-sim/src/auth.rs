//! Users, API tokens, ACLs and the tickets PVE hands out: login tickets
//! (`PVE:user@realm:HEXTIME::SIG`), CSRF prevention tokens and console (VNC) tickets.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How long a login ticket lives, in seconds (PVE: 2 hours).
pub const TICKET_LIFETIME: i64 = 7200;
/// How far in the future a ticket's time may be (clock skew), in seconds.
pub const TICKET_MIN_AGE: i64 = -300;
/// How long a console ticket lives, in seconds (PVE: 40 s).
pub const VNC_TICKET_LIFETIME: i64 = 40;

/// Every privilege the simulator knows; `root@pam` holds all of them.
pub const ALL_PRIVILEGES: &[&str] = &[
    "Datastore.Allocate",
    "Datastore.AllocateSpace",
    "Datastore.Audit",
    "Pool.Allocate",
    "Pool.Audit",
    "Sys.Audit",
    "Sys.Console",
    "Sys.Modify",
    "VM.Allocate",
    "VM.Audit",
    "VM.Backup",
    "VM.Clone",
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Cloudinit",
    "VM.Config.Disk",
    "VM.Config.HWType",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.Console",
    "VM.Migrate",
    "VM.Monitor",
    "VM.PowerMgmt",
    "VM.Snapshot",
];

/// The privileges of PVE's `PVEVMUser` role, a handy set for tests.
pub const VM_USER: &[&str] = &["VM.Audit", "VM.Console", "VM.PowerMgmt", "VM.Config.CDROM"];

/// One ACL entry of one user: privileges on a path, optionally inherited below it.
#[derive(Clone, Debug)]
pub struct AclEntry {
    /// The ACL path, e.g. `/`, `/vms`, `/vms/100`, `/pool/alice`.
    pub path: String,
    /// The privileges granted.
    pub privs: BTreeSet<String>,
    /// Whether the entry applies to paths below `path`.
    pub propagate: bool,
}

/// A user account.
#[derive(Clone, Debug, Default)]
pub struct User {
    /// Password for `/access/ticket`; `None` for token-only users.
    pub password: Option<String>,
    /// API tokens: token id (the part after `!`) to secret.
    pub tokens: BTreeMap<String, String>,
    /// ACL entries.
    pub acls: Vec<AclEntry>,
}

/// Who a request runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `user@realm`.
    pub user: String,
    /// The token id (after `!`), when authenticated by an API token.
    pub token: Option<String>,
    /// Whether the request was authenticated by a ticket (then CSRF applies).
    pub by_ticket: bool,
}

impl Identity {
    /// The authid PVE reports: `user@realm` or `user@realm!token`.
    pub fn authid(&self) -> String {
        match &self.token {
            Some(t) => format!("{}!{t}", self.user),
            None => self.user.clone(),
        }
    }
}

/// The user database and ACLs, plus the key that signs tickets.
#[derive(Clone, Debug)]
pub struct AccessControl {
    /// Users by `user@realm`.
    pub users: BTreeMap<String, User>,
    /// Realms that exist (`pam`, `pve` and any added).
    pub realms: BTreeSet<String>,
    key: [u8; 32],
}

impl Default for AccessControl {
    fn default() -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        let realms = ["pam", "pve"].into_iter().map(String::from).collect();
        Self {
            users: BTreeMap::new(),
            realms,
            key,
        }
    }
}

fn hextime(t: i64) -> String {
    format!("{:08X}", t.max(0))
}

impl AccessControl {
    fn sign(&self, data: &str) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => return String::new(),
        };
        mac.update(data.as_bytes());
        STANDARD.encode(mac.finalize().into_bytes())
    }

    /// Checks a password login. `user` is `name@realm`.
    pub fn check_password(&self, user: &str, password: &str) -> bool {
        self.users
            .get(user)
            .and_then(|u| u.password.as_deref())
            .is_some_and(|p| p == password)
    }

    /// Checks an API token `user@realm!id` with its secret.
    pub fn check_token(&self, tokenid: &str, secret: &str) -> Option<Identity> {
        let (user, id) = tokenid.split_once('!')?;
        let expected = self.users.get(user)?.tokens.get(id)?;
        (expected == secret).then(|| Identity {
            user: user.to_owned(),
            token: Some(id.to_owned()),
            by_ticket: false,
        })
    }

    /// Mints a login ticket for `user` at time `now`.
    pub fn ticket(&self, user: &str, now: i64) -> String {
        let plain = format!("PVE:{user}:{}", hextime(now));
        let sig = self.sign(&plain);
        format!("{plain}::{sig}")
    }

    /// Verifies a login ticket; returns the user if it is genuine and not expired.
    pub fn verify_ticket(&self, ticket: &str, now: i64) -> Option<String> {
        let (plain, sig) = ticket.split_once("::")?;
        let rest = plain.strip_prefix("PVE:")?;
        let (user, time) = rest.rsplit_once(':')?;
        let time = i64::from_str_radix(time, 16).ok()?;
        if self.sign(plain) != sig {
            return None;
        }
        let age = now - time;
        if !(TICKET_MIN_AGE..TICKET_LIFETIME).contains(&age) {
            return None;
        }
        self.users.contains_key(user).then(|| user.to_owned())
    }

    /// Mints a CSRF prevention token for `user`.
    pub fn csrf_token(&self, user: &str, now: i64) -> String {
        let time = hextime(now);
        let sig = self.sign(&format!("{time}:{user}"));
        format!("{time}:{sig}")
    }

    /// Verifies a CSRF prevention token for `user`.
    pub fn verify_csrf(&self, user: &str, token: &str, now: i64) -> bool {
        let Some((time, sig)) = token.split_once(':') else {
            return false;
        };
        let Ok(t) = i64::from_str_radix(time, 16) else {
            return false;
        };
        let age = now - t;
        self.sign(&format!("{time}:{user}")) == sig
            && (TICKET_MIN_AGE..TICKET_LIFETIME).contains(&age)
    }

    /// Mints a console ticket for `authid` on `path` (`/vms/ID`).
    pub fn vnc_ticket(&self, authid: &str, path: &str, now: i64) -> String {
        let time = hextime(now);
        let sig = self.sign(&format!("PVEVNC:{time}:{authid}:{path}"));
        format!("PVEVNC:{time}::{sig}")
    }

    /// Verifies a console ticket for `authid` on `path`.
    pub fn verify_vnc_ticket(&self, ticket: &str, authid: &str, path: &str, now: i64) -> bool {
        let Some((plain, sig)) = ticket.split_once("::") else {
            return false;
        };
        let Some(time) = plain.strip_prefix("PVEVNC:") else {
            return false;
        };
        let Ok(t) = i64::from_str_radix(time, 16) else {
            return false;
        };
        let age = now - t;
        self.sign(&format!("PVEVNC:{time}:{authid}:{path}")) == sig
            && (-20..=VNC_TICKET_LIFETIME).contains(&age)
    }

    /// The privileges `who` holds on `path`. A VM's pool (if any) adds the privileges held
    /// on `/pool/{pool}`, as in PVE. `root@pam` holds everything everywhere.
    pub fn privileges(&self, who: &Identity, path: &str, pool: Option<&str>) -> BTreeSet<String> {
        if who.user == "root@pam" {
            return ALL_PRIVILEGES.iter().map(|p| (*p).to_owned()).collect();
        }
        let Some(user) = self.users.get(&who.user) else {
            return BTreeSet::new();
        };
        let mut privs = effective(&user.acls, path);
        if let Some(pool) = pool {
            privs.extend(effective(&user.acls, &format!("/pool/{pool}")));
        }
        privs
    }

    /// Whether `who` holds `privilege` on `path`.
    pub fn has(&self, who: &Identity, path: &str, pool: Option<&str>, privilege: &str) -> bool {
        self.privileges(who, path, pool).contains(privilege)
    }
}

/// The ACL paths from `/` down to `path`, most general first.
fn ancestors(path: &str) -> Vec<String> {
    let mut out = vec!["/".to_owned()];
    let mut current = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        current.push('/');
        current.push_str(part);
        out.push(current.clone());
    }
    out
}

/// PVE's rule: the most specific entry that reaches `path` wins; an entry above `path`
/// reaches it only if it propagates.
fn effective(acls: &[AclEntry], path: &str) -> BTreeSet<String> {
    let chain = ancestors(path);
    let mut privs = BTreeSet::new();
    for (depth, p) in chain.iter().enumerate() {
        let exact = depth + 1 == chain.len();
        let entries: Vec<&AclEntry> = acls
            .iter()
            .filter(|a| &a.path == p && (exact || a.propagate))
            .collect();
        if !entries.is_empty() {
            privs = entries
                .iter()
                .flat_map(|a| a.privs.iter().cloned())
                .collect();
        }
    }
    privs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(path: &str, privs: &[&str], propagate: bool) -> AclEntry {
        AclEntry {
            path: path.into(),
            privs: privs.iter().map(|p| (*p).to_owned()).collect(),
            propagate,
        }
    }

    #[test]
    fn propagation_and_override() {
        let acls = vec![
            acl("/vms", &["VM.Audit"], true),
            acl("/vms/101", &["VM.Console"], false),
        ];
        assert!(effective(&acls, "/vms/100").contains("VM.Audit"));
        let v101 = effective(&acls, "/vms/101");
        assert!(v101.contains("VM.Console") && !v101.contains("VM.Audit"));
        let no_prop = vec![acl("/vms", &["VM.Audit"], false)];
        assert!(effective(&no_prop, "/vms/100").is_empty());
        assert!(effective(&no_prop, "/vms").contains("VM.Audit"));
    }

    #[test]
    fn tickets_expire_after_two_hours() {
        let mut ac = AccessControl::default();
        ac.users.insert("a@pve".into(), User::default());
        let t = ac.ticket("a@pve", 1_000_000);
        assert!(t.starts_with("PVE:a@pve:000F4240::"));
        assert_eq!(
            ac.verify_ticket(&t, 1_000_000 + 7199).as_deref(),
            Some("a@pve")
        );
        assert_eq!(ac.verify_ticket(&t, 1_000_000 + 7200), None);
        assert_eq!(
            ac.verify_ticket(&t.replace("a@pve", "b@pve"), 1_000_000),
            None
        );
    }
}
