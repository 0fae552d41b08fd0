//! The HTTP API under `/api2/json`: authentication (ticket cookie with CSRF, or API token),
//! parameter parsing (query string, form or JSON body) and one handler per endpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::auth::Identity;
use crate::backend::PowerState;
use crate::error::ApiError;
use crate::state::{ConsoleKind, ConsoleListener, Pool, Sim, Vm, is_disk_key, parse_size};

/// Request parameters, merged from the query string and the body.
pub type Params = BTreeMap<String, String>;

type ApiResult = Result<Value, ApiError>;

/// Percent-decodes a path segment or cookie value.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..(i + 3).min(s.len())], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the query string and a form or JSON body into [`Params`].
pub fn parse_params(uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<Params, ApiError> {
    let mut params: Params = match uri.query() {
        Some(q) => {
            serde_urlencoded::from_str(q).map_err(|e| ApiError::param("query", e.to_string()))?
        }
        None => Params::new(),
    };
    if body.is_empty() {
        return Ok(params);
    }
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ctype.starts_with("application/json") {
        let v: Map<String, Value> =
            serde_json::from_slice(body).map_err(|e| ApiError::param("body", e.to_string()))?;
        for (k, v) in v {
            let s = match v {
                Value::String(s) => s,
                Value::Bool(b) => if b { "1" } else { "0" }.to_owned(),
                Value::Null => continue,
                other => other.to_string(),
            };
            params.insert(k, s);
        }
    } else {
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| ApiError::param("body", e.to_string()))?;
        params.extend(form);
    }
    Ok(params)
}

/// Finds cookie `name` in the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.split(';').find_map(|kv| {
                let (k, val) = kv.trim().split_once('=')?;
                (k == name).then(|| percent_decode(val))
            })
        })
}

/// Authenticates a request: an API token, else the ticket cookie (plus the CSRF token for
/// anything but GET).
pub fn authenticate(sim: &Sim, method: &Method, headers: &HeaderMap) -> Result<Identity, ApiError> {
    let now = sim.clock.now();
    let st = sim.lock();
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(rest) = auth
            .strip_prefix("PVEAPIToken=")
            .or_else(|| auth.strip_prefix("PVEAPIToken "))
    {
        let (tokenid, secret) = rest
            .split_once('=')
            .ok_or_else(|| ApiError::unauthorized("invalid token value!"))?;
        return st
            .access
            .check_token(tokenid.trim(), secret.trim())
            .ok_or_else(|| ApiError::unauthorized("invalid token value!"));
    }
    let ticket =
        cookie(headers, "PVEAuthCookie").ok_or_else(|| ApiError::unauthorized("No ticket"))?;
    let user = st
        .access
        .verify_ticket(&ticket, now)
        .ok_or_else(|| ApiError::unauthorized("invalid PVE ticket"))?;
    if method != Method::GET {
        let csrf = headers
            .get("CSRFPreventionToken")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !st.access.verify_csrf(&user, csrf, now) {
            return Err(ApiError::unauthorized(
                "Permission check failed (invalid csrf token)",
            ));
        }
    }
    Ok(Identity {
        user,
        token: None,
        by_ticket: true,
    })
}

/// The single entry point for every `/api2/json` route except the websocket.
pub async fn dispatch(
    AxState(sim): AxState<Arc<Sim>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match handle(&sim, &method, &uri, &headers, &body).await {
        Ok(data) => Json(json!({ "data": data })).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn handle(
    sim: &Arc<Sim>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult {
    let Some(path) = uri.path().strip_prefix("/api2/json") else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "Not Implemented",
        ));
    };
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let params = parse_params(uri, headers, body)?;
    if method == Method::POST && segs == ["access", "ticket"] {
        return login(sim, &params);
    }
    if method == Method::GET && segs == ["access", "ticket"] {
        return Ok(Value::Null);
    }
    let who = authenticate(sim, method, headers)?;
    let m = method.as_str();
    match (m, segs.as_slice()) {
        ("GET", ["version"]) => {
            allow(&params, &[])?;
            Ok(json!({ "version": "8.2.4", "release": "8.2", "repoid": "faa83925c9641325" }))
        }
        ("GET", ["access", "permissions"]) => permissions(sim, &who, &params),
        ("GET", ["cluster", "resources"]) => resources(sim, &who, &params).await,
        ("GET", ["cluster", "nextid"]) => nextid(sim, &params),
        ("GET", ["nodes"]) => nodes(sim, &who),
        ("GET", ["pools"]) => pools(sim, &who, &params),
        ("POST", ["pools"]) => create_pool(sim, &who, &params),
        ("GET", ["pools", id]) => pool(sim, &who, id),
        ("PUT", ["pools", id]) => update_pool(sim, &who, id, &params),
        ("DELETE", ["pools", id]) => delete_pool(sim, &who, id),
        ("GET", ["nodes", node, "qemu"]) => list_qemu(sim, &who, node).await,
        ("POST", ["nodes", node, "qemu"]) => create_vm(sim, &who, node, &params),
        ("GET", ["nodes", node, "tasks", upid, "status"]) => task_status(sim, &who, node, upid),
        ("GET", ["nodes", node, "tasks", upid, "log"]) => task_log(sim, &who, node, upid),
        (_, ["nodes", node, "qemu", vmid, rest @ ..]) => {
            let vmid = parse_vmid(vmid)?;
            vm_endpoint(sim, &who, m, node, vmid, rest, &params).await
        }
        _ => Err(ApiError::not_implemented(m, path)),
    }
}

