//! Accessor mode (`serve --auth proxmox`): people log in with their Proxmox account, and
//! Proxmox's own ACLs decide what they see and open.
//!
//! - Login posts the username, password and realm to PVE's `/access/ticket`. PVE's ticket
//!   and CSRF token are sealed under the plane's key and kept with the porthole session
//!   they belong to; the password is never stored. A local account row is made for the
//!   PVE user (without a usable password), so audit records, console sessions and tickets
//!   name them like anyone else.
//! - Every call on the user's behalf uses their own ticket, renewed once it is an hour old
//!   (PVE's last for two), so listing needs VM.Audit and consoles need VM.Console exactly
//!   as in PVE's own UI.

use std::net::SocketAddr;
use std::time::Duration;

use porthole_api::{LoginResponse, ProxmoxVm};
use porthole_core::{Role, UserId};
use porthole_proxmox::types::ClusterVm;
use porthole_proxmox::{
    Client, ClientBuilder, Credentials, Error as PveError, PasswordLogin, Secret, Ticket,
};
use porthole_store::upstream::UpstreamSession;
use porthole_store::users::UserRecord;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::config::AccessorSettings;
use crate::error::{ApiError, chain};
use crate::services::audit::{self, Actor};
use crate::services::caller::Caller;
use crate::services::tokens::{self, TokenPurpose};

/// Renew a user's PVE ticket once it is this old; PVE accepts one for two hours.
const RENEW_AFTER: Duration = Duration::from_secs(3600);
/// How long one call to PVE may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// The sealed part of an upstream session.
#[derive(Serialize, Deserialize)]
struct SealedTicket {
    ticket: String,
    csrf: String,
}

fn settings(app: &App) -> Result<&AccessorSettings, ApiError> {
    app.config
        .accessor
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("porthole is not in Proxmox accessor mode".into()))
}

fn client(settings: &AccessorSettings, credentials: Credentials) -> Result<Client, ApiError> {
    ClientBuilder::new(&settings.url, credentials)
        .tls(settings.trust.options()?)
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| ApiError::Unavailable(chain(&e)))
}

/// A PVE failure on the user's behalf, as an API error.
fn refused(error: &PveError) -> ApiError {
    match error {
        PveError::Unauthorized { .. } | PveError::TicketExpired { .. } => {
            ApiError::Unauthorized("your Proxmox login has expired; log in again".into())
        }
        PveError::Forbidden { .. } => ApiError::Forbidden(chain(error)),
        _ => ApiError::Unavailable(format!("Proxmox VE: {}", chain(error))),
    }
}

/// `alice` + `pve`, or `alice@pve` as typed, as PVE's user id.
fn user_id(username: &str, realm: Option<&str>, default_realm: &str) -> Result<String, ApiError> {
    let (name, realm) = match username.rsplit_once('@') {
        Some((name, realm)) => (name, realm),
        None => (
            username,
            realm.filter(|r| !r.is_empty()).unwrap_or(default_realm),
        ),
    };
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if !ok(name) {
        return Err(ApiError::invalid("username", "not a Proxmox user name"));
    }
    if !ok(realm) {
        return Err(ApiError::invalid("realm", "not a Proxmox realm"));
    }
    Ok(format!("{name}@{realm}"))
}

/// Logs in against PVE and starts a porthole session holding the user's PVE ticket.
pub async fn login(
    app: &App,
    username: &str,
    realm: Option<&str>,
    password: &str,
    purpose: TokenPurpose,
    remote: Option<SocketAddr>,
) -> Result<LoginResponse, ApiError> {
    let result = pve_login(app, username, realm, password, remote).await;
    let actor = Actor {
        user: result.as_ref().ok().map(|(user, _)| user),
        name: username,
        remote,
    };
    audit::record(app, actor, "login", None, &result, Some("proxmox".into())).await;
    let (user, ticket) = result?;
    let login = tokens::issue_token(app, &user, purpose).await?;
    store_ticket(app, &tokens::token_hash(&login.token), &ticket).await?;
    tracing::info!(user = %user.username, "Proxmox login");
    Ok(login)
}

