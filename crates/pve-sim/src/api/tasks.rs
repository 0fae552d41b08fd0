//! `/nodes/{node}/tasks/{upid}`: a task's `status` and `log`, readable by the user who started
//! it, or with `Sys.Audit` on the node.

use serde_json::{Value, json};

use super::ApiResult;
use crate::auth::Identity;
use crate::error::ApiError;
use crate::state::Sim;

fn find_task(
    sim: &Sim,
    who: &Identity,
    node: &str,
    upid: &str,
) -> Result<crate::state::Task, ApiError> {
    let st = sim.lock();
    let task = st
        .tasks
        .get(upid)
        .filter(|t| t.upid.node == node)
        .cloned()
        .ok_or_else(|| ApiError::internal(format!("no such task '{upid}'")))?;
    let own = task.upid.user == who.authid() || task.upid.user == who.user;
    if !own
        && !st
            .access
            .has(who, &format!("/nodes/{node}"), None, "Sys.Audit")
    {
        return Err(ApiError::forbidden(&format!("/nodes/{node}"), "Sys.Audit"));
    }
    Ok(task)
}

pub(super) fn task_status(sim: &Sim, who: &Identity, node: &str, upid: &str) -> ApiResult {
    let task = find_task(sim, who, node, upid)?;
    let u = &task.upid;
    let mut m = json!({
        "upid": upid, "node": u.node, "pid": u.pid, "pstart": u.pstart, "starttime": u.starttime,
        "type": u.kind, "id": u.id, "user": u.user.split('!').next().unwrap_or(""),
        "status": if task.exitstatus.is_some() { "stopped" } else { "running" },
    });
    if let Some(o) = m.as_object_mut() {
        if let Some(e) = &task.exitstatus {
            o.insert("exitstatus".into(), json!(e));
        }
        if let Some((_, tok)) = u.user.split_once('!') {
            o.insert("tokenid".into(), json!(tok));
        }
    }
    Ok(m)
}

pub(super) fn task_log(sim: &Sim, who: &Identity, node: &str, upid: &str) -> ApiResult {
    let task = find_task(sim, who, node, upid)?;
    Ok(Value::Array(
        task.log
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"n": i + 1, "t": t}))
            .collect(),
    ))
}
