//! Request extractors that fail with porthole's own errors.
//!
//! [`ApiJson`] names the offending field when a body does not parse. [`Caller`] turns a
//! bearer token, or the web UI's session cookie, into the user behind it. [`CsrfForm`] is a
//! web form from a signed-in page whose CSRF token checks out. A cookie is sent by
//! the browser on its own, so a request authenticated by one may change state only if its
//! `Origin` is porthole's own ([`check_origin`]); bearer tokens are never ambient and need no
//! such check.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HOST, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::error::ApiError;
use crate::services::caller::Caller;
use crate::services::{csrf, tokens};

/// Largest JSON body accepted. Uploads use multipart routes with their own limits.
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// A JSON request body. Rejections say which field is wrong and why.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::malformed(
                None,
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let body = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiError::malformed(None, format!("cannot read the request body: {e}")))?;
        parse_json(&body).map(ApiJson)
    }
}

/// Parses `body` as `T`, naming the field at fault on failure.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.inner();
        let message = inner.to_string();
        // serde_json appends " at line L column C"; keep it only for syntax errors, where the
        // position is the useful part.
        let reason = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                return ApiError::malformed(None, format!("malformed JSON: {message}"));
            }
            _ => message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_owned(),
        };
        // The path of a missing field is its parent's; an unknown field's path includes it.
        let field = if reason.starts_with("missing field") {
            reason.split('`').nth(1).map(|f| join_path(&path, f))
        } else if path != "." {
            Some(path)
        } else {
            None
        };
        let message = match &field {
            Some(field) => format!("{field}: {reason}"),
            None => reason,
        };
        ApiError::malformed(field.as_deref(), message)
    })
}

fn join_path(parent: &str, field: &str) -> String {
    if parent == "." {
        field.to_owned()
    } else {
        format!("{parent}.{field}")
    }
}

/// The web UI's session cookie.
pub const SESSION_COOKIE: &str = "porthole_session";
/// The header scripts on porthole's pages send their CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The cookie that binds the login form against CSRF.
pub const LOGIN_COOKIE: &str = "porthole_login";

/// What the `Origin` header says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginCheck {
    /// No `Origin`: not a browser page's request (or a same-origin GET).
    Missing,
    /// porthole's own origin.
    Allowed,
    /// Another site's page.
    Foreign(String),
}

/// The origin porthole is reached at: `--public-url`'s, else the `Host` the request named,
/// with `https` behind a proxy that says `X-Forwarded-Proto: https`.
pub fn own_origin(public_url: Option<&str>, headers: &HeaderMap) -> Option<String> {
    if let Some(public) = public_url {
        return normalize_origin(public);
    }
    let host = headers.get(HOST)?.to_str().ok()?;
    let scheme = if is_behind_tls(headers) {
        "https"
    } else {
        "http"
    };
    normalize_origin(&format!("{scheme}://{host}"))
}

/// Whether the request reached porthole over TLS, as far as a proxy says.
pub fn is_behind_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// `scheme://host[:port]`, lowercase, without a default port or a path.
fn normalize_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    if authority.is_empty() {
        return None;
    }
    let authority = match (scheme.as_str(), authority.rsplit_once(':')) {
        ("http", Some((host, "80"))) | ("https", Some((host, "443"))) => host.to_owned(),
        _ => authority,
    };
    Some(format!("{scheme}://{authority}"))
}

/// Compares the request's `Origin` with porthole's own.
pub fn check_origin(public_url: Option<&str>, headers: &HeaderMap) -> OriginCheck {
    let Some(origin) = headers.get(ORIGIN) else {
        return OriginCheck::Missing;
    };
    let origin = origin.to_str().unwrap_or_default();
    match (normalize_origin(origin), own_origin(public_url, headers)) {
        (Some(theirs), Some(ours)) if theirs == ours => OriginCheck::Allowed,
        _ => OriginCheck::Foreign(origin.to_owned()),
    }
}

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let remote = remote_addr(parts);
        if let Some(header) = parts.headers.get(AUTHORIZATION) {
            let token = header
                .to_str()
                .ok()
                .and_then(|h| h.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    ApiError::Unauthorized("the Authorization header must be `Bearer TOKEN`".into())
                })?;
            return tokens::authenticate(state, token, remote).await;
        }
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(ApiError::Unauthorized(
                "no credentials: send Authorization: Bearer TOKEN (get one with `porthole login`)"
                    .into(),
            ));
        };
        let changes_state = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if changes_state
            && check_origin(state.config.public_url.as_deref(), &parts.headers)
                != OriginCheck::Allowed
        {
            return Err(ApiError::Forbidden(
                "a request signed in by cookie must come from porthole's own pages (Origin check failed)".into(),
            ));
        }
        let caller = tokens::authenticate(state, token, remote).await?;
        // Scripts on porthole's pages send the page's CSRF token; web forms carry it in their
        // body and are checked by their own extractor ([`CsrfForm`]).
        if changes_state && parts.uri.path().starts_with("/api/") {
            let presented = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !csrf::session_token_matches(state, &caller, presented) {
                return Err(csrf::refused());
            }
        }
        Ok(caller)
    }
}

