//! `POST /nodes/{node}/qemu/{vmid}/vncproxy` and `termproxy`: a console ticket and a port
//! for a running VM, plus a `vncproxy`/`vncshell` task; the websocket that then connects is
//! served by the crate's `console` module, within its accept window.

use std::sync::Arc;

use serde_json::json;

use super::ApiResult;
use super::checks::{check_vm, find_vm};
use super::request::{Params, allow, flag};
use crate::auth::Identity;
use crate::backend::PowerState;
use crate::error::ApiError;
use crate::state::{ConsoleKind, ConsoleListener, Sim};

pub(super) fn console_proxy(
    sim: &Arc<Sim>,
    who: &Identity,
    node: &str,
    vmid: u32,
    params: &Params,
    vnc: bool,
) -> ApiResult {
    if vnc {
        allow(params, &["websocket", "generate-password"])?;
    } else {
        allow(params, &["serial"])?;
        if let Some(s) = params.get("serial")
            && !["serial0", "serial1", "serial2", "serial3"].contains(&s.as_str())
        {
            return Err(ApiError::param(
                "serial",
                format!(
                    "value '{s}' does not have a value in the enumeration 'serial0, serial1, serial2, serial3'"
                ),
            ));
        }
    }
    let vm = find_vm(sim, node, vmid)?;
    check_vm(sim, who, vmid, "VM.Console")?;
    if vm.status == PowerState::Stopped {
        return Err(ApiError::internal(format!("VM {vmid} not running")));
    }
    // `websocket=1` is accepted; every console here is a websocket one.
    flag(params, "websocket")?;
    let generate = flag(params, "generate-password")?;
    let authid = who.authid();
    let now = sim.clock.now();
    let ticket = sim
        .lock()
        .access
        .vnc_ticket(&authid, &format!("/vms/{vmid}"), now);
    let password = generate.then(|| {
        let mut bytes = [0u8; 6];
        rand::fill(&mut bytes);
        hex::encode(bytes)[..8].to_owned()
    });
    let upid = sim.new_task(
        node,
        if vnc { "vncproxy" } else { "vncshell" },
        &vmid.to_string(),
        &authid,
    );
    let port = {
        let mut st = sim.lock();
        let port = (5900u16..6000)
            .find(|p| !st.consoles.iter().any(|c| c.port == *p))
            .unwrap_or(5900);
        let kind = if vnc {
            ConsoleKind::Vnc {
                password: password.clone().unwrap_or_else(|| ticket.clone()),
            }
        } else {
            ConsoleKind::Term
        };
        st.consoles.push(ConsoleListener {
            vmid,
            port,
            ticket: ticket.clone(),
            authid: authid.clone(),
            kind,
            created: now,
            upid: upid.clone(),
        });
        port
    };
    crate::console::arm_accept_window(sim, &upid, port);
    let mut out =
        json!({ "user": authid, "ticket": ticket, "port": port.to_string(), "upid": upid });
    if let Some(o) = out.as_object_mut() {
        if vnc {
            o.insert("cert".into(), json!(sim.cert_pem));
            if let Some(p) = password {
                o.insert("password".into(), json!(p));
            }
        } else {
            o.insert("port".into(), json!(port));
        }
    }
    Ok(out)
}