async fn vm_endpoint(
    sim: &Arc<Sim>,
    who: &Identity,
    m: &str,
    node: &str,
    vmid: u32,
    rest: &[&str],
    params: &Params,
) -> ApiResult {
    match (m, rest) {
        ("DELETE", []) => destroy_vm(sim, who, node, vmid, params),
        ("GET", ["config"]) => get_config(sim, who, node, vmid),
        ("POST", ["config"]) => set_config(sim, who, node, vmid, params, true),
        ("PUT", ["config"]) => set_config(sim, who, node, vmid, params, false),
        ("GET", ["status", "current"]) => status_current(sim, who, node, vmid).await,
        ("POST", ["status", action]) => power(sim, who, node, vmid, action, params),
        ("POST", ["clone"]) => clone_vm(sim, who, node, vmid, params),
        ("PUT", ["resize"]) => resize_disk(sim, who, node, vmid, params),
        ("POST", ["vncproxy"]) => console_proxy(sim, who, node, vmid, params, true),
        ("POST", ["termproxy"]) => console_proxy(sim, who, node, vmid, params, false),
        _ => Err(ApiError::not_implemented(
            m,
            &format!("/nodes/{node}/qemu/{vmid}/{}", rest.join("/")),
        )),
    }
}

/// Rejects parameters the schema does not define.
fn allow(params: &Params, known: &[&str]) -> Result<(), ApiError> {
    for k in params.keys() {
        if !known.contains(&k.as_str()) {
            return Err(ApiError::param(
                k,
                "property is not defined in schema and the schema does not allow additional properties",
            ));
        }
    }
    Ok(())
}

fn parse_int(name: &str, v: &str) -> Result<i64, ApiError> {
    v.trim()
        .parse()
        .map_err(|_| ApiError::param(name, format!("type check ('integer') failed - got '{v}'")))
}

fn parse_vmid(v: &str) -> Result<u32, ApiError> {
    let n = parse_int("vmid", v)?;
    if !(100..=999_999_999).contains(&n) {
        return Err(ApiError::param(
            "vmid",
            if n < 100 {
                "value must have a minimum value of 100"
            } else {
                "value must have a maximum value of 999999999"
            },
        ));
    }
    u32::try_from(n).map_err(|_| ApiError::param("vmid", "out of range"))
}

fn parse_bool(name: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ApiError::param(
            name,
            format!("type check ('boolean') failed - got '{v}'"),
        )),
    }
}

fn flag(params: &Params, name: &str) -> Result<bool, ApiError> {
    params.get(name).map_or(Ok(false), |v| parse_bool(name, v))
}

fn require<'a>(params: &'a Params, name: &str) -> Result<&'a str, ApiError> {
    params
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| ApiError::param(name, "property is missing and it is not optional"))
}

