//! Keeping VM rows true to the hypervisor.
//!
//! Guests change state on their own: one powers off from inside, a QEMU process dies. While
//! no job holds a VM, the reconciler records what its node reports. It never starts, stops or
//! deletes anything: a VM the node has and porthole does not know is reported, not removed.

use std::collections::HashSet;
use std::time::Duration;

use porthole_core::VmState;
use porthole_core::driver::DriverError;
use tokio_util::sync::CancellationToken;

use crate::app::{App, AppState};
use crate::error::{ApiError, chain};

/// How often VM states are refreshed.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// Records each idle VM's state as its node reports it.
pub async fn reconcile_states(app: &App) -> Result<(), ApiError> {
    for vm in app.store.vms(None).await? {
        if vm.job_id.is_some() || matches!(vm.state, VmState::Creating | VmState::Deleting) {
            continue;
        }
        // A node that is not set up (its settings are broken, or the local node is off)
        // was reported at start; its VMs keep their recorded state.
        let Ok(driver) = app.nodes.get(&vm.node) else {
            continue;
        };
        let observed = match driver.status(vm.id).await {
            Ok(power) => VmState::from(power),
            Err(DriverError::NotFound(_)) => {
                tracing::warn!(vm = %vm.name, node = %vm.node, "the node has no such VM; delete it to clean up");
                continue;
            }
            // A node known to be down was reported once, when it went.
            Err(DriverError::Unreachable(_)) if driver.unavailable().is_some() => VmState::Unknown,
            Err(e) => {
                tracing::warn!(vm = %vm.name, error = %chain(&e), "cannot read VM status");
                VmState::Unknown
            }
        };
        if observed != vm.state
            && app
                .store
                .record_vm_state(vm.id, vm.state, observed, app.clock.now_millis())
                .await?
        {
            tracing::info!(vm = %vm.name, from = %vm.state, to = %observed, "VM state changed outside porthole");
        }
    }
    Ok(())
}

/// Logs every VM a node has that porthole has no row for.
pub async fn report_unknown_vms(app: &App) -> Result<(), ApiError> {
    let known: HashSet<_> = app
        .store
        .vms(None)
        .await?
        .into_iter()
        .map(|vm| vm.id)
        .collect();
    for (node, driver) in app.nodes.all() {
        // A node known to be down now (an agent that has not answered since the plane
        // started) is compared when it comes back (see `agents`).
        if driver.unavailable().is_some() {
            continue;
        }
        let inventory = match driver.inventory().await {
            Ok(inventory) => inventory,
            Err(e) => {
                tracing::warn!(%node, error = %chain(&e), "cannot list the node's VMs");
                continue;
            }
        };
        for (id, power) in inventory {
            if !known.contains(&id) {
                tracing::warn!(%node, vm = %id, state = ?power, "node has a VM porthole does not know; leaving it alone");
            }
        }
    }
    Ok(())
}

/// Runs [`reconcile_states`] every [`INTERVAL`] until `shutdown` is cancelled.
pub async fn run(app: AppState, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(INTERVAL) => {}
            () = shutdown.cancelled() => return,
        }
        if let Err(e) = reconcile_states(&app).await {
            tracing::warn!(error = %chain(&e), "reconciliation failed");
        }
    }
}
