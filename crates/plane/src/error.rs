//! The one place where failures become HTTP statuses.
//!
//! Services return [`ApiError`]; `From` impls turn lower layers' errors into it, and
//! [`IntoResponse`] renders `{"error": {"code", "message", "field"?}}`. Internal failures are
//! logged with their whole cause chain and answered with a reference, never a stack trace.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use porthole_api::{ErrorBody, ErrorDetail};
use porthole_core::QuotaExceeded;
use porthole_core::driver::DriverError;
use porthole_core::spec::SpecError;
use porthole_core::state::IllegalTransition;
use porthole_gateway::Rejection;
use porthole_store::StoreError;

/// An error and all its causes, on one line (shared with the drivers).
pub use porthole_core::error_chain as chain;

/// A failed request, as the client will see it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request could not be parsed: bad JSON, wrong types, unknown fields.
    #[error("{message}")]
    Malformed {
        /// What is wrong.
        message: String,
        /// The field at fault, if known.
        field: Option<String>,
    },
    /// A field parsed but its value is not acceptable.
    #[error("{0}")]
    Invalid(#[from] SpecError),
    /// No credentials, or credentials that do not work.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// The addressed thing does not exist (or is not visible to the caller).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state.
    #[error("{message}")]
    Conflict {
        /// What conflicts.
        message: String,
        /// The field at fault, if any.
        field: Option<String>,
    },
    /// The action is not allowed in the VM's current state.
    #[error("{0}")]
    IllegalTransition(#[from] IllegalTransition),
    /// A console connection was refused before anything was relayed.
    #[error("{}", .0.message())]
    ConsoleRejected(Rejection),
    /// The request would take a user over a limit.
    #[error("{0}")]
    QuotaExceeded(#[from] QuotaExceeded),
    /// Too many attempts; the message says when to try again.
    #[error("{0}")]
    TooManyRequests(String),
    /// A dependency is unavailable; retrying later may work.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an environment failure. The detail goes to the log only.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// A malformed request, blaming `field`.
    pub fn malformed(field: Option<&str>, message: impl Into<String>) -> Self {
        ApiError::Malformed {
            message: message.into(),
            field: field.map(str::to_owned),
        }
    }

    /// An unacceptable value of `field`.
    pub fn invalid(field: &'static str, problem: impl Into<String>) -> Self {
        ApiError::Invalid(SpecError::new(field, problem))
    }

    /// A conflict with the current state, optionally blaming `field`.
    pub fn conflict(field: Option<&str>, message: impl Into<String>) -> Self {
        ApiError::Conflict {
            message: message.into(),
            field: field.map(str::to_owned),
        }
    }

    /// A request the VM's node cannot carry out, as its capabilities say.
    pub fn unsupported(what: &str) -> Self {
        ApiError::conflict(None, format!("{what} is not supported by this VM's node"))
    }

    /// An internal failure with `context`.
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(error.into())
    }

    fn status_code_and_field(&self) -> (StatusCode, &'static str, Option<String>) {
        match self {
            ApiError::Malformed { field, .. } => {
                (StatusCode::BAD_REQUEST, "malformed_request", field.clone())
            }
            ApiError::Invalid(e) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                Some(e.field.to_string()),
            ),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            ApiError::Conflict { field, .. } => (StatusCode::CONFLICT, "conflict", field.clone()),
            ApiError::IllegalTransition(_) => (StatusCode::CONFLICT, "illegal_state", None),
            ApiError::ConsoleRejected(reason) => {
                let status = match reason {
                    Rejection::Missing | Rejection::Unknown | Rejection::Expired => {
                        StatusCode::UNAUTHORIZED
                    }
                    Rejection::TooManySessions => StatusCode::TOO_MANY_REQUESTS,
                    Rejection::WrongTarget
                    | Rejection::WrongKind
                    | Rejection::AccessRevoked
                    | Rejection::ForeignOrigin => StatusCode::FORBIDDEN,
                };
                (status, "console_rejected", None)
            }
            ApiError::QuotaExceeded(e) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "quota_exceeded",
                Some(e.field.to_owned()),
            ),
            ApiError::TooManyRequests(_) => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_requests", None)
            }
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field) = self.status_code_and_field();
        let message = match &self {
            ApiError::Internal(error) => {
                let reference = uuid::Uuid::new_v4();
                tracing::error!(%reference, error = %chain(error.as_ref()), "internal error");
                format!("internal error (reference {reference}); the server log has details")
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message,
                field,
            },
        };
        (status, axum::Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            StoreError::Taken { field } => ApiError::conflict(
                Some(field),
                format!("{field}: already taken; choose another"),
            ),
            StoreError::Stale(what) => ApiError::conflict(
                None,
                format!("{what} changed while this request ran; look at it again and retry"),
            ),
            StoreError::Quota(exceeded) => ApiError::QuotaExceeded(exceeded),
            StoreError::InUse(what) => {
                ApiError::conflict(None, format!("{what} is still in use by VMs"))
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<DriverError> for ApiError {
    fn from(error: DriverError) -> Self {
        match error {
            DriverError::Unsupported(what) => ApiError::unsupported(&what),
            DriverError::Unreachable(why) => {
                ApiError::Unavailable(format!("the VM's node is unreachable: {why}"))
            }
            DriverError::NotFound(id) => {
                ApiError::NotFound(format!("VM {id} does not exist on its node"))
            }
            DriverError::Invalid(e) => ApiError::Invalid(e),
            e @ DriverError::Conflict { .. } => ApiError::conflict(None, e.to_string()),
            e @ DriverError::SnapshotNotFound { .. } => ApiError::NotFound(e.to_string()),
            other => ApiError::internal(other),
        }
    }
}
