//! Errors as Proxmox sends them: the message in the HTTP reason phrase, a JSON body with
//! `data: null`, and for parameter errors (400) an `errors` object naming each bad parameter.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An API error, rendered the way `pveproxy` renders it.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The message, sent as the reason phrase.
    pub message: String,
    /// Per-parameter problems (400 only).
    pub errors: Option<BTreeMap<String, String>>,
}

impl ApiError {
    /// An error with a status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            errors: None,
        }
    }

    /// 401 with a message (`No ticket`, `invalid PVE ticket`, ...).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403 `Permission check failed (PATH, PRIV)`.
    pub fn forbidden(path: &str, privilege: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            format!("Permission check failed ({path}, {privilege})"),
        )
    }

    /// 400 `Parameter verification failed.` with one bad parameter.
    pub fn param(name: &str, problem: impl Into<String>) -> Self {
        let mut errors = BTreeMap::new();
        errors.insert(name.to_owned(), problem.into());
        Self {
            status: StatusCode::BAD_REQUEST,
            message: "Parameter verification failed.".to_owned(),
            errors: Some(errors),
        }
    }

    /// 500 with a message, as PVE sends for errors raised by a method's code.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 501 `Method 'X /path' not implemented`.
    pub fn not_implemented(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("Method '{method} {path}' not implemented"),
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {}

/// A reason phrase may hold only visible ASCII, spaces and tabs.
fn reason_phrase(message: &str) -> String {
    message
        .trim_end()
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' || c == '\t' {
                c
            } else {
                ' '
            }
        })
        .collect()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert("data".into(), serde_json::Value::Null);
        if let Some(errors) = &self.errors {
            let errors = errors
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            body.insert("errors".into(), serde_json::Value::Object(errors));
        }
        body.insert(
            "message".into(),
            format!("{}\n", self.message.trim_end()).into(),
        );
        let mut response =
            (self.status, axum::Json(serde_json::Value::Object(body))).into_response();
        if let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(reason_phrase(&self.message)) {
            response.extensions_mut().insert(phrase);
        }
        response
    }
}
