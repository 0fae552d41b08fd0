//! What a VM is asked to be, and the rules that make a request valid.
//!
//! Validation happens here, once, before anything is written or started: a request that
//! fails any rule is refused with a [`SpecError`] that names the offending field, and no
//! state changes.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Largest number of virtual CPUs a single VM may have.
pub const MAX_CORES: u32 = 128;
/// Smallest memory a VM may have, in MiB; less cannot boot a Linux kernel.
pub const MIN_MEMORY_MIB: u64 = 64;
/// Largest memory a single VM may have, in MiB (1 TiB).
pub const MAX_MEMORY_MIB: u64 = 1024 * 1024;
/// Largest disk a single VM may have, in GiB (64 TiB).
pub const MAX_DISK_GIB: u64 = 64 * 1024;
/// Longest VM name; a DNS label is at most 63 bytes.
pub const MAX_NAME_LEN: usize = 63;

/// A request field that broke a rule. The message names the field first, so it can be shown
/// to a user as is: `cores: must be between 1 and 128`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct SpecError {
    /// The request field, as it is spelled on the wire.
    pub field: Cow<'static, str>,
    /// What is wrong with it, phrased so the user knows what to send instead.
    pub problem: String,
}

impl SpecError {
    /// A rule broken by `field`.
    pub fn new(field: impl Into<Cow<'static, str>>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// A VM name: a DNS label (RFC 1123), so it can double as the guest's hostname.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VmName(String);

impl VmName {
    /// Checks `name` against the DNS label rules: 1 to 63 characters of `a-z`, `0-9` and
    /// `-`, not starting or ending with `-`.
    pub fn parse(name: &str) -> Result<Self, SpecError> {
        let problem = |p: &str| Err(SpecError::new("name", p));
        if name.is_empty() {
            return problem("must not be empty");
        }
        if name.len() > MAX_NAME_LEN {
            return Err(SpecError::new(
                "name",
                format!(
                    "must be at most {MAX_NAME_LEN} characters, got {}",
                    name.len()
                ),
            ));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return problem("may contain only lowercase letters a-z, digits 0-9 and '-'");
        }
        if name.starts_with('-') || name.ends_with('-') {
            return problem("must not start or end with '-'");
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for VmName {
    type Error = SpecError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<VmName> for String {
    fn from(name: VmName) -> Self {
        name.0
    }
}

impl fmt::Display for VmName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The hardware a VM gets: virtual CPUs, memory and the size of its main disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Virtual CPUs.
    pub cores: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Size of the main disk in GiB.
    pub disk_gib: u64,
}

impl Resources {
    /// Checks each resource against the system-wide bounds. Per-user quotas are a separate,
    /// later check.
    pub fn validate(&self) -> Result<(), SpecError> {
        if !(1..=MAX_CORES).contains(&self.cores) {
            return Err(SpecError::new(
                "cores",
                format!("must be between 1 and {MAX_CORES}, got {}", self.cores),
            ));
        }
        if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&self.memory_mib) {
            return Err(SpecError::new(
                "memory_mib",
                format!(
                    "must be between {MIN_MEMORY_MIB} and {MAX_MEMORY_MIB} MiB, got {}",
                    self.memory_mib
                ),
            ));
        }
        if !(1..=MAX_DISK_GIB).contains(&self.disk_gib) {
            return Err(SpecError::new(
                "disk_gib",
                format!(
                    "must be between 1 and {MAX_DISK_GIB} GiB, got {}",
                    self.disk_gib
                ),
            ));
        }
        Ok(())
    }

    /// The main disk's size in bytes.
    pub fn disk_bytes(&self) -> u64 {
        self.disk_gib * GIB
    }
}

/// One GiB in bytes.
pub const GIB: u64 = 1024 * 1024 * 1024;

/// The smallest whole number of GiB that holds `bytes`.
pub fn gib_to_hold(bytes: u64) -> u64 {
    bytes.div_ceil(GIB).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dns_label_rules() {
        for good in ["a", "web-1", "0abc", &"x".repeat(63)] {
            assert!(VmName::parse(good).is_ok(), "{good} should be accepted");
        }
        for (bad, hint) in [
            ("", "empty"),
            (&"x".repeat(64) as &str, "at most 63"),
            ("Web", "lowercase"),
            ("a_b", "lowercase"),
            ("a.b", "lowercase"),
            ("-a", "start or end"),
            ("a-", "start or end"),
            ("é", "lowercase"),
        ] {
            let err = VmName::parse(bad).unwrap_err();
            assert_eq!(err.field, "name");
            assert!(err.to_string().contains(hint), "{bad:?}: {err}");
        }
    }

    #[test]
    fn resources_reject_zero_and_absurd_values() {
        let ok = Resources {
            cores: 2,
            memory_mib: 512,
            disk_gib: 4,
        };
        assert!(ok.validate().is_ok());
        let cases = [
            (Resources { cores: 0, ..ok }, "cores"),
            (
                Resources {
                    cores: 100_000,
                    ..ok
                },
                "cores",
            ),
            (
                Resources {
                    memory_mib: 0,
                    ..ok
                },
                "memory_mib",
            ),
            (
                Resources {
                    memory_mib: u64::MAX,
                    ..ok
                },
                "memory_mib",
            ),
            (Resources { disk_gib: 0, ..ok }, "disk_gib"),
            (
                Resources {
                    disk_gib: 1 << 40,
                    ..ok
                },
                "disk_gib",
            ),
        ];
        for (resources, field) in cases {
            assert_eq!(resources.validate().unwrap_err().field, field);
        }
    }

    #[test]
    fn gib_rounds_up() {
        assert_eq!(gib_to_hold(0), 1);
        assert_eq!(gib_to_hold(64 << 20), 1);
        assert_eq!(gib_to_hold(GIB + 1), 2);
    }
}
