//! What an admin's front page shows: the host's capacity against what its VMs were given,
//! every user's usage, and the latest jobs.

use porthole_api::{Job, User, Vm};
use porthole_core::{Resources, Usage, VmState};

use crate::app::App;
use crate::error::ApiError;
use crate::services::caller::Caller;
use crate::services::{jobs, users, vms};

/// The overview (admins).
#[derive(Debug)]
pub struct Overview {
    /// Every VM.
    pub vms: Vec<Vm>,
    /// Every user, with usage and limits.
    pub users: Vec<User>,
    /// The latest jobs.
    pub jobs: Vec<Job>,
    /// What the VMs were given: cores and memory of those that run, disk of all.
    pub used: Usage,
    /// What this host has.
    pub capacity: Usage,
}

/// The overview, with the latest `recent_jobs` jobs (admins).
pub async fn overview(app: &App, caller: &Caller, recent_jobs: u32) -> Result<Overview, ApiError> {
    caller.require_admin()?;
    let vms = vms::list(app, caller).await?;
    let mut used = Usage::default();
    for vm in &vms {
        let resources = Resources {
            cores: vm.cores,
            memory_mib: vm.memory_mib,
            disk_gib: vm.disk_gib,
        };
        used.add(
            resources,
            matches!(vm.state, VmState::Running | VmState::Paused),
        );
    }
    Ok(Overview {
        users: users::list(app, caller).await?,
        jobs: jobs::recent(app, caller, recent_jobs).await?,
        capacity: host_capacity(&app.config.data_dir),
        vms,
        used,
    })
}

/// What this host has: cores, memory in MiB, and disk in GiB under the data directory.
fn host_capacity(data_dir: &std::path::Path) -> Usage {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let memory_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024);
    let disk_gib = nix::sys::statvfs::statvfs(data_dir)
        .map_or(0, |s| s.blocks() * s.fragment_size() / (1 << 30));
    Usage {
        cores,
        memory_mib,
        disk_gib,
    }
}