async fn pve_login(
    app: &App,
    username: &str,
    realm: Option<&str>,
    password: &str,
    remote: Option<SocketAddr>,
) -> Result<(UserRecord, Ticket), ApiError> {
    let settings = settings(app)?;
    if let Some(remote) = remote {
        app.login_throttle
            .attempt(remote.ip(), app.config.portal.logins_per_minute_per_address)?;
    }
    let userid = user_id(username, realm, &settings.default_realm)?;
    let (name, realm) = userid.split_once('@').unwrap_or((&userid, ""));
    let login = PasswordLogin::new(name, realm, Secret::new(password));
    let pve = client(settings, Credentials::Password(login))?;
    let ticket = pve
        .login()
        .await
        .map_err(|e| match e {
            PveError::Unauthorized { .. } => {
                ApiError::Unauthorized("wrong username, password or realm".into())
            }
            other => ApiError::Unavailable(format!(
                "cannot reach Proxmox VE to log in: {}",
                chain(&other)
            )),
        })?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("PVE gave no ticket")))?;
    // PVE names the user canonically (realm case, for example).
    let user = local_user(app, &ticket.username).await?;
    Ok((user, ticket))
}

/// The local row standing for PVE user `userid`, made on first login.
async fn local_user(app: &App, userid: &str) -> Result<UserRecord, ApiError> {
    if let Some(user) = app.store.user_by_name(userid).await? {
        return Ok(user);
    }
    let user = UserRecord {
        id: UserId::random(),
        username: userid.to_owned(),
        // Not a hash of anything: local password logins can never match.
        password_hash: "!proxmox".into(),
        role: Role::Member,
        email: None,
        created_at: app.clock.now_millis(),
        limits: Default::default(),
        failed_logins: 0,
        locked_until: None,
    };
    match app.store.insert_user(&user).await {
        Ok(()) => Ok(user),
        // Two first logins at once: the other one made it.
        Err(_) => app
            .store
            .user_by_name(userid)
            .await?
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("cannot record user {userid}"))),
    }
}

async fn store_ticket(app: &App, token_hash: &str, ticket: &Ticket) -> Result<(), ApiError> {
    let sealed = serde_json::to_string(&SealedTicket {
        ticket: ticket.ticket.expose().to_owned(),
        csrf: ticket.csrf_token.expose().to_owned(),
    })
    .map_err(ApiError::internal)?;
    app.store
        .put_upstream_session(&UpstreamSession {
            token_hash: token_hash.to_owned(),
            pve_user: ticket.username.clone(),
            sealed: app.secrets.seal(&sealed, &format!("upstream:{token_hash}")),
            obtained_at: app.clock.now_millis(),
        })
        .await?;
    Ok(())
}

/// A PVE client acting as the user of session `token_hash`, with their ticket renewed if
/// it is due.
pub async fn session_client(app: &App, token_hash: &str) -> Result<Client, ApiError> {
    let settings = settings(app)?;
    let session = app
        .store
        .upstream_session(token_hash)
        .await?
        .ok_or_else(|| {
            ApiError::Unauthorized("this session holds no Proxmox login; log in again".into())
        })?;
    let sealed = app
        .secrets
        .open_sealed(&session.sealed, &format!("upstream:{token_hash}"))
        .map_err(ApiError::Internal)?;
    let sealed: SealedTicket = serde_json::from_str(&sealed).map_err(ApiError::internal)?;
    let ticket = Ticket::new(
        session.pve_user.clone(),
        Secret::new(sealed.ticket),
        Secret::new(sealed.csrf),
    );
    let pve = client(settings, Credentials::Ticket(ticket))?;
    let age = app.clock.now_millis() - session.obtained_at;
    if age >= i64::try_from(RENEW_AFTER.as_millis()).unwrap_or(i64::MAX) {
        let fresh = pve
            .login()
            .await
            .map_err(|e| refused(&e))?
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("PVE gave no ticket")))?;
        store_ticket(app, token_hash, &fresh).await?;
        tracing::debug!(user = %session.pve_user, "renewed the Proxmox ticket");
    }
    Ok(pve)
}

