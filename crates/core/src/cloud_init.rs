//! First-boot configuration for VMs made from templates: what cloud-init's NoCloud data
//! source gives the guest.
//!
//! The plane makes up a random password for the VM's user and hands drivers only its
//! SHA-512 crypt hash, so the plaintext never leaves the plane. [`CloudInit::validate`] holds
//! every value to rules strict enough that it cannot break the YAML or the shell scripts it
//! ends up in; drivers still quote everything they write.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::spec::SpecError;

/// Longest hostname (RFC 1123).
pub const MAX_HOSTNAME_LEN: usize = 253;
/// Longest user name (the portable POSIX limit that `useradd` applies).
pub const MAX_USER_LEN: usize = 32;
/// Most SSH keys one VM is given.
pub const MAX_SSH_KEYS: usize = 64;
/// Longest single SSH key line, comment included (an RSA 16384-bit key is about 2.8 KiB).
pub const MAX_SSH_KEY_LEN: usize = 8 * 1024;

/// User names a guest already has, which cloud-init would modify instead of create.
const RESERVED_USERS: &[&str] = &[
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "nobody",
    "sshd",
    "systemd-network",
];

/// What a guest's first boot sets up: its hostname and one user, who may log in with a
/// password and with SSH keys.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudInit {
    /// The guest's hostname: an RFC 1123 host name (lowercase).
    pub hostname: String,
    /// The user to create: a lowercase POSIX user name, not a system account.
    pub user: String,
    /// The SHA-512 crypt (`$6$...`) hash of the user's password, or empty for no password.
    /// Never logged: [`fmt::Debug`] redacts it.
    pub password_hash: String,
    /// OpenSSH public keys (`authorized_keys` lines) the user may log in with.
    pub ssh_keys: Vec<String>,
}

impl fmt::Debug for CloudInit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hash = if self.password_hash.is_empty() {
            "<none>"
        } else {
            "<redacted>"
        };
        f.debug_struct("CloudInit")
            .field("hostname", &self.hostname)
            .field("user", &self.user)
            .field("password_hash", &hash)
            .field("ssh_keys", &self.ssh_keys)
            .finish()
    }
}

impl CloudInit {
    /// Whether the user gets a password (a non-empty hash).
    pub fn has_password(&self) -> bool {
        !self.password_hash.is_empty()
    }

    /// Whether `user` may be the guest's user name.
    pub fn is_valid_user(user: &str) -> bool {
        validate_user(user).is_ok()
    }

    /// Checks every value; the error names the field (`cloud_init.user`, ...).
    pub fn validate(&self) -> Result<(), SpecError> {
        validate_hostname(&self.hostname)?;
        validate_user(&self.user)?;
        if self.has_password() {
            check_sha512_crypt(&self.password_hash)
                .map_err(|p| SpecError::new("cloud_init.password_hash", p))?;
        }
        if self.ssh_keys.len() > MAX_SSH_KEYS {
            return Err(SpecError::new(
                "cloud_init.ssh_keys",
                format!(
                    "at most {MAX_SSH_KEYS} keys are allowed, got {}",
                    self.ssh_keys.len()
                ),
            ));
        }
        for (i, key) in self.ssh_keys.iter().enumerate() {
            let problem = if key.trim().is_empty() {
                Some("is empty".to_owned())
            } else if key.len() > MAX_SSH_KEY_LEN {
                Some(format!("is longer than {MAX_SSH_KEY_LEN} bytes"))
            } else if key.chars().any(char::is_control) {
                Some(
                    "contains a line break or another control character; give one key per entry"
                        .into(),
                )
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(SpecError::new(
                    "cloud_init.ssh_keys",
                    format!("key {} {problem}", i + 1),
                ));
            }
        }
        Ok(())
    }
}

fn validate_hostname(hostname: &str) -> Result<(), SpecError> {
    let problem = |p: String| Err(SpecError::new("cloud_init.hostname", p));
    if hostname.is_empty() || hostname.len() > MAX_HOSTNAME_LEN {
        return problem(format!(
            "must be 1 to {MAX_HOSTNAME_LEN} characters, got {}",
            hostname.len()
        ));
    }
    for label in hostname.split('.') {
        let ok = (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return problem(format!(
                "{hostname:?} is not a host name: use dot-separated labels of 1 to 63 \
                 characters a-z, 0-9 and '-', not starting or ending with '-'"
            ));
        }
    }
    Ok(())
}

fn validate_user(user: &str) -> Result<(), SpecError> {
    let problem = |p: String| Err(SpecError::new("cloud_init.user", p));
    let mut bytes = user.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
    let rest_ok =
        bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !first_ok || !rest_ok || user.len() > MAX_USER_LEN {
        return problem(format!(
            "{user:?} is not a user name: use 1 to {MAX_USER_LEN} characters a-z, 0-9, '_' \
             and '-', starting with a letter or '_'"
        ));
    }
    if RESERVED_USERS.contains(&user) {
        return problem(format!(
            "{user:?} is a system account; choose another user name"
        ));
    }
    Ok(())
}

