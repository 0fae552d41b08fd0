//! `GET /nodes`: the node list; memory and CPU figures only for callers with `Sys.Audit` on
//! the node.

use serde_json::{Value, json};

use super::ApiResult;
use crate::auth::Identity;
use crate::backend::PowerState;
use crate::state::Sim;

pub(super) fn nodes(sim: &Sim, who: &Identity) -> ApiResult {
    let st = sim.lock();
    let out = st
        .nodes
        .values()
        .map(|n| {
            let used: u64 = st.vms.values().filter(|v| v.node == n.name && v.status != PowerState::Stopped).map(|v| v.memory_mib() << 20).sum();
            let mut m = json!({"node": n.name, "status": "online", "id": format!("node/{}", n.name), "type": "node", "level": "",
                "ssl_fingerprint": ""});
            if st.access.has(who, &format!("/nodes/{}", n.name), None, "Sys.Audit")
                && let Some(o) = m.as_object_mut()
            {
                o.insert("maxmem".into(), json!(n.maxmem));
                o.insert("mem".into(), json!(n.mem + used));
                o.insert("maxcpu".into(), json!(n.maxcpu));
                o.insert("cpu".into(), json!(n.cpu));
                o.insert("maxdisk".into(), json!(100u64 << 30));
                o.insert("disk".into(), json!(10u64 << 30));
                o.insert("uptime".into(), json!(123_456));
            }
            m
        })
        .collect();
    Ok(Value::Array(out))
}