fn to_wire(vm: &ClusterVm, can_console: bool) -> ProxmoxVm {
    ProxmoxVm {
        vmid: vm.vmid,
        node: vm.node.clone(),
        name: vm.name.clone().unwrap_or_else(|| format!("VM {}", vm.vmid)),
        status: format!("{:?}", vm.status).to_lowercase(),
        pool: vm.pool.clone(),
        can_console,
    }
}

/// The QEMU VMs (not templates) `pve`'s user may see, each with whether they hold
/// VM.Console on it.
async fn visible_vms(pve: &Client) -> Result<Vec<(ClusterVm, bool)>, ApiError> {
    let (vms, permissions) =
        tokio::try_join!(pve.cluster_vms(), pve.permissions()).map_err(|e| refused(&e))?;
    Ok(vms
        .into_iter()
        .filter(|vm| vm.is_qemu() && !vm.template)
        .map(|vm| {
            let console = permissions.has_on_vm(vm.vmid, vm.pool.as_deref(), "VM.Console");
            (vm, console)
        })
        .collect())
}

/// The VMs the user's PVE permissions show them (VM.Audit), with whether they may open
/// each one's consoles (VM.Console).
pub async fn vms(app: &App, caller: &Caller) -> Result<Vec<ProxmoxVm>, ApiError> {
    let pve = session_client(app, &caller.token_hash).await?;
    let mut out: Vec<ProxmoxVm> = visible_vms(&pve)
        .await?
        .iter()
        .map(|(vm, console)| to_wire(vm, *console))
        .collect();
    out.sort_by_key(|vm| vm.vmid);
    Ok(out)
}

/// VM `vmid` as `pve` sees it, if it may open its consoles; the reason otherwise.
pub async fn console_target(pve: &Client, vmid: u32) -> Result<ClusterVm, ApiError> {
    let (vm, console) = visible_vms(pve)
        .await?
        .into_iter()
        .find(|(vm, _)| vm.vmid == vmid)
        .ok_or_else(|| ApiError::NotFound(format!("no VM {vmid} is visible to you")))?;
    if !console {
        return Err(ApiError::Forbidden(format!(
            "opening VM {vmid}'s console needs the VM.Console privilege on Proxmox"
        )));
    }
    Ok(vm)
}

/// Proxmox VM `vmid`, if the caller's Proxmox permissions let them open its consoles.
pub async fn console_vm(app: &App, caller: &Caller, vmid: u32) -> Result<ClusterVm, ApiError> {
    let pve = session_client(app, &caller.token_hash).await?;
    console_target(&pve, vmid).await
}

/// A VMID from a path.
pub fn parse_vmid(text: &str) -> Result<u32, ApiError> {
    text.parse()
        .ok()
        .filter(|id| (100..=999_999_999).contains(id))
        .ok_or_else(|| ApiError::NotFound(format!("{text:?} is not a Proxmox VMID")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_take_the_realm_from_the_name_or_the_choice() {
        assert_eq!(user_id("alice", Some("pve"), "pam").unwrap(), "alice@pve");
        assert_eq!(user_id("alice", None, "pam").unwrap(), "alice@pam");
        assert_eq!(
            user_id("alice@ldap", Some("pve"), "pam").unwrap(),
            "alice@ldap"
        );
        assert!(user_id("", None, "pve").is_err());
        assert!(user_id("al ice", None, "pve").is_err());
        assert!(user_id("alice", Some("p/v"), "pve").is_err());
    }
}