/// Checks that `hash` has the shape of a SHA-512 crypt hash: `$6$`, optional `rounds=N$`, a
/// salt of 1 to 16 characters, `$`, and 86 characters of hash, all from crypt's base-64
/// alphabet. A longer salt is refused: crypt(3) uses only its first 16 characters and writes
/// those back, so a stored hash with a longer salt never matches at login.
fn check_sha512_crypt(hash: &str) -> Result<(), &'static str> {
    const SHAPE: &str =
        "must be a SHA-512 crypt hash ($6$[rounds=N$]SALT$HASH), or empty for no password";
    let b64 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    };
    let rest = hash.strip_prefix("$6$").ok_or(SHAPE)?;
    let rest = match rest.strip_prefix("rounds=") {
        Some(r) => match r.split_once('$') {
            Some((n, r)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => r,
            _ => return Err(SHAPE),
        },
        None => rest,
    };
    let (salt, digest) = rest.split_once('$').ok_or(SHAPE)?;
    if salt.is_empty() || !b64(salt) || digest.len() != 86 || !b64(digest) {
        return Err(SHAPE);
    }
    if salt.len() > 16 {
        return Err(
            "has a salt longer than 16 characters, which crypt(3) truncates, so the \
                    password would never match; hash with a salt of at most 16 characters",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/";

    fn good() -> CloudInit {
        CloudInit {
            hostname: "seeded".into(),
            user: "alice".into(),
            password_hash: HASH.into(),
            ssh_keys: vec!["ssh-ed25519 AAAAC3Nza alice@laptop \"quoted\" \\ ünïcode".into()],
        }
    }

    #[test]
    fn accepts_sensible_values() {
        good().validate().unwrap();
        for hostname in ["a", "web-1.lab.example", &"x".repeat(63)] {
            CloudInit {
                hostname: hostname.into(),
                ..good()
            }
            .validate()
            .unwrap();
        }
        for user in ["_svc", "bob-2", "a_b"] {
            CloudInit {
                user: user.into(),
                ..good()
            }
            .validate()
            .unwrap();
        }
        let no_password = CloudInit {
            password_hash: String::new(),
            ssh_keys: vec![],
            ..good()
        };
        no_password.validate().unwrap();
        assert!(!no_password.has_password());
        let rounds = format!("$6$rounds=5000${}", &HASH[3..]);
        CloudInit {
            password_hash: rounds,
            ..good()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn rejects_values_that_could_break_yaml_or_shell() {
        let cases: Vec<(CloudInit, &str)> = vec![
            (
                CloudInit {
                    hostname: "".into(),
                    ..good()
                },
                "hostname",
            ),
            (
                CloudInit {
                    hostname: "a b".into(),
                    ..good()
                },
                "hostname",
            ),
            (
                CloudInit {
                    hostname: "x\"\ny: 1".into(),
                    ..good()
                },
                "hostname",
            ),
            (
                CloudInit {
                    hostname: "a..b".into(),
                    ..good()
                },
                "hostname",
            ),
            (
                CloudInit {
                    hostname: "Web".into(),
                    ..good()
                },
                "hostname",
            ),
            (
                CloudInit {
                    user: "".into(),
                    ..good()
                },
                "user",
            ),
            (
                CloudInit {
                    user: "1abc".into(),
                    ..good()
                },
                "user",
            ),
            (
                CloudInit {
                    user: "a:b".into(),
                    ..good()
                },
                "user",
            ),
            (
                CloudInit {
                    user: "root".into(),
                    ..good()
                },
                "user",
            ),
            (
                CloudInit {
                    user: "x".repeat(33),
                    ..good()
                },
                "user",
            ),
            (
                CloudInit {
                    password_hash: "hunter2".into(),
                    ..good()
                },
                "password_hash",
            ),
            (
                CloudInit {
                    password_hash: "$1$abc$def".into(),
                    ..good()
                },
                "password_hash",
            ),
            (
                CloudInit {
                    password_hash: format!("{HASH}\n"),
                    ..good()
                },
                "password_hash",
            ),
            (
                CloudInit {
                    password_hash: HASH.replace("saltsalt", "saltsaltsaltsalt1"),
                    ..good()
                },
                "password_hash",
            ),
            (
                CloudInit {
                    ssh_keys: vec!["a\nb".into()],
                    ..good()
                },
                "ssh_keys",
            ),
            (
                CloudInit {
                    ssh_keys: vec!["  ".into()],
                    ..good()
                },
                "ssh_keys",
            ),
            (
                CloudInit {
                    ssh_keys: vec!["k".into(); 65],
                    ..good()
                },
                "ssh_keys",
            ),
        ];
        for (ci, field) in cases {
            let err = ci.validate().unwrap_err();
            assert_eq!(err.field, format!("cloud_init.{field}"), "{ci:?}");
        }
    }

    #[test]
    fn debug_redacts_the_hash() {
        let text = format!("{:?}", good());
        assert!(!text.contains("saltsalt"), "{text}");
        assert!(
            text.contains("<redacted>") && text.contains("alice"),
            "{text}"
        );
    }
}
