//! What can go wrong in the store.

use porthole_core::spec::SpecError;

/// Why a store operation failed.
///
/// Retry guidance: `Database` may be transient (a busy or restarted database); the others
/// describe the data and will fail the same way again.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No row matched.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique field already has this value.
    #[error("{field} is already taken")]
    Taken {
        /// The field, as spelled on the wire.
        field: &'static str,
    },
    /// The row changed between reading and writing it; the caller's view is stale.
    #[error("{0} changed concurrently")]
    Stale(&'static str),
    /// Other rows still refer to this one.
    #[error("{0} is still in use")]
    InUse(&'static str),
    /// A row holds a value this version of porthole cannot read.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The write would take a user over a limit.
    #[error(transparent)]
    Quota(porthole_core::QuotaExceeded),
    /// The database failed.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Database(error)
    }
}

impl From<SpecError> for StoreError {
    fn from(error: SpecError) -> Self {
        StoreError::Corrupt(error.to_string())
    }
}

/// Maps a unique-constraint violation on insert to [`StoreError::Taken`].
pub(crate) fn taken_as(field: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |error| match error.as_database_error() {
        Some(db) if db.is_unique_violation() => StoreError::Taken { field },
        _ => StoreError::Database(error),
    }
}

/// Maps a foreign-key violation on delete to [`StoreError::InUse`].
pub(crate) fn in_use_as(entity: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |error| match error.as_database_error() {
        Some(db) if db.is_foreign_key_violation() => StoreError::InUse(entity),
        _ => StoreError::Database(error),
    }
}
