//! The checks handlers share before they act: that the caller holds a privilege on an ACL
//! path (a VM's path counts its pool too), and that a node, or a VM on that node, exists,
//! failing with the errors PVE sends.

use crate::auth::Identity;
use crate::error::ApiError;
use crate::state::{Sim, Vm};

pub(super) fn check(
    sim: &Sim,
    who: &Identity,
    path: &str,
    pool: Option<&str>,
    privilege: &str,
) -> Result<(), ApiError> {
    if sim.lock().access.has(who, path, pool, privilege) {
        Ok(())
    } else {
        Err(ApiError::forbidden(path, privilege))
    }
}

/// Checks `privilege` on `/vms/{vmid}` (including the VM's pool).
pub(super) fn check_vm(
    sim: &Sim,
    who: &Identity,
    vmid: u32,
    privilege: &str,
) -> Result<(), ApiError> {
    let pool = sim.lock().vms.get(&vmid).and_then(|v| v.pool.clone());
    check(
        sim,
        who,
        &format!("/vms/{vmid}"),
        pool.as_deref(),
        privilege,
    )
}

fn conf_missing(node: &str, vmid: u32) -> ApiError {
    ApiError::internal(format!(
        "Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"
    ))
}

/// The VM, if it lives on `node`.
pub(super) fn find_vm(sim: &Sim, node: &str, vmid: u32) -> Result<Vm, ApiError> {
    let st = sim.lock();
    if !st.nodes.contains_key(node) {
        return Err(ApiError::param(
            "node",
            format!("no such cluster node '{node}'"),
        ));
    }
    st.vms
        .get(&vmid)
        .filter(|v| v.node == node)
        .cloned()
        .ok_or_else(|| conf_missing(node, vmid))
}

pub(super) fn node_exists(sim: &Sim, node: &str) -> Result<(), ApiError> {
    if sim.lock().nodes.contains_key(node) {
        Ok(())
    } else {
        Err(ApiError::param(
            "node",
            format!("no such cluster node '{node}'"),
        ))
    }
}
