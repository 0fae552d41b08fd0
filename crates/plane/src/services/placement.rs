//! Where a new VM goes: the least-loaded node that has room for it.
//!
//! A node's load is what porthole VMs on it were given (cores, memory, disk, whatever their
//! power state), against its capacity times the configured overcommit. A VM goes to the
//! node whose fullest resource would be least full with it; ties go to the node named first.
//! When every node is full the least full one still takes it, with a warning in the log:
//! quotas, not placement, decide how much a user may have. Nodes that are offline, or that
//! keep only their own templates, take no new VMs this way; with none left, a create is
//! refused with 503.

use std::collections::HashMap;

use porthole_core::driver::Capacity;
use porthole_core::{ImageHome, Resources, Usage};

use crate::app::App;
use crate::config::Overcommit;
use crate::error::ApiError;

/// How full `capacity` would be with `used`, as the fraction of its fullest resource.
fn fullness(used: Usage, capacity: Capacity, overcommit: Overcommit) -> f64 {
    let share = |used: f64, capacity: f64, ratio: f64| {
        if capacity <= 0.0 {
            f64::INFINITY
        } else {
            used / (capacity * ratio)
        }
    };
    [
        share(used.cores as f64, f64::from(capacity.cores), overcommit.cpu),
        share(
            used.memory_mib as f64,
            capacity.memory_mib as f64,
            overcommit.memory,
        ),
        share(
            used.disk_gib as f64,
            capacity.disk_gib as f64,
            overcommit.disk,
        ),
    ]
    .into_iter()
    .fold(0.0, f64::max)
}

/// The node a new VM with `wanted` resources goes to.
pub async fn choose(app: &App, wanted: Resources) -> Result<String, ApiError> {
    let mut load: HashMap<String, Usage> = HashMap::new();
    for vm in app.store.vms(None).await? {
        load.entry(vm.node).or_default().add(vm.resources, true);
    }
    let mut best: Option<(f64, String)> = None;
    let mut offline = Vec::new();
    for (name, driver) in app.nodes.all() {
        if driver.capabilities().images != ImageHome::Plane {
            continue;
        }
        let Some(capacity) = driver.capacity() else {
            if driver.unavailable().is_some() {
                offline.push(name);
            }
            continue;
        };
        let mut used = load.get(&name).copied().unwrap_or_default();
        used.add(wanted, true);
        let full = fullness(used, capacity, app.config.overcommit);
        if best.as_ref().is_none_or(|(b, _)| full < *b) {
            best = Some((full, name));
        }
    }
    if let Some((full, name)) = &best
        && *full > 1.0
    {
        tracing::warn!(node = %name, fullness = full, "every node is full; placing on the least full one");
    }
    best.map(|(_, name)| name).ok_or_else(|| {
        let offline = if offline.is_empty() {
            String::new()
        } else {
            format!(" ({} offline)", offline.join(", "))
        };
        ApiError::Unavailable(format!(
            "no node can take a VM of {} cores, {} MiB and {} GiB now{offline}; try again \
             when a node is back, or ask an admin to add one",
            wanted.cores, wanted.memory_mib, wanted.disk_gib
        ))
    })
}

/// Checks that an admin's pinned `node` can take a new VM from an image the plane keeps.
pub fn check_pinned(app: &App, node: &str) -> Result<(), ApiError> {
    let driver = app
        .nodes
        .get(node)
        .map_err(|_| ApiError::invalid("node", format!("there is no node called {node:?}")))?;
    if let Some(why) = driver.unavailable() {
        return Err(ApiError::Unavailable(format!("node: {why}")));
    }
    if driver.capabilities().images != ImageHome::Plane {
        return Err(ApiError::invalid(
            "node",
            format!(
                "node {node:?} runs only templates it keeps itself; link one with `porthole template link`"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fullness_is_the_fullest_resource_after_overcommit() {
        let capacity = Capacity {
            cores: 4,
            memory_mib: 8192,
            disk_gib: 100,
        };
        let used = Usage {
            cores: 8,
            memory_mib: 2048,
            disk_gib: 10,
        };
        let ratios = Overcommit::default();
        assert!((fullness(used, capacity, ratios) - 0.5).abs() < 1e-9);
        let tight = Overcommit { cpu: 1.0, ..ratios };
        assert!((fullness(used, capacity, tight) - 2.0).abs() < 1e-9);
        assert!(fullness(used, Capacity::default(), ratios).is_infinite());
        assert!(
            Overcommit {
                memory: 0.0,
                ..ratios
            }
            .validate()
            .is_err()
        );
    }
}
