//! Snapshots of a VM's main disk, optionally with its memory and device state.
//!
//! A snapshot is named by its owner. Names are short identifiers ([`SnapshotName`]) so they
//! are safe in any hypervisor's command or API, and never look like the numeric ids some
//! hypervisors give snapshots besides their names.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::spec::SpecError;

/// Longest snapshot name.
pub const MAX_SNAPSHOT_NAME_LEN: usize = 40;

/// A snapshot's name: 1 to 40 characters `A-Z`, `a-z`, `0-9`, `_` and `-`, starting with a
/// letter.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema), schema(value_type = String))]
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SnapshotName(String);

impl SnapshotName {
    /// Checks `name` against the rules above.
    pub fn parse(name: &str) -> Result<Self, SpecError> {
        let problem = |p: String| Err(SpecError::new("snapshot", p));
        if name.is_empty() || name.len() > MAX_SNAPSHOT_NAME_LEN {
            return problem(format!(
                "a snapshot name must be 1 to {MAX_SNAPSHOT_NAME_LEN} characters, got {}",
                name.len()
            ));
        }
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return problem(format!(
                "{name:?} is not a snapshot name: use letters, digits, '_' and '-', starting \
                 with a letter"
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SnapshotName {
    type Error = SpecError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<SnapshotName> for String {
    fn from(name: SnapshotName) -> Self {
        name.0
    }
}

impl fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One snapshot of a VM, as its node reports it.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Its name. Usually a [`SnapshotName`], but a snapshot made outside porthole may have
    /// any name.
    pub name: String,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
    /// Bytes of memory and device state saved with it; 0 for a disk-only snapshot.
    pub vm_state_size: u64,
}

impl Snapshot {
    /// Whether it holds the running VM's memory, so rolling back resumes the VM where it was.
    pub fn includes_ram(&self) -> bool {
        self.vm_state_size > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_identifiers() {
        for good in ["a", "before-upgrade", "Snap_1", &"x".repeat(40)] {
            assert_eq!(SnapshotName::parse(good).unwrap().as_str(), good);
        }
        for (bad, hint) in [
            ("", "1 to 40"),
            (&"x".repeat(41) as &str, "1 to 40"),
            ("1st", "starting with a letter"),
            ("-a", "starting with a letter"),
            ("a b", "letters, digits"),
            ("a.b", "letters, digits"),
            ("a/b", "letters, digits"),
            ("é", "letters, digits"),
        ] {
            let err = SnapshotName::parse(bad).unwrap_err();
            assert_eq!(err.field, "snapshot");
            assert!(err.to_string().contains(hint), "{bad:?}: {err}");
        }
        let parsed: Result<SnapshotName, _> = serde_json::from_str("\"no way\"");
        assert!(parsed.is_err());
    }
}
