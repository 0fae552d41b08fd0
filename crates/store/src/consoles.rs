//! Console tickets, session audit records, and external consoles with their grants.

use porthole_core::{ConsoleKind, ExternalConsoleId, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::taken_as;
use crate::users::{UserRecord, user_columns};
use crate::{Millis, Store, StoreError, changed, count_column, enum_column, id_column, to_db};

/// What a console ticket or session is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConsoleTarget {
    /// A porthole VM.
    Vm(porthole_core::VmId),
    /// An external console.
    External(ExternalConsoleId),
    /// A Proxmox VM in accessor mode, by VMID.
    Proxmox(u32),
}

impl ConsoleTarget {
    fn kind(self) -> &'static str {
        match self {
            ConsoleTarget::Vm(_) => "vm",
            ConsoleTarget::External(_) => "external",
            ConsoleTarget::Proxmox(_) => "proxmox",
        }
    }

    fn id(self) -> String {
        match self {
            ConsoleTarget::Vm(id) => id.to_string(),
            ConsoleTarget::External(id) => id.to_string(),
            ConsoleTarget::Proxmox(vmid) => vmid.to_string(),
        }
    }

    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        let kind: String = row.try_get("target_kind")?;
        match kind.as_str() {
            "vm" => Ok(ConsoleTarget::Vm(id_column(row, "target_id")?)),
            "external" => Ok(ConsoleTarget::External(id_column(row, "target_id")?)),
            "proxmox" => {
                let id: String = row.try_get("target_id")?;
                id.parse()
                    .map(ConsoleTarget::Proxmox)
                    .map_err(|_| StoreError::Corrupt(format!("target_id = {id:?}")))
            }
            other => Err(StoreError::Corrupt(format!("target_kind = {other:?}"))),
        }
    }
}

/// The wire and database name of a console kind.
pub fn console_kind_str(kind: ConsoleKind) -> &'static str {
    match kind {
        ConsoleKind::Vnc => "vnc",
        ConsoleKind::Serial => "serial",
    }
}

/// Parses [`console_kind_str`] back.
pub fn parse_console_kind(text: &str) -> Option<ConsoleKind> {
    match text {
        "vnc" => Some(ConsoleKind::Vnc),
        "serial" => Some(ConsoleKind::Serial),
        _ => None,
    }
}

/// A console ticket as stored (its hash, never the ticket).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketRecord {
    /// SHA-256 of the ticket.
    pub token_hash: String,
    /// Who may use it.
    pub user_id: UserId,
    /// Which console.
    pub target: ConsoleTarget,
    /// VNC or serial.
    pub kind: ConsoleKind,
    /// For VMs, the node it ran on when the ticket was minted.
    pub node: Option<String>,
    /// For Proxmox VMs in accessor mode, the hash of the session whose PVE ticket opens it.
    pub session: Option<String>,
    /// When it was minted.
    pub created_at: Millis,
    /// When it stops working.
    pub expires_at: Millis,
}

/// A console session's audit record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session's id.
    pub id: uuid::Uuid,
    /// Who.
    pub user_id: UserId,
    /// Their username at the time.
    pub username: String,
    /// What.
    pub target: ConsoleTarget,
    /// The target's name at the time.
    pub target_name: String,
    /// VNC or serial.
    pub kind: ConsoleKind,
    /// `binary` or `termproxy`.
    pub framing: String,
    /// From where.
    pub remote_addr: String,
    /// When it started.
    pub started_at: Millis,
    /// When it ended; `None` while it runs.
    pub ended_at: Option<Millis>,
    /// Bytes sent to the client.
    pub bytes_to_client: u64,
    /// Bytes sent to the console.
    pub bytes_from_client: u64,
    /// Why it ended.
    pub end_reason: Option<String>,
}

impl SessionRecord {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        let id: String = row.try_get("id")?;
        Ok(Self {
            id: id
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("session id {id:?}")))?,
            user_id: id_column(row, "user_id")?,
            username: row.try_get("username")?,
            target: ConsoleTarget::from_row(row)?,
            target_name: row.try_get("target_name")?,
            kind: enum_column(row, "console_kind", parse_console_kind)?,
            framing: row.try_get("framing")?,
            remote_addr: row.try_get("remote_addr")?,
            started_at: row.try_get("started_at")?,
            ended_at: row.try_get("ended_at")?,
            bytes_to_client: count_column(row, "bytes_to_client")?,
            bytes_from_client: count_column(row, "bytes_from_client")?,
            end_reason: row.try_get("end_reason")?,
        })
    }
}

