//! `/access`: `POST /access/ticket` (login, which also renews a still-valid ticket, and
//! answers with the CSRF token and the caller's capabilities) and `GET /access/permissions`
//! (the privileges a user or token holds, per ACL path).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::ApiResult;
use super::request::{Params, allow, require};
use crate::auth::Identity;
use crate::error::ApiError;
use crate::state::Sim;

pub(super) fn login(sim: &Sim, params: &Params) -> ApiResult {
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

pub(super) fn permissions(sim: &Sim, who: &Identity, params: &Params) -> ApiResult {
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