/// The client's address, as the listener saw it.
pub fn remote_addr(parts: &Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0)
}

/// A form posted by a signed-in user from one of porthole's pages: the user, and the
/// fields, which must include a valid `csrf`.
#[derive(Debug)]
pub struct CsrfForm<T> {
    /// Who posted it.
    pub caller: Caller,
    /// The form's other fields.
    pub form: T,
}

/// The token field every form carries.
#[derive(serde::Deserialize)]
struct TokenField {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let caller =
            <Caller as FromRequestParts<AppState>>::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|e| ApiError::malformed(None, format!("cannot read the form: {e}")))?;
        let token: TokenField =
            serde_urlencoded::from_bytes(&bytes).map_err(|_| csrf::refused())?;
        if !csrf::session_token_matches(state, &caller, &token.csrf) {
            return Err(csrf::refused());
        }
        let form = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| ApiError::malformed(None, format!("the form does not parse: {e}")))?;
        Ok(CsrfForm { caller, form })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only parsing is under test")]
    struct Body {
        name: String,
        cores: u32,
    }

    fn field_and_message(json: &str) -> (Option<String>, String) {
        match parse_json::<Body>(json.as_bytes()).unwrap_err() {
            ApiError::Malformed { field, message } => (field, message),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn origins_are_compared_with_porthole_s_own() {
        let h = headers(&[
            ("host", "porthole.lab:8080"),
            ("origin", "http://porthole.lab:8080"),
        ]);
        assert_eq!(check_origin(None, &h), OriginCheck::Allowed);
        let h = headers(&[
            ("host", "porthole.lab"),
            ("origin", "HTTPS://Porthole.Lab:443"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(check_origin(None, &h), OriginCheck::Allowed);
        let h = headers(&[("host", "porthole.lab"), ("origin", "https://evil.example")]);
        assert_eq!(
            check_origin(None, &h),
            OriginCheck::Foreign("https://evil.example".into())
        );
        let h = headers(&[("host", "porthole.lab"), ("origin", "null")]);
        assert!(matches!(check_origin(None, &h), OriginCheck::Foreign(_)));
        assert_eq!(
            check_origin(None, &headers(&[("host", "porthole.lab")])),
            OriginCheck::Missing
        );
        // With a public URL, the Host header does not matter.
        let h = headers(&[
            ("host", "internal:8080"),
            ("origin", "https://vms.club.org"),
        ]);
        assert_eq!(
            check_origin(Some("https://vms.club.org/"), &h),
            OriginCheck::Allowed
        );
        let h = headers(&[
            ("host", "internal:8080"),
            ("origin", "http://internal:8080"),
        ]);
        assert!(matches!(
            check_origin(Some("https://vms.club.org"), &h),
            OriginCheck::Foreign(_)
        ));
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let h = headers(&[
            ("cookie", "a=1; porthole_session_x=2; porthole_session=tok"),
            ("cookie", "b=3"),
        ]);
        assert_eq!(cookie(&h, "porthole_session"), Some("tok"));
        assert_eq!(cookie(&h, "b"), Some("3"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn errors_name_the_field() {
        let (field, message) = field_and_message(r#"{"name": "a", "cores": "two"}"#);
        assert_eq!(field.as_deref(), Some("cores"));
        assert!(message.starts_with("cores: invalid type"), "{message}");

        let (field, message) = field_and_message(r#"{"name": "a", "cores": 1, "colour": 2}"#);
        assert_eq!(field.as_deref(), Some("colour"));
        assert!(message.starts_with("colour: unknown field"), "{message}");

        let (field, message) = field_and_message(r#"{"name": "a"}"#);
        assert_eq!(field.as_deref(), Some("cores"));
        assert_eq!(message, "cores: missing field `cores`");

        let (field, message) = field_and_message(r#"{"name": "a", "#);
        assert_eq!(field, None);
        assert!(message.starts_with("malformed JSON"), "{message}");

        let (field, _) = field_and_message(r#"{"name": "a", "cores": -1}"#);
        assert_eq!(field.as_deref(), Some("cores"));
    }
}