/// The protocol of an external console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExternalProtocol {
    /// An RFB server: a VNC console.
    Vnc,
    /// A raw TCP byte stream: a serial console.
    Tcp,
}

impl ExternalProtocol {
    /// The protocol's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ExternalProtocol::Vnc => "vnc",
            ExternalProtocol::Tcp => "tcp",
        }
    }

    /// Parses [`ExternalProtocol::as_str`] back.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "vnc" => Some(ExternalProtocol::Vnc),
            "tcp" => Some(ExternalProtocol::Tcp),
            _ => None,
        }
    }

    /// The console kind this protocol serves.
    pub fn console_kind(self) -> ConsoleKind {
        match self {
            ExternalProtocol::Vnc => ConsoleKind::Vnc,
            ExternalProtocol::Tcp => ConsoleKind::Serial,
        }
    }
}

/// An external console as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalConsoleRecord {
    /// Its id.
    pub id: ExternalConsoleId,
    /// Its unique name.
    pub name: String,
    /// VNC or TCP.
    pub protocol: ExternalProtocol,
    /// `host:port`.
    pub address: String,
    /// The password, sealed by the plane.
    pub password_sealed: Option<String>,
    /// When it was registered.
    pub created_at: Millis,
}

impl ExternalConsoleRecord {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: id_column(row, "id")?,
            name: row.try_get("name")?,
            protocol: enum_column(row, "protocol", ExternalProtocol::parse)?,
            address: row.try_get("address")?,
            password_sealed: row.try_get("password_sealed")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

macro_rules! external_columns {
    () => {
        "external_consoles.id, external_consoles.name, external_consoles.protocol, \
         external_consoles.address, external_consoles.password_sealed, external_consoles.created_at"
    };
}

macro_rules! session_columns {
    () => {
        "id, user_id, username, target_kind, target_id, target_name, console_kind, framing, \
         remote_addr, started_at, ended_at, bytes_to_client, bytes_from_client, end_reason"
    };
}

impl Store {
    /// Stores a ticket, and drops tickets that expired before `ticket.created_at`.
    pub async fn insert_console_ticket(&self, ticket: &TicketRecord) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM console_tickets WHERE expires_at < $1")
            .bind(ticket.created_at)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO console_tickets (token_hash, user_id, target_kind, target_id, \
             console_kind, node, session_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&ticket.token_hash)
        .bind(ticket.user_id.to_string())
        .bind(ticket.target.kind())
        .bind(ticket.target.id())
        .bind(console_kind_str(ticket.kind))
        .bind(&ticket.node)
        .bind(&ticket.session)
        .bind(ticket.created_at)
        .bind(ticket.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Consumes the ticket that hashes to `token_hash`: it is deleted by the same statement
    /// that reads it, so two connections can never both use it. The caller checks expiry
    /// and binding.
    pub async fn take_console_ticket(
        &self,
        token_hash: &str,
    ) -> Result<Option<TicketRecord>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM console_tickets WHERE token_hash = $1 RETURNING token_hash, user_id, \
             target_kind, target_id, console_kind, node, session_hash, created_at, expires_at",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(TicketRecord {
                token_hash: row.try_get("token_hash")?,
                user_id: id_column(&row, "user_id")?,
                target: ConsoleTarget::from_row(&row)?,
                kind: enum_column(&row, "console_kind", parse_console_kind)?,
                node: row.try_get("node")?,
                session: row.try_get("session_hash")?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    /// Records a session's start.
    pub async fn insert_console_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO console_sessions (",
            session_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .bind(session.id.to_string())
        .bind(session.user_id.to_string())
        .bind(&session.username)
        .bind(session.target.kind())
        .bind(session.target.id())
        .bind(&session.target_name)
        .bind(console_kind_str(session.kind))
        .bind(&session.framing)
        .bind(&session.remote_addr)
        .bind(session.started_at)
        .bind(session.ended_at)
        .bind(to_db(session.bytes_to_client))
        .bind(to_db(session.bytes_from_client))
        .bind(&session.end_reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a session's end.
    pub async fn finish_console_session(
        &self,
        id: uuid::Uuid,
        ended_at: Millis,
        bytes_to_client: u64,
        bytes_from_client: u64,
        end_reason: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE console_sessions SET ended_at = $1, bytes_to_client = $2, \
             bytes_from_client = $3, end_reason = $4 WHERE id = $5",
        )
        .bind(ended_at)
        .bind(to_db(bytes_to_client))
        .bind(to_db(bytes_from_client))
        .bind(end_reason)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Closes the records of sessions a previous run could not finish.
    pub async fn close_interrupted_sessions(&self, now: Millis) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "UPDATE console_sessions SET ended_at = $1, end_reason = 'plane_restarted' \
             WHERE ended_at IS NULL",
        )
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    /// The most recent sessions, newest first.
    pub async fn console_sessions(&self, limit: u32) -> Result<Vec<SessionRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM console_sessions ORDER BY started_at DESC, id LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(SessionRecord::from_row)
        .collect()
    }

    /// The user with `id`, if any.
    pub async fn user(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(UserRecord::from_row)
        .transpose()
    }

    /// Registers an external console. A taken name is [`StoreError::Taken`].
    pub async fn insert_external_console(
        &self,
        console: &ExternalConsoleRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO external_consoles (id, name, protocol, address, password_sealed, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(console.id.to_string())
        .bind(&console.name)
        .bind(console.protocol.as_str())
        .bind(&console.address)
        .bind(&console.password_sealed)
        .bind(console.created_at)
        .execute(&self.pool)
        .await
        .map_err(taken_as("name"))?;
        Ok(())
    }

    /// Every external console, or only those granted to `user`, by name.
    pub async fn external_consoles(
        &self,
        user: Option<UserId>,
    ) -> Result<Vec<ExternalConsoleRecord>, StoreError> {
        let rows = match user {
            None => {
                sqlx::query(concat!(
                    "SELECT ",
                    external_columns!(),
                    " FROM external_consoles ORDER BY name"
                ))
                .fetch_all(&self.pool)
                .await?
            }
            Some(user) => {
                sqlx::query(concat!(
                    "SELECT ",
                    external_columns!(),
                    " FROM external_consoles JOIN external_console_grants \
                      ON external_console_grants.console_id = external_consoles.id \
                      WHERE external_console_grants.user_id = $1 ORDER BY external_consoles.name"
                ))
                .bind(user.to_string())
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(ExternalConsoleRecord::from_row).collect()
    }

    /// The external console with `id`, if any.
    pub async fn external_console(
        &self,
        id: ExternalConsoleId,
    ) -> Result<Option<ExternalConsoleRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            external_columns!(),
            " FROM external_consoles WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(ExternalConsoleRecord::from_row)
        .transpose()
    }

    /// Removes an external console and its grants.
    pub async fn delete_external_console(&self, id: ExternalConsoleId) -> Result<(), StoreError> {
        let result = sqlx::query("DELETE FROM external_consoles WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        changed(&result, StoreError::NotFound("external console"))
    }

    /// Lets `user` open `console`. Granting twice is fine.
    pub async fn grant_external_console(
        &self,
        console: ExternalConsoleId,
        user: UserId,
        now: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO external_console_grants (console_id, user_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (console_id, user_id) DO NOTHING",
        )
        .bind(console.to_string())
        .bind(user.to_string())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes `user`'s access to `console` away. Revoking what was not granted is fine.
    pub async fn revoke_external_console(
        &self,
        console: ExternalConsoleId,
        user: UserId,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM external_console_grants WHERE console_id = $1 AND user_id = $2")
            .bind(console.to_string())
            .bind(user.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether `user` may open `console`.
    pub async fn external_console_granted(
        &self,
        console: ExternalConsoleId,
        user: UserId,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM external_console_grants WHERE console_id = $1 AND user_id = $2",
        )
        .bind(console.to_string())
        .bind(user.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::store;
    use porthole_core::{Role, VmId};

    async fn user(store: &Store, name: &str) -> UserRecord {
        let user = crate::users::tests::user(name, Role::Member);
        store.insert_user(&user).await.unwrap();
        user
    }

    #[tokio::test]
    async fn a_ticket_is_taken_exactly_once() {
        let (store, _dir) = store().await;
        let ticket = TicketRecord {
            token_hash: "ab".repeat(32),
            user_id: UserId::random(),
            target: ConsoleTarget::Vm(VmId::random()),
            kind: ConsoleKind::Vnc,
            node: Some("local".into()),
            session: None,
            created_at: 100,
            expires_at: 130,
        };
        store.insert_console_ticket(&ticket).await.unwrap();
        assert_eq!(
            store.take_console_ticket(&ticket.token_hash).await.unwrap(),
            Some(ticket.clone())
        );
        assert_eq!(
            store.take_console_ticket(&ticket.token_hash).await.unwrap(),
            None
        );

        // Proxmox VMs are named by VMID and carry their session.
        let proxmox = TicketRecord {
            token_hash: "ef".repeat(32),
            target: ConsoleTarget::Proxmox(104),
            session: Some("12".repeat(32)),
            ..ticket.clone()
        };
        store.insert_console_ticket(&proxmox).await.unwrap();
        assert_eq!(
            store
                .take_console_ticket(&proxmox.token_hash)
                .await
                .unwrap(),
            Some(proxmox)
        );

        // Minting later sweeps expired tickets away.
        store.insert_console_ticket(&ticket).await.unwrap();
        let later = TicketRecord {
            token_hash: "cd".repeat(32),
            created_at: 200,
            expires_at: 230,
            ..ticket.clone()
        };
        store.insert_console_ticket(&later).await.unwrap();
        assert_eq!(
            store.take_console_ticket(&ticket.token_hash).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn sessions_are_audited_and_interrupted_ones_closed() {
        let (store, _dir) = store().await;
        let session = SessionRecord {
            id: uuid::Uuid::new_v4(),
            user_id: UserId::random(),
            username: "alice".into(),
            target: ConsoleTarget::External(ExternalConsoleId::random()),
            target_name: "switch".into(),
            kind: ConsoleKind::Serial,
            framing: "termproxy".into(),
            remote_addr: "127.0.0.1:5000".into(),
            started_at: 10,
            ended_at: None,
            bytes_to_client: 0,
            bytes_from_client: 0,
            end_reason: None,
        };
        store.insert_console_session(&session).await.unwrap();
        let other = SessionRecord {
            id: uuid::Uuid::new_v4(),
            started_at: 20,
            ..session.clone()
        };
        store.insert_console_session(&other).await.unwrap();
        store
            .finish_console_session(session.id, 15, 1000, 20, "client_closed")
            .await
            .unwrap();
        assert_eq!(store.close_interrupted_sessions(99).await.unwrap(), 1);
        let sessions = store.console_sessions(10).await.unwrap();
        assert_eq!(sessions[0].end_reason.as_deref(), Some("plane_restarted"));
        assert_eq!(
            (sessions[1].bytes_to_client, sessions[1].ended_at),
            (1000, Some(15))
        );
    }

    #[tokio::test]
    async fn external_consoles_are_visible_to_their_grantees() {
        let (store, _dir) = store().await;
        let alice = user(&store, "alice").await;
        let bob = user(&store, "bob").await;
        let console = ExternalConsoleRecord {
            id: ExternalConsoleId::random(),
            name: "bmc1".into(),
            protocol: ExternalProtocol::Vnc,
            address: "10.0.0.5:5900".into(),
            password_sealed: Some("sealed".into()),
            created_at: 1,
        };
        store.insert_external_console(&console).await.unwrap();
        assert!(matches!(
            store
                .insert_external_console(&ExternalConsoleRecord {
                    id: ExternalConsoleId::random(),
                    ..console.clone()
                })
                .await,
            Err(StoreError::Taken { field: "name" })
        ));
        store
            .grant_external_console(console.id, alice.id, 2)
            .await
            .unwrap();
        store
            .grant_external_console(console.id, alice.id, 3)
            .await
            .unwrap();
        assert_eq!(
            store.external_consoles(Some(alice.id)).await.unwrap(),
            vec![console.clone()]
        );
        assert!(
            store
                .external_consoles(Some(bob.id))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .external_console_granted(console.id, alice.id)
                .await
                .unwrap()
        );
        store
            .revoke_external_console(console.id, alice.id)
            .await
            .unwrap();
        assert!(
            !store
                .external_console_granted(console.id, alice.id)
                .await
                .unwrap()
        );
        store.delete_external_console(console.id).await.unwrap();
        assert!(store.external_consoles(None).await.unwrap().is_empty());
    }
}
