//! What a request carries, read into plain values: [`Params`] merged from the query string and
//! a form or JSON body, the caller's [`Identity`] (an API token, or the ticket cookie plus the
//! CSRF token), and the typed parameter readers every handler uses (`allow` rejects what the
//! schema does not define, `require`, `flag`, `parse_vmid` and the like check the rest).

use std::collections::BTreeMap;

use axum::http::{HeaderMap, Method, Uri, header};
use serde_json::{Map, Value};

use crate::auth::Identity;
use crate::error::ApiError;
use crate::state::Sim;

/// Request parameters, merged from the query string and the body.
pub type Params = BTreeMap<String, String>;

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

/// Rejects parameters the schema does not define.
pub(super) fn allow(params: &Params, known: &[&str]) -> Result<(), ApiError> {
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

pub(super) fn parse_int(name: &str, v: &str) -> Result<i64, ApiError> {
    v.trim()
        .parse()
        .map_err(|_| ApiError::param(name, format!("type check ('integer') failed - got '{v}'")))
}

pub(super) fn parse_vmid(v: &str) -> Result<u32, ApiError> {
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

pub(super) fn parse_bool(name: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ApiError::param(
            name,
            format!("type check ('boolean') failed - got '{v}'"),
        )),
    }
}

pub(super) fn flag(params: &Params, name: &str) -> Result<bool, ApiError> {
    params.get(name).map_or(Ok(false), |v| parse_bool(name, v))
}

pub(super) fn require<'a>(params: &'a Params, name: &str) -> Result<&'a str, ApiError> {
    params
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| ApiError::param(name, "property is missing and it is not optional"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("UPID%3Apve1%3A0001%3A"), "UPID:pve1:0001:");
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
