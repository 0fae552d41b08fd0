//! porthole's persistence.
//!
//! One [`Store`] wraps a sqlx pool. Each table has its own module that adds methods to
//! `Store` and defines its record types, so callers never see SQL. Queries stick to portable
//! SQL with `$N` parameters: SQLite is the embedded default, and PostgreSQL runs the same
//! statements. Write transactions that read before they write start with `BEGIN IMMEDIATE`
//! on SQLite, so concurrent writers queue on the lock instead of failing.

pub mod agents;
pub mod audit;
pub mod consoles;
mod error;
pub mod expiry;
pub mod images;
pub mod jobs;
pub mod nodes;
pub mod quotas;
pub mod ssh_keys;
pub mod tokens;
pub mod upstream;
pub mod users;
pub mod vms;

use std::path::Path;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, Row, Transaction};

pub use error::StoreError;

/// Unix time in milliseconds, as every timestamp is stored.
pub type Millis = i64;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The database and every query porthole runs against it.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and brings its schema up to
    /// date.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let path = path.to_str().ok_or_else(|| {
            StoreError::Corrupt(format!("database path {} is not UTF-8", path.display()))
        })?;
        let url = format!("sqlite://{}?mode=rwc", percent_encode_path(path));
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    sqlx::raw_sql(
                        "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
                         PRAGMA synchronous = NORMAL;",
                    )
                    .execute(conn)
                    .await
                    .map(drop)
                })
            })
            .connect(&url)
            .await?;
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&pool)
            .await?;
        SQLITE_MIGRATIONS
            .run(&pool)
            .await
            .map_err(StoreError::Migrate)?;
        Ok(Self { pool })
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a transaction that will write. It takes the write lock up front, so two such
    /// transactions never deadlock upgrading a read lock.
    async fn begin_write(&self) -> Result<Transaction<'static, Any>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// Escapes the characters that would end or confuse the path part of a `sqlite://` URL.
fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' | '?' | '#' | ' ' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Reads a text column that holds a UUID-based id.
fn id_column<T: From<uuid::Uuid>>(row: &AnyRow, column: &str) -> Result<T, StoreError> {
    let text: String = row.try_get(column)?;
    uuid::Uuid::parse_str(&text)
        .map(T::from)
        .map_err(|_| StoreError::Corrupt(format!("{column} = {text:?} is not a UUID")))
}

/// Reads a nullable text column that holds a UUID-based id.
fn optional_id_column<T: From<uuid::Uuid>>(
    row: &AnyRow,
    column: &str,
) -> Result<Option<T>, StoreError> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|text| {
        uuid::Uuid::parse_str(&text)
            .map(T::from)
            .map_err(|_| StoreError::Corrupt(format!("{column} = {text:?} is not a UUID")))
    })
    .transpose()
}

/// Reads a text column through a `parse` function that returns `None` for unknown values.
fn enum_column<T>(
    row: &AnyRow,
    column: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let text: String = row.try_get(column)?;
    parse(&text).ok_or_else(|| StoreError::Corrupt(format!("{column} = {text:?} is unknown")))
}

/// Reads a non-negative integer column.
fn count_column(row: &AnyRow, column: &str) -> Result<u64, StoreError> {
    let value: i64 = row.try_get(column)?;
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column} = {value} is negative")))
}

/// `Ok` if the statement changed a row, else `missing`: the row was not there, or no longer
/// matched the statement's conditions.
fn changed(result: &sqlx::any::AnyQueryResult, missing: StoreError) -> Result<(), StoreError> {
    if result.rows_affected() == 0 {
        Err(missing)
    } else {
        Ok(())
    }
}

/// Converts a count for storage; counts beyond `i64::MAX` cannot occur after validation.
fn to_db(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
pub(crate) mod testing {
    use super::Store;

    /// A fresh database in a temporary directory, dropped with the directory.
    pub async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("test.db"))
            .await
            .unwrap();
        (store, dir)
    }
}
