//! Writing the audit log: who did what to what, from where, and how it ended.
//!
//! Services call [`record`] after every action that changes state, and for refusals that
//! matter (a wrong password, a quota, a forbidden action). A failure to write the log is
//! logged and does not fail the action it describes.

use std::net::SocketAddr;

use porthole_api::AuditEntry;
use porthole_core::AuditId;
use porthole_store::audit::{AuditRecord, Outcome};
use porthole_store::users::UserRecord;

use crate::app::App;
use crate::clock::from_millis;
use crate::error::{ApiError, chain};
use crate::services::caller::Caller;

/// Who acted.
#[derive(Clone, Copy, Debug)]
pub struct Actor<'a> {
    /// The user, if known.
    pub user: Option<&'a UserRecord>,
    /// The name to record when there is no user: a username as typed, or `porthole`.
    pub name: &'a str,
    /// Where the request came from.
    pub remote: Option<SocketAddr>,
}

impl<'a> From<&'a Caller> for Actor<'a> {
    fn from(caller: &'a Caller) -> Self {
        Actor {
            user: Some(&caller.user),
            name: &caller.user.username,
            remote: caller.remote,
        }
    }
}

impl Actor<'static> {
    /// The plane itself, e.g. the expiry scheduler.
    pub const PLANE: Actor<'static> = Actor {
        user: None,
        name: "porthole",
        remote: None,
    };
}

/// What was acted on.
#[derive(Clone, Debug, Default)]
pub struct Target {
    /// `vm`, `user`, `group`, `template`, `iso`, …
    pub kind: &'static str,
    /// Its id, if it has one.
    pub id: Option<String>,
    /// Its name.
    pub name: Option<String>,
}

impl Target {
    /// A target of `kind` with `id` and `name`.
    pub fn new(kind: &'static str, id: impl std::fmt::Display, name: impl Into<String>) -> Self {
        Self {
            kind,
            id: Some(id.to_string()),
            name: Some(name.into()),
        }
    }

    /// A target of `kind` known only by `name`, such as one a request failed to create.
    pub fn named(kind: &'static str, name: impl Into<String>) -> Self {
        Self {
            kind,
            id: None,
            name: Some(name.into()),
        }
    }
}

/// Appends one record. `result` decides the outcome: `Ok` is ok; a refusal (4xx other than
/// a missing target) is denied; anything else failed, with the error as detail.
pub async fn record<T>(
    app: &App,
    actor: Actor<'_>,
    action: &str,
    target: Option<Target>,
    result: &Result<T, ApiError>,
    detail: Option<String>,
) {
    let (outcome, detail) = match result {
        Ok(_) => (Outcome::Ok, detail),
        Err(e @ ApiError::Internal(_)) | Err(e @ ApiError::Unavailable(_)) => {
            (Outcome::Failed, Some(e.to_string()))
        }
        Err(e) => (Outcome::Denied, Some(e.to_string())),
    };
    let target = target.unwrap_or_default();
    let entry = AuditRecord {
        id: AuditId::random(),
        at: app.clock.now_millis(),
        actor_id: actor.user.map(|u| u.id),
        actor: actor.user.map_or(actor.name, |u| &u.username).to_owned(),
        action: action.to_owned(),
        target_kind: (!target.kind.is_empty()).then(|| target.kind.to_owned()),
        target_id: target.id,
        target_name: target.name,
        remote_addr: actor.remote.map(|a| a.ip().to_string()),
        outcome,
        detail,
    };
    if let Err(e) = app.store.insert_audit(&entry).await {
        tracing::error!(action, error = %chain(&e), "cannot write the audit log");
    }
}

/// Records `result` as [`record`] does and passes it on, as an [`ApiError`], so a call
/// site can audit and return in one step.
pub async fn recorded<T, E: Into<ApiError>>(
    app: &App,
    actor: Actor<'_>,
    action: &str,
    target: Option<Target>,
    detail: Option<String>,
    result: Result<T, E>,
) -> Result<T, ApiError> {
    let result = result.map_err(Into::into);
    record(app, actor, action, target, &result, detail).await;
    result
}

/// The audit log, newest first (admins): at most `limit` (1 to 1000) records older than
/// `before` (unix milliseconds), of `actor` if given.
pub async fn log(
    app: &App,
    caller: &Caller,
    before: Option<i64>,
    actor: Option<&str>,
    limit: u32,
) -> Result<Vec<AuditEntry>, ApiError> {
    caller.require_admin()?;
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be 1 to 1000, got {limit}"),
        ));
    }
    let records = app.store.audit_log(before, actor, limit).await?;
    Ok(records.iter().map(to_wire).collect())
}

/// An audit record as the API shows it.
pub fn to_wire(record: &AuditRecord) -> AuditEntry {
    AuditEntry {
        id: record.id,
        at: from_millis(record.at),
        actor: record.actor.clone(),
        action: record.action.clone(),
        target_kind: record.target_kind.clone(),
        target_id: record.target_id.clone(),
        target_name: record.target_name.clone(),
        remote_addr: record.remote_addr.clone(),
        outcome: record.outcome.as_str().to_owned(),
        detail: record.detail.clone(),
    }
}
