//! Quota arithmetic: how much a user may use, how much they use, and whether a change fits.
//!
//! The semantics are Proxstar's: cores and memory count only VMs that run (or are paused, or
//! are being created or started, since those will run); disk counts every VM. A limit is
//! resolved per resource: the user's own override, else the most generous of their groups',
//! else the site default.

use serde::{Deserialize, Serialize};

use crate::spec::{Resources, SpecError};

/// What one user may use at most.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Cores of running VMs.
    pub cores: u64,
    /// Memory of running VMs, in MiB.
    pub memory_mib: u64,
    /// Disk of all VMs, in GiB.
    pub disk_gib: u64,
}

/// Limits of which each part may be unset, inheriting from the level below.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitOverrides {
    /// Cores of running VMs, or inherit.
    pub cores: Option<u64>,
    /// Memory of running VMs in MiB, or inherit.
    pub memory_mib: Option<u64>,
    /// Disk of all VMs in GiB, or inherit.
    pub disk_gib: Option<u64>,
}

impl LimitOverrides {
    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What one user uses now.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Cores of running VMs.
    pub cores: u64,
    /// Memory of running VMs, in MiB.
    pub memory_mib: u64,
    /// Disk of all VMs, in GiB.
    pub disk_gib: u64,
}

impl Usage {
    /// Adds one VM: its disk always, its cores and memory if it runs.
    pub fn add(&mut self, resources: Resources, runs: bool) {
        self.disk_gib += resources.disk_gib;
        if runs {
            self.cores += u64::from(resources.cores);
            self.memory_mib += resources.memory_mib;
        }
    }
}

/// A change would take a user over a limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{field}: quota exceeded: this needs {needed} {unit} more, but you use {used} of your {limit} {unit}{scope}"
)]
pub struct QuotaExceeded {
    /// The resource, as a request field: `cores`, `memory_mib` or `disk_gib`.
    pub field: &'static str,
    /// The user's limit.
    pub limit: u64,
    /// What they use without the change.
    pub used: u64,
    /// What the change adds.
    pub needed: u64,
    unit: &'static str,
    scope: &'static str,
}

impl From<QuotaExceeded> for SpecError {
    fn from(error: QuotaExceeded) -> Self {
        let message = error.to_string();
        let problem = message
            .strip_prefix(&format!("{}: ", error.field))
            .unwrap_or(&message)
            .to_owned();
        SpecError::new(error.field, problem)
    }
}

impl Limits {
    /// The limits that apply: per resource, `user`'s override, else the most generous of
    /// `groups`, else `self` (the default).
    pub fn resolve(self, user: LimitOverrides, groups: &[LimitOverrides]) -> Limits {
        let pick = |own: Option<u64>, group: fn(&LimitOverrides) -> Option<u64>, default: u64| {
            own.or_else(|| groups.iter().filter_map(group).max())
                .unwrap_or(default)
        };
        Limits {
            cores: pick(user.cores, |g| g.cores, self.cores),
            memory_mib: pick(user.memory_mib, |g| g.memory_mib, self.memory_mib),
            disk_gib: pick(user.disk_gib, |g| g.disk_gib, self.disk_gib),
        }
    }

    /// Whether adding `extra` to `used` stays within these limits. The first resource over
    /// its limit is named, in the order cores, memory, disk.
    pub fn admit(&self, used: Usage, extra: Usage) -> Result<(), QuotaExceeded> {
        let running = " on running VMs";
        let checks = [
            (
                "cores",
                self.cores,
                used.cores,
                extra.cores,
                "cores",
                running,
            ),
            (
                "memory_mib",
                self.memory_mib,
                used.memory_mib,
                extra.memory_mib,
                "MiB of memory",
                running,
            ),
            (
                "disk_gib",
                self.disk_gib,
                used.disk_gib,
                extra.disk_gib,
                "GiB of disk",
                "",
            ),
        ];
        for (field, limit, used, needed, unit, scope) in checks {
            if needed > 0 && used.saturating_add(needed) > limit {
                return Err(QuotaExceeded {
                    field,
                    limit,
                    used,
                    needed,
                    unit,
                    scope,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: Limits = Limits {
        cores: 4,
        memory_mib: 8192,
        disk_gib: 100,
    };

    #[test]
    fn the_user_override_wins_then_the_most_generous_group_then_the_default() {
        let user = LimitOverrides {
            cores: Some(2),
            ..Default::default()
        };
        let groups = [
            LimitOverrides {
                cores: Some(16),
                memory_mib: Some(4096),
                disk_gib: None,
            },
            LimitOverrides {
                memory_mib: Some(16384),
                ..Default::default()
            },
        ];
        assert_eq!(
            DEFAULT.resolve(user, &groups),
            Limits {
                cores: 2,
                memory_mib: 16384,
                disk_gib: 100
            }
        );
        assert_eq!(DEFAULT.resolve(LimitOverrides::default(), &[]), DEFAULT);
    }

    #[test]
    fn only_running_vms_count_cores_and_memory() {
        let vm = Resources {
            cores: 2,
            memory_mib: 1024,
            disk_gib: 10,
        };
        let mut usage = Usage::default();
        usage.add(vm, true);
        usage.add(vm, false);
        assert_eq!(
            usage,
            Usage {
                cores: 2,
                memory_mib: 1024,
                disk_gib: 20
            }
        );
    }

    #[test]
    fn admission_names_the_first_resource_over_its_limit() {
        let used = Usage {
            cores: 3,
            memory_mib: 1024,
            disk_gib: 95,
        };
        assert!(
            DEFAULT
                .admit(
                    used,
                    Usage {
                        cores: 1,
                        memory_mib: 1024,
                        disk_gib: 5
                    }
                )
                .is_ok()
        );
        let err = DEFAULT
            .admit(
                used,
                Usage {
                    cores: 2,
                    memory_mib: 0,
                    disk_gib: 10,
                },
            )
            .unwrap_err();
        assert_eq!(err.field, "cores");
        assert_eq!(
            err.to_string(),
            "cores: quota exceeded: this needs 2 cores more, but you use 3 of your 4 cores on running VMs"
        );
        let err = DEFAULT
            .admit(
                used,
                Usage {
                    cores: 0,
                    memory_mib: 0,
                    disk_gib: 6,
                },
            )
            .unwrap_err();
        assert_eq!(err.field, "disk_gib");
        let spec = SpecError::from(err);
        assert_eq!(spec.field, "disk_gib");
        assert!(
            spec.problem.starts_with("quota exceeded"),
            "{}",
            spec.problem
        );
        // A change that adds nothing always fits, even over a limit lowered meanwhile.
        let over = Usage {
            cores: 9,
            memory_mib: 0,
            disk_gib: 0,
        };
        assert!(DEFAULT.admit(over, Usage::default()).is_ok());
    }
}
