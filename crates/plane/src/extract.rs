//! Request extractors that fail with porthole's own errors.
//!
//! [`ApiJson`] names the offending field when a body does not parse, and [`Caller`] turns a
//! bearer token into the user behind it.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use porthole_core::Role;
use porthole_store::users::UserRecord;
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::error::ApiError;
use crate::services::auth;

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

/// The authenticated user making the request.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Who they are.
    pub user: UserRecord,
    /// The hash of the token they presented, for logout.
    pub token_hash: String,
}

impl Caller {
    /// Whether the caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }

    /// Fails unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden("this needs the admin role".into()))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::Unauthorized(
                "no credentials: send Authorization: Bearer TOKEN (get one with `porthole login`)"
                    .into(),
            )
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("the Authorization header must be `Bearer TOKEN`".into())
            })?;
        let token_hash = auth::token_hash(token);
        let user = state
            .store
            .user_by_token(&token_hash, state.clock.now_millis())
            .await?
            .ok_or_else(|| {
                ApiError::Unauthorized("the token is unknown or expired; log in again".into())
            })?;
        Ok(Caller { user, token_hash })
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