fn check(
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
fn check_vm(sim: &Sim, who: &Identity, vmid: u32, privilege: &str) -> Result<(), ApiError> {
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
fn find_vm(sim: &Sim, node: &str, vmid: u32) -> Result<Vm, ApiError> {
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

fn node_exists(sim: &Sim, node: &str) -> Result<(), ApiError> {
    if sim.lock().nodes.contains_key(node) {
        Ok(())
    } else {
        Err(ApiError::param(
            "node",
            format!("no such cluster node '{node}'"),
        ))
    }
}

fn login(sim: &Sim, params: &Params) -> ApiResult {
    allow(
        params,
        &[
            "username",
            "password",
            "realm",
            "otp",
            "path",
            "privs",
            "new-format",
            "tfa-challenge",
        ],
    )?;
    let username = require(params, "username")?;
    let password = require(params, "password")?;
    let user = match (username.contains('@'), params.get("realm")) {
        (true, _) => username.to_owned(),
        (false, Some(realm)) => format!("{username}@{realm}"),
        (false, None) => {
            return Err(ApiError::param(
                "username",
                "value does not match the regex pattern",
            ));
        }
    };
    let now = sim.clock.now();
    let st = sim.lock();
    let realm_ok = user
        .rsplit_once('@')
        .is_some_and(|(_, r)| st.access.realms.contains(r));
    // Renewal: a still-valid ticket for the same user works as the password.
    let renewed = password.starts_with("PVE:")
        && st.access.verify_ticket(password, now).as_deref() == Some(user.as_str());
    if !realm_ok || !(renewed || st.access.check_password(&user, password)) {
        return Err(ApiError::unauthorized("authentication failure"));
    }
    let who = Identity {
        user: user.clone(),
        token: None,
        by_ticket: true,
    };
    let mut cap = Map::new();
    for (group, prefix) in [
        ("vms", "VM."),
        ("storage", "Datastore."),
        ("access", "User."),
        ("nodes", "Sys."),
        ("dc", "Sys."),
        ("sdn", "SDN."),
    ] {
        let path = match group {
            "vms" => "/vms",
            "storage" => "/storage",
            "nodes" => "/nodes",
            "access" => "/access",
            "sdn" => "/sdn",
            _ => "/",
        };
        let privs: Map<String, Value> = st
            .access
            .privileges(&who, path, None)
            .into_iter()
            .filter(|p| p.starts_with(prefix))
            .map(|p| (p, json!(1)))
            .collect();
        cap.insert(group.to_owned(), Value::Object(privs));
    }
    Ok(json!({
        "ticket": st.access.ticket(&user, now),
        "CSRFPreventionToken": st.access.csrf_token(&user, now),
        "username": user,
        "clustername": "porthole-sim",
        "cap": cap,
    }))
}

fn privs_object(privs: BTreeSet<String>) -> Value {
    Value::Object(privs.into_iter().map(|p| (p, json!(1))).collect())
}

fn permissions(sim: &Sim, who: &Identity, params: &Params) -> ApiResult {
    allow(params, &["path", "userid"])?;
    let st = sim.lock();
    let target = match params.get("userid") {
        Some(u) if *u != who.authid() => {
            if !st.access.has(who, "/access", None, "Sys.Audit") {
                return Err(ApiError::forbidden("/access", "Sys.Audit"));
            }
            match u.split_once('!') {
                Some((user, tok)) => Identity {
                    user: user.to_owned(),
                    token: Some(tok.to_owned()),
                    by_ticket: false,
                },
                None => Identity {
                    user: u.clone(),
                    token: None,
                    by_ticket: false,
                },
            }
        }
        _ => who.clone(),
    };
    let pool_of = |path: &str| {
        path.strip_prefix("/vms/")
            .and_then(|id| id.parse::<u32>().ok())
            .and_then(|id| st.vms.get(&id))
            .and_then(|v| v.pool.clone())
    };
    let mut out = Map::new();
    if let Some(path) = params.get("path") {
        out.insert(
            path.clone(),
            privs_object(
                st.access
                    .privileges(&target, path, pool_of(path).as_deref()),
            ),
        );
        return Ok(Value::Object(out));
    }
    let mut paths: BTreeSet<String> = ["/".to_owned(), "/vms".to_owned()].into();
    if let Some(u) = st.access.users.get(&target.user) {
        paths.extend(u.acls.iter().map(|a| a.path.clone()));
    }
    paths.extend(st.vms.keys().map(|id| format!("/vms/{id}")));
    for path in paths {
        let privs = st
            .access
            .privileges(&target, &path, pool_of(&path).as_deref());
        if !privs.is_empty() {
            out.insert(path, privs_object(privs));
        }
    }
    Ok(Value::Object(out))
}

/// Asks the backend for each VM's power state, so guests that died are seen stopped.
async fn refresh(sim: &Sim, ids: &[u32]) {
    for &id in ids {
        if let Ok(state) = sim.backend.status(id).await {
            let mut st = sim.lock();
            if let Some(vm) = st.vms.get_mut(&id)
                && vm.status != PowerState::Stopped
                && state == PowerState::Stopped
            {
                vm.status = PowerState::Stopped;
                vm.started_at = None;
            }
        }
    }
}

fn status_word(s: PowerState) -> &'static str {
    if s == PowerState::Stopped {
        "stopped"
    } else {
        "running"
    }
}

fn vm_summary(vm: &Vm, now: i64) -> Map<String, Value> {
    let running = vm.status != PowerState::Stopped;
    let maxmem = vm.memory_mib() << 20;
    let mut m = Map::new();
    m.insert("name".into(), json!(vm.name()));
    m.insert("status".into(), json!(status_word(vm.status)));
    m.insert("maxmem".into(), json!(maxmem));
    m.insert("mem".into(), json!(if running { maxmem / 3 } else { 0 }));
    m.insert("maxdisk".into(), json!(vm.disk_bytes()));
    m.insert("disk".into(), json!(0));
    m.insert("cpu".into(), json!(if running { 0.0123 } else { 0.0 }));
    m.insert(
        "uptime".into(),
        json!(vm.started_at.map_or(0, |t| (now - t).max(0))),
    );
    m.insert("netin".into(), json!(0));
    m.insert("netout".into(), json!(0));
    m.insert("diskread".into(), json!(0));
    m.insert("diskwrite".into(), json!(0));
    if vm.template {
        m.insert("template".into(), json!(1));
    }
    m
}

async fn resources(sim: &Sim, who: &Identity, params: &Params) -> ApiResult {
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
            let mut m = vm_summary(vm, now);
            m.insert("id".into(), json!(format!("qemu/{}", vm.vmid)));
            m.insert("type".into(), json!("qemu"));
            m.insert("vmid".into(), json!(vm.vmid));
            m.insert("node".into(), json!(vm.node));
            m.insert("maxcpu".into(), json!(vm.cpus()));
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

fn nextid(sim: &Sim, params: &Params) -> ApiResult {
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

fn nodes(sim: &Sim, who: &Identity) -> ApiResult {
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

async fn list_qemu(sim: &Sim, who: &Identity, node: &str) -> ApiResult {
    node_exists(sim, node)?;
    let ids: Vec<u32> = sim
        .lock()
        .vms
        .values()
        .filter(|v| v.node == node)
        .map(|v| v.vmid)
        .collect();
    refresh(sim, &ids).await;
    let now = sim.clock.now();
    let st = sim.lock();
    let out = st
        .vms
        .values()
        .filter(|v| {
            v.node == node
                && st.access.has(
                    who,
                    &format!("/vms/{}", v.vmid),
                    v.pool.as_deref(),
                    "VM.Audit",
                )
        })
        .map(|vm| {
            let mut m = vm_summary(vm, now);
            // A variant real servers send: vmid as a string in this list.
            m.insert("vmid".into(), json!(vm.vmid.to_string()));
            m.insert("cpus".into(), json!(vm.cpus()));
            Value::Object(m)
        })
        .collect();
    Ok(Value::Array(out))
}

/// Config keys the simulator accepts, beyond the numbered device slots.
const CONFIG_KEYS: &[&str] = &[
    "name",
    "memory",
    "balloon",
    "cores",
    "sockets",
    "cpu",
    "vcpus",
    "ostype",
    "description",
    "onboot",
    "boot",
    "bootdisk",
    "scsihw",
    "agent",
    "vga",
    "tags",
    "bios",
    "machine",
    "kvm",
    "numa",
    "tablet",
    "protection",
    "ciuser",
    "cipassword",
    "sshkeys",
    "ipconfig0",
    "nameserver",
    "searchdomain",
    "cdrom",
    "hotplug",
    "acpi",
    "localtime",
    "startup",
];

fn is_config_key(k: &str) -> bool {
    CONFIG_KEYS.contains(&k)
        || is_disk_key(k)
        || ["net", "serial", "usb", "hostpci", "unused", "ipconfig"]
            .iter()
            .any(|p| {
                k.strip_prefix(p)
                    .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
            })
}

/// The privilege PVE wants to change a config key.
fn config_privilege(k: &str, v: &str) -> &'static str {
    match k {
        "memory" | "balloon" => "VM.Config.Memory",
        "cores" | "sockets" | "cpu" | "vcpus" | "numa" => "VM.Config.CPU",
        "cdrom" => "VM.Config.CDROM",
        k if is_disk_key(k) && v.contains("media=cdrom") => "VM.Config.CDROM",
        k if is_disk_key(k) || k.starts_with("unused") => "VM.Config.Disk",
        k if k.starts_with("net") => "VM.Config.Network",
        "ciuser" | "cipassword" | "sshkeys" | "nameserver" | "searchdomain" => {
            "VM.Config.Cloudinit"
        }
        k if k.starts_with("ipconfig") => "VM.Config.Cloudinit",
        "scsihw" | "vga" | "bios" | "machine" | "tablet" | "acpi" => "VM.Config.HWType",
        _ => "VM.Config.Options",
    }
}

fn validate_config_value(k: &str, v: &str) -> Result<String, ApiError> {
    match k {
        "memory" => {
            let n = parse_int(k, v)?;
            if n < 16 {
                return Err(ApiError::param(k, "value must have a minimum value of 16"));
            }
            Ok(n.to_string())
        }
        "cores" | "sockets" => {
            let n = parse_int(k, v)?;
            if n < 1 {
                return Err(ApiError::param(k, "value must have a minimum value of 1"));
            }
            Ok(n.to_string())
        }
        "name" => {
            let ok = !v.is_empty()
                && v.len() <= 63
                && v.split('.').all(|l| {
                    !l.is_empty()
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if ok {
                Ok(v.to_owned())
            } else {
                Err(ApiError::param(
                    k,
                    "value does not look like a valid DNS name",
                ))
            }
        }
        _ if is_disk_key(k) && !v.contains("media=cdrom") => {
            // `STORAGE:SIZE_IN_GiB` allocates a new volume; anything else is kept as given.
            let first = v.split(',').next().unwrap_or("");
            match first.split_once(':') {
                Some((storage, size))
                    if !size.is_empty() && size.chars().all(|c| c.is_ascii_digit()) =>
                {
                    Ok(format!("{storage}:vm-disk-{k},size={size}G"))
                }
                _ => Ok(v.to_owned()),
            }
        }
        _ => Ok(v.to_owned()),
    }
}

fn digest(config: &BTreeMap<String, String>) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for (k, v) in config {
        h.update(format!("{k}: {v}\n").as_bytes());
    }
    hex::encode(&h.finalize()[..20])
}

fn get_config(sim: &Sim, who: &Identity, node: &str, vmid: u32) -> ApiResult {
    let vm = find_vm(sim, node, vmid)?;
    check_vm(sim, who, vmid, "VM.Audit")?;
    let mut m = Map::new();
    for (k, v) in &vm.config {
        let value = match k.as_str() {
            // A variant real servers send: memory as a string; cores and sockets as numbers.
            "memory" => json!(v),
            "cores" | "sockets" | "onboot" | "balloon" => {
                v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n))
            }
            _ => json!(v),
        };
        m.insert(k.clone(), value);
    }
    if vm.template {
        m.insert("template".into(), json!(1));
    }
    m.insert("digest".into(), json!(digest(&vm.config)));
    Ok(Value::Object(m))
}

fn set_config(
    sim: &Arc<Sim>,
    who: &Identity,
    node: &str,
    vmid: u32,
    params: &Params,
    asynchronous: bool,
) -> ApiResult {
    let vm = find_vm(sim, node, vmid)?;
    let mut changes = BTreeMap::new();
    let mut deletes = Vec::new();
    for (k, v) in params {
        match k.as_str() {
            "digest" | "skiplock" | "background_delay" | "revert" => {}
            "delete" => deletes.extend(
                v.split([',', ';', ' '])
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            ),
            k if is_config_key(k) => {
                changes.insert(k.to_owned(), validate_config_value(k, v)?);
            }
            k => {
                return Err(ApiError::param(
                    k,
                    "property is not defined in schema and the schema does not allow additional properties",
                ));
            }
        }
    }
    for (k, v) in &changes {
        check_vm(sim, who, vmid, config_privilege(k, v))?;
    }
    for k in &deletes {
        if !is_config_key(k) {
            return Err(ApiError::param(
                "delete",
                format!("invalid configuration key '{k}'"),
            ));
        }
        check_vm(sim, who, vmid, config_privilege(k, ""))?;
    }
    if changes.is_empty() && deletes.is_empty() {
        return Err(ApiError::internal("no options specified"));
    }
    if let Some(d) = params.get("digest")
        && *d != digest(&vm.config)
    {
        return Err(ApiError::internal(
            "detected modified configuration - file changed by other user? Try again.",
        ));
    }
    {
        let mut st = sim.lock();
        if let Some(vm) = st.vms.get_mut(&vmid) {
            vm.config.extend(changes);
            for k in &deletes {
                vm.config.remove(k);
            }
        }
    }
    if asynchronous {
        Ok(json!(sim.spawn_task(
            node,
            "qmconfig",
            &vmid.to_string(),
            &who.authid(),
            async { Ok(()) }
        )))
    } else {
        Ok(Value::Null)
    }
}

async fn status_current(sim: &Sim, who: &Identity, node: &str, vmid: u32) -> ApiResult {
    find_vm(sim, node, vmid)?;
    check_vm(sim, who, vmid, "VM.Audit")?;
    refresh(sim, &[vmid]).await;
    let vm = find_vm(sim, node, vmid)?;
    let mut m = vm_summary(&vm, sim.clock.now());
    m.insert("vmid".into(), json!(vmid));
    m.insert("cpus".into(), json!(vm.cpus()));
    let qmp = match vm.status {
        PowerState::Stopped => "stopped",
        PowerState::Running => "running",
        PowerState::Paused => "paused",
    };
    m.insert("qmpstatus".into(), json!(qmp));
    m.insert("ha".into(), json!({"managed": 0}));
    if vm.status != PowerState::Stopped {
        m.insert("pid".into(), json!(40_000 + vmid));
        m.insert("running-qemu".into(), json!("9.0.2"));
        m.insert("running-machine".into(), json!("pc-i440fx-9.0+pve0"));
    }
    Ok(Value::Object(m))
}

fn set_status(sim: &Sim, vmid: u32, status: PowerState) {
    let now = sim.clock.now();
    let mut st = sim.lock();
    if let Some(vm) = st.vms.get_mut(&vmid) {
        if vm.status == PowerState::Stopped && status != PowerState::Stopped {
            vm.started_at = Some(now);
        }
        if status == PowerState::Stopped {
            vm.started_at = None;
        }
        vm.status = status;
    }
}

fn power(
    sim: &Arc<Sim>,
    who: &Identity,
    node: &str,
    vmid: u32,
    action: &str,
    params: &Params,
) -> ApiResult {
    let vm = find_vm(sim, node, vmid)?;
    let (kind, known): (&str, &[&str]) = match action {
        "start" => (
            "qmstart",
            &[
                "skiplock",
                "stateuri",
                "migratedfrom",
                "migration_type",
                "migration_network",
                "machine",
                "timeout",
                "force-cpu",
                "targetstorage",
            ],
        ),
        "stop" => (
            "qmstop",
            &[
                "skiplock",
                "timeout",
                "keepActive",
                "migratedfrom",
                "overrule-shutdown",
            ],
        ),
        "shutdown" => (
            "qmshutdown",
            &["skiplock", "timeout", "forceStop", "keepActive"],
        ),
        "reset" => ("qmreset", &["skiplock"]),
        "suspend" => ("qmsuspend", &["skiplock", "todisk", "statestorage"]),
        "resume" => ("qmresume", &["skiplock", "nocheck"]),
        other => {
            return Err(ApiError::not_implemented(
                "POST",
                &format!("/nodes/{node}/qemu/{vmid}/status/{other}"),
            ));
        }
    };
    allow(params, known)?;
    check_vm(sim, who, vmid, "VM.PowerMgmt")?;
    match (action, vm.status) {
        ("start", PowerState::Running | PowerState::Paused) => {
            return Err(ApiError::internal(format!("VM {vmid} already running")));
        }
        ("shutdown" | "reset" | "suspend", PowerState::Stopped)
        | ("resume", PowerState::Stopped) => {
            return Err(ApiError::internal(format!("VM {vmid} not running")));
        }
        _ => {}
    }
    if vm.template && action == "start" {
        return Err(ApiError::internal(
            "you can't start a vm if it's a template",
        ));
    }
    let backend = Arc::clone(&sim.backend);
    let s = Arc::clone(sim);
    let action = action.to_owned();
    let work = async move {
        let result = match action.as_str() {
            "start" => backend.start(vmid).await.map(|()| PowerState::Running),
            "stop" | "shutdown" => backend.stop(vmid).await.map(|()| PowerState::Stopped),
            "reset" => match backend.stop(vmid).await {
                Ok(()) => backend.start(vmid).await.map(|()| PowerState::Running),
                Err(e) => Err(e),
            },
            "suspend" => backend.suspend(vmid).await.map(|()| PowerState::Paused),
            _ => backend.resume(vmid).await.map(|()| PowerState::Running),
        };
        match result {
            Ok(state) => {
                set_status(&s, vmid, state);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    };
    Ok(json!(sim.spawn_task(
        node,
        kind,
        &vmid.to_string(),
        &who.authid(),
        work
    )))
}

const CREATE_EXTRA: &[&str] = &[
    "vmid",
    "node",
    "pool",
    "start",
    "storage",
    "archive",
    "force",
    "unique",
    "live-restore",
];

fn create_vm(sim: &Arc<Sim>, who: &Identity, node: &str, params: &Params) -> ApiResult {
    node_exists(sim, node)?;
    let vmid = parse_vmid(require(params, "vmid")?)?;
    let mut config = BTreeMap::new();
    for (k, v) in params {
        if CREATE_EXTRA.contains(&k.as_str()) {
            continue;
        }
        if !is_config_key(k) {
            return Err(ApiError::param(
                k,
                "property is not defined in schema and the schema does not allow additional properties",
            ));
        }
        config.insert(k.clone(), validate_config_value(k, v)?);
    }
    let pool = params.get("pool").cloned();
    match &pool {
        Some(p) => {
            if !sim.lock().pools.contains_key(p) {
                return Err(ApiError::internal(format!("pool '{p}' does not exist")));
            }
            check(sim, who, &format!("/pool/{p}"), None, "VM.Allocate")?;
        }
        None => check(sim, who, &format!("/vms/{vmid}"), None, "VM.Allocate")?,
    }
    for (k, v) in &config {
        if is_disk_key(k) && !v.contains("media=cdrom") {
            let storage = v.split(':').next().unwrap_or("local");
            check(
                sim,
                who,
                &format!("/storage/{storage}"),
                None,
                "Datastore.AllocateSpace",
            )?;
        }
    }
    let start = flag(params, "start")?;
    config
        .entry("memory".into())
        .or_insert_with(|| "512".into());
    config.entry("cores".into()).or_insert_with(|| "1".into());
    config.entry("sockets".into()).or_insert_with(|| "1".into());
    config
        .entry("smbios1".into())
        .or_insert_with(|| format!("uuid=00000000-0000-4000-8000-{vmid:012}"));
    let vm = Vm {
        vmid,
        node: node.to_owned(),
        pool,
        config,
        status: PowerState::Stopped,
        started_at: None,
        template: false,
    };
    insert_vm(sim, &vm)?;
    let backend = Arc::clone(&sim.backend);
    let s = Arc::clone(sim);
    let spec = vm.spec();
    let work = async move {
        backend
            .create(vmid, &spec)
            .await
            .map_err(|e| e.to_string())?;
        if start {
            backend.start(vmid).await.map_err(|e| e.to_string())?;
            set_status(&s, vmid, PowerState::Running);
        }
        Ok(())
    };
    Ok(json!(sim.spawn_task(
        node,
        "qmcreate",
        &vmid.to_string(),
        &who.authid(),
        work
    )))
}

fn insert_vm(sim: &Sim, vm: &Vm) -> Result<(), ApiError> {
    let mut st = sim.lock();
    if let Some(existing) = st.vms.get(&vm.vmid) {
        return Err(ApiError::internal(format!(
            "unable to create VM {} - VM {} already exists on node '{}'",
            vm.vmid, vm.vmid, existing.node
        )));
    }
    st.vms.insert(vm.vmid, vm.clone());
    Ok(())
}

fn clone_vm(sim: &Arc<Sim>, who: &Identity, node: &str, vmid: u32, params: &Params) -> ApiResult {
    allow(
        params,
        &[
            "newid",
            "name",
            "full",
            "pool",
            "target",
            "description",
            "storage",
            "format",
            "snapname",
            "bwlimit",
        ],
    )?;
    let src = find_vm(sim, node, vmid)?;
    let newid = parse_vmid(require(params, "newid")?)?;
    check_vm(sim, who, vmid, "VM.Clone")?;
    let pool = params.get("pool").cloned();
    match &pool {
        Some(p) => {
            if !sim.lock().pools.contains_key(p) {
                return Err(ApiError::internal(format!("pool '{p}' does not exist")));
            }
            check(sim, who, &format!("/pool/{p}"), None, "VM.Allocate")?;
        }
        None => check(sim, who, &format!("/vms/{newid}"), None, "VM.Allocate")?,
    }
    let target = params
        .get("target")
        .cloned()
        .unwrap_or_else(|| node.to_owned());
    node_exists(sim, &target)
        .map_err(|_| ApiError::param("target", format!("no such cluster node '{target}'")))?;
    let full = match params.get("full") {
        Some(v) => parse_bool("full", v)?,
        None => !src.template,
    };
    if !full && !src.template {
        return Err(ApiError::internal(
            "Linked clone feature is not supported for drive 'scsi0'",
        ));
    }
    if params.contains_key("storage") && !full {
        return Err(ApiError::param(
            "storage",
            "option is only allowed for full clones",
        ));
    }
    if let Some(name) = params.get("name") {
        validate_config_value("name", name)?;
    }
    let mut config = src.config.clone();
    config.insert(
        "name".into(),
        params
            .get("name")
            .cloned()
            .unwrap_or_else(|| format!("Copy-of-VM-{}", src.name())),
    );
    if let Some(d) = params.get("description") {
        config.insert("description".into(), d.clone());
    }
    for v in config
        .iter_mut()
        .filter(|(k, _)| is_disk_key(k))
        .map(|(_, v)| v)
    {
        *v = v.replace(&format!("vm-{vmid}-"), &format!("vm-{newid}-"));
    }
    let vm = Vm {
        vmid: newid,
        node: target,
        pool,
        config,
        status: PowerState::Stopped,
        started_at: None,
        template: false,
    };
    insert_vm(sim, &vm)?;
    let backend = Arc::clone(&sim.backend);
    let spec = vm.spec();
    let work = async move {
        backend
            .create(newid, &spec)
            .await
            .map_err(|e| e.to_string())
    };
    Ok(json!(sim.spawn_task(
        node,
        "qmclone",
        &vmid.to_string(),
        &who.authid(),
        work
    )))
}

fn destroy_vm(sim: &Arc<Sim>, who: &Identity, node: &str, vmid: u32, params: &Params) -> ApiResult {
    allow(params, &["purge", "skiplock", "destroy-unreferenced-disks"])?;
    let vm = find_vm(sim, node, vmid)?;
    check_vm(sim, who, vmid, "VM.Allocate")?;
    if vm.status != PowerState::Stopped {
        return Err(ApiError::internal(format!(
            "VM {vmid} is running - destroy failed"
        )));
    }
    sim.lock().vms.remove(&vmid);
    let backend = Arc::clone(&sim.backend);
    let work = async move { backend.destroy(vmid).await.map_err(|e| e.to_string()) };
    Ok(json!(sim.spawn_task(
        node,
        "qmdestroy",
        &vmid.to_string(),
        &who.authid(),
        work
    )))
}

/// `PUT /nodes/{node}/qemu/{vmid}/resize`: grows a disk to `size` (`32G`) or by it
/// (`+4G`); shrinking is refused, as on PVE. Answers with the task's UPID (PVE 8 and later).
fn resize_disk(
    sim: &Arc<Sim>,
    who: &Identity,
    node: &str,
    vmid: u32,
    params: &Params,
) -> ApiResult {
    allow(params, &["disk", "size", "digest", "skiplock"])?;
    find_vm(sim, node, vmid)?;
    check_vm(sim, who, vmid, "VM.Config.Disk")?;
    let disk = params
        .get("disk")
        .ok_or_else(|| ApiError::param("disk", "property is missing and it is not optional"))?;
    let size = params
        .get("size")
        .ok_or_else(|| ApiError::param("size", "property is missing and it is not optional"))?;
    let (relative, amount) = match size.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, size.as_str()),
    };
    let valid = amount.trim_end_matches(['K', 'M', 'G', 'T']);
    if valid.is_empty() || !valid.chars().all(|c| c.is_ascii_digit()) {
        return Err(ApiError::param(
            "size",
            "value does not match the regex pattern",
        ));
    }
    let mut st = sim.lock();
    let vm = st.vms.get_mut(&vmid).ok_or_else(|| {
        ApiError::internal(format!(
            "Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"
        ))
    })?;
    let value = vm
        .config
        .get(disk.as_str())
        .filter(|v| !v.contains("media=cdrom"))
        .cloned()
        .ok_or_else(|| ApiError::param("disk", format!("disk '{disk}' does not exist")))?;
    let current = value
        .split(',')
        .find_map(|p| p.strip_prefix("size="))
        .map(parse_size)
        .unwrap_or(0);
    let wanted = if relative {
        current + parse_size(amount)
    } else {
        parse_size(amount)
    };
    if wanted < current {
        return Err(ApiError::internal("shrinking disks is not supported"));
    }
    let resized: Vec<String> = value
        .split(',')
        .filter(|p| !p.starts_with("size="))
        .map(str::to_owned)
        .chain([format!("size={}G", wanted.div_ceil(1 << 30))])
        .collect();
    vm.config.insert(disk.clone(), resized.join(","));
    drop(st);
    Ok(json!(sim.spawn_task(
        node,
        "resize",
        &vmid.to_string(),
        &who.authid(),
        async { Ok(()) }
    )))
}

fn pools(sim: &Sim, who: &Identity, params: &Params) -> ApiResult {
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

fn create_pool(sim: &Sim, who: &Identity, params: &Params) -> ApiResult {
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

fn pool(sim: &Sim, who: &Identity, id: &str) -> ApiResult {
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
        .map(|vm| {
            let mut m = vm_summary(vm, now);
            m.insert("id".into(), json!(format!("qemu/{}", vm.vmid)));
            m.insert("type".into(), json!("qemu"));
            m.insert("vmid".into(), json!(vm.vmid));
            m.insert("node".into(), json!(vm.node));
            m.insert("maxcpu".into(), json!(vm.cpus()));
            Value::Object(m)
        })
        .collect();
    let mut out = json!({ "members": members });
    if let (Some(c), Some(o)) = (&pool.comment, out.as_object_mut()) {
        o.insert("comment".into(), json!(c));
    }
    Ok(out)
}

fn update_pool(sim: &Sim, who: &Identity, id: &str, params: &Params) -> ApiResult {
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

fn delete_pool(sim: &Sim, who: &Identity, id: &str) -> ApiResult {
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

fn task_status(sim: &Sim, who: &Identity, node: &str, upid: &str) -> ApiResult {
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

fn task_log(sim: &Sim, who: &Identity, node: &str, upid: &str) -> ApiResult {
    let task = find_task(sim, who, node, upid)?;
    Ok(Value::Array(
        task.log
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"n": i + 1, "t": t}))
            .collect(),
    ))
}

fn console_proxy(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("UPID%3Apve1%3A0001%3A"), "UPID:pve1:0001:");
        assert_eq!(percent_decode("a%2"), "a%2");
    }

    #[test]
    fn config_privileges() {
        assert_eq!(config_privilege("memory", "2048"), "VM.Config.Memory");
        assert_eq!(
            config_privilege("ide2", "local:iso/x.iso,media=cdrom"),
            "VM.Config.CDROM"
        );
        assert_eq!(config_privilege("scsi0", "local-lvm:32"), "VM.Config.Disk");
        assert_eq!(
            config_privilege("net0", "virtio,bridge=vmbr0"),
            "VM.Config.Network"
        );
    }
}
