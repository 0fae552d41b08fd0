//! `/cluster`: `GET /cluster/resources` (the VMs, nodes and pools the caller may see, with
//! power states refreshed from the backend) and `GET /cluster/nextid`.

use serde_json::{Value, json};

use super::ApiResult;
use super::qemu::{refresh, vm_resource};
use super::request::{Params, allow, parse_vmid};
use crate::auth::Identity;
use crate::error::ApiError;
use crate::state::Sim;

pub(super) async fn resources(sim: &Sim, who: &Identity, params: &Params) -> ApiResult {
    allow(params, &["type"])?;
    let kind = params.get("type").map(String::as_str);
    if let Some(k) = kind
        && !["vm", "storage", "node", "sdn", "pool"].contains(&k)
    {
        return Err(ApiError::param(
            "type",
            format!(
                "value '{k}' does not have a value in the enumeration 'vm, storage, node, sdn'"
            ),
        ));
    }
    let ids: Vec<u32> = sim.lock().vms.keys().copied().collect();
    refresh(sim, &ids).await;
    let now = sim.clock.now();
    let st = sim.lock();
    let mut out = Vec::new();
    if kind.is_none() || kind == Some("vm") {
        for vm in st.vms.values() {
            if !st.access.has(
                who,
                &format!("/vms/{}", vm.vmid),
                vm.pool.as_deref(),
                "VM.Audit",
            ) {
                continue;
            }
            let mut m = vm_resource(vm, now);
            m.insert("template".into(), json!(u8::from(vm.template)));
            if let Some(p) = &vm.pool {
                m.insert("pool".into(), json!(p));
            }
            if let Some(tags) = vm.config.get("tags") {
                m.insert("tags".into(), json!(tags));
            }
            out.push(Value::Object(m));
        }
    }
    if kind.is_none() || kind == Some("node") {
        for n in st.nodes.values() {
            if st
                .access
                .has(who, &format!("/nodes/{}", n.name), None, "Sys.Audit")
            {
                out.push(json!({"id": format!("node/{}", n.name), "type": "node", "node": n.name, "status": "online",
                    "maxmem": n.maxmem, "mem": n.mem, "maxcpu": n.maxcpu, "cpu": n.cpu, "uptime": 123_456, "level": ""}));
            }
        }
    }
    if kind.is_none() || kind == Some("pool") {
        for id in st.pools.keys() {
            if !st
                .access
                .privileges(who, &format!("/pool/{id}"), None)
                .is_empty()
            {
                out.push(json!({"id": format!("/pool/{id}"), "type": "pool", "pool": id}));
            }
        }
    }
    Ok(Value::Array(out))
}

pub(super) fn nextid(sim: &Sim, params: &Params) -> ApiResult {
    allow(params, &["vmid"])?;
    let st = sim.lock();
    if let Some(v) = params.get("vmid") {
        let vmid = parse_vmid(v)?;
        if st.vms.contains_key(&vmid) {
            return Err(ApiError::param("vmid", format!("VM {vmid} already exists")));
        }
        return Ok(json!(vmid.to_string()));
    }
    let id = (100u32..)
        .find(|id| !st.vms.contains_key(id))
        .unwrap_or(100);
    // Real servers send the id as a string.
    Ok(json!(id.to_string()))
}
