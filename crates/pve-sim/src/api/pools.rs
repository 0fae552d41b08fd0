//! `/pools`: listing, creating, reading, updating (adding or removing VMs) and deleting
//! resource pools.

use serde_json::{Value, json};

use super::ApiResult;
use super::checks::{check, check_vm};
use super::qemu::vm_resource;
use super::request::{Params, allow, flag, parse_vmid, require};
use crate::auth::Identity;
use crate::error::ApiError;
use crate::state::{Pool, Sim};

pub(super) fn pools(sim: &Sim, who: &Identity, params: &Params) -> ApiResult {
    allow(params, &["poolid", "type"])?;
    let st = sim.lock();
    let out = st
        .pools
        .iter()
        .filter(|(id, _)| params.get("poolid").is_none_or(|p| p == *id))
        .filter(|(id, _)| {
            !st.access
                .privileges(who, &format!("/pool/{id}"), None)
                .is_empty()
        })
        .map(|(id, p)| {
            let mut m = json!({"poolid": id});
            if let (Some(c), Some(o)) = (&p.comment, m.as_object_mut()) {
                o.insert("comment".into(), json!(c));
            }
            m
        })
        .collect();
    Ok(Value::Array(out))
}

fn valid_poolid(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub(super) fn create_pool(sim: &Sim, who: &Identity, params: &Params) -> ApiResult {
    allow(params, &["poolid", "comment"])?;
    let id = require(params, "poolid")?;
    if !valid_poolid(id) {
        return Err(ApiError::param(
            "poolid",
            format!("invalid format - pool id '{id}' contains illegal characters"),
        ));
    }
    check(sim, who, &format!("/pool/{id}"), None, "Pool.Allocate")?;
    let mut st = sim.lock();
    if st.pools.contains_key(id) {
        return Err(ApiError::internal(format!(
            "create pool failed: pool '{id}' already exists"
        )));
    }
    st.pools.insert(
        id.to_owned(),
        Pool {
            comment: params.get("comment").cloned(),
        },
    );
    Ok(Value::Null)
}

pub(super) fn pool(sim: &Sim, who: &Identity, id: &str) -> ApiResult {
    let path = format!("/pool/{id}");
    let now = sim.clock.now();
    let st = sim.lock();
    let Some(pool) = st.pools.get(id) else {
        return Err(ApiError::internal(format!("pool '{id}' does not exist")));
    };
    if st.access.privileges(who, &path, None).is_empty() {
        return Err(ApiError::forbidden(&path, "Pool.Audit"));
    }
    let members: Vec<Value> = st
        .vms
        .values()
        .filter(|v| v.pool.as_deref() == Some(id))
        .map(|vm| Value::Object(vm_resource(vm, now)))
        .collect();
    let mut out = json!({ "members": members });
    if let (Some(c), Some(o)) = (&pool.comment, out.as_object_mut()) {
        o.insert("comment".into(), json!(c));
    }
    Ok(out)
}

pub(super) fn update_pool(sim: &Sim, who: &Identity, id: &str, params: &Params) -> ApiResult {
    allow(
        params,
        &["comment", "vms", "storage", "delete", "allow-move"],
    )?;
    let path = format!("/pool/{id}");
    check(sim, who, &path, None, "Pool.Allocate")?;
    let delete = flag(params, "delete")?;
    let ids: Vec<u32> = match params.get("vms") {
        Some(list) => list
            .split([',', ';', ' '])
            .filter(|s| !s.is_empty())
            .map(parse_vmid)
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    for vmid in &ids {
        check_vm(sim, who, *vmid, "VM.Allocate")?;
    }
    let mut st = sim.lock();
    if !st.pools.contains_key(id) {
        return Err(ApiError::internal(format!("pool '{id}' does not exist")));
    }
    for vmid in ids {
        let Some(vm) = st.vms.get_mut(&vmid) else {
            return Err(ApiError::internal(format!("no such VM '{vmid}'")));
        };
        if delete {
            if vm.pool.as_deref() == Some(id) {
                vm.pool = None;
            }
        } else if let Some(other) = vm.pool.as_ref().filter(|p| *p != id) {
            return Err(ApiError::internal(format!(
                "VM {vmid} belongs already to pool '{other}'"
            )));
        } else {
            vm.pool = Some(id.to_owned());
        }
    }
    if let (Some(c), Some(p)) = (params.get("comment"), st.pools.get_mut(id)) {
        p.comment = Some(c.clone());
    }
    Ok(Value::Null)
}

pub(super) fn delete_pool(sim: &Sim, who: &Identity, id: &str) -> ApiResult {
    check(sim, who, &format!("/pool/{id}"), None, "Pool.Allocate")?;
    let mut st = sim.lock();
    if !st.pools.contains_key(id) {
        return Err(ApiError::internal(format!("pool '{id}' does not exist")));
    }
    if st.vms.values().any(|v| v.pool.as_deref() == Some(id)) {
        return Err(ApiError::internal("delete pool failed: pool not empty"));
    }
    st.pools.remove(id);
    Ok(Value::Null)
}
