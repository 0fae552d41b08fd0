//! Nodes besides the built-in one: adding a Proxmox VE cluster or an agent host (see
//! [`agents`]), listing, removing, and linking the templates a node keeps.
//!
//! A node is checked before it is stored: its API must answer with the credentials given,
//! so a typo fails the request and leaves nothing behind. The password or token secret is
//! sealed under the plane's key; the rest of its settings are stored as JSON.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use porthole_api::{CreateNodeRequest, LinkTemplateRequest, Node, Template};
use porthole_core::TemplateId;
use porthole_core::driver::{DiskFormat, Driver, DriverError};
use porthole_proxmox::{
    ApiToken, Client, ClientBuilder, Credentials, PasswordLogin, ProxmoxDriver, Secret,
};
use porthole_store::StoreError;
use porthole_store::images::{NodeTemplate, TemplateRecord};
use porthole_store::nodes::NodeRecord;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::config::{Trust, check_url};
use crate::error::{ApiError, chain};
use crate::registry::NodeRegistry;
use crate::services::agents;
use crate::services::audit::{self, Target};
use crate::services::caller::Caller;
use crate::services::images::{check_template_name, template_to_wire};

/// How long checking a node may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// How a Proxmox node is reached, without its secret.
#[derive(Debug, Serialize, Deserialize)]
struct ProxmoxSettings {
    auth: ProxmoxAuth,
    tls: Trust,
    #[serde(default)]
    pve_node: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ProxmoxAuth {
    /// An API token; the secret is sealed.
    Token { user: String, token_id: String },
    /// A user's password; the password is sealed.
    Password { username: String, realm: String },
}

/// A Proxmox client for `url` with `credentials` and `trust`.
pub fn proxmox_client(
    url: &str,
    credentials: Credentials,
    trust: &Trust,
) -> Result<Client, ApiError> {
    ClientBuilder::new(url, credentials)
        .tls(trust.options()?)
        .timeout(CHECK_TIMEOUT)
        .build()
        .map_err(|e| ApiError::invalid("url", chain(&e)))
}

/// The validated settings, secret and client of an add request.
fn parse_request(
    request: &CreateNodeRequest,
) -> Result<(ProxmoxSettings, String, Client), ApiError> {
    if request.kind != "proxmox" {
        return Err(ApiError::invalid(
            "kind",
            "must be \"proxmox\" or \"agent\"",
        ));
    }
    check_url(&request.url)?;
    let (auth, secret, credentials) = match (
        &request.token,
        &request.username,
        &request.password,
        &request.realm,
    ) {
        (Some(token), None, None, None) => {
            let token: ApiToken = token
                .parse()
                .map_err(|e: porthole_proxmox::Error| ApiError::invalid("token", e.to_string()))?;
            let auth = ProxmoxAuth::Token {
                user: token.user.clone(),
                token_id: token.token_id.clone(),
            };
            (
                auth,
                token.secret.expose().to_owned(),
                Credentials::Token(token),
            )
        }
        (None, Some(username), Some(password), Some(realm)) => {
            if username.is_empty() || username.contains(['@', ':']) {
                return Err(ApiError::invalid(
                    "username",
                    "give the user name without @realm",
                ));
            }
            if realm.is_empty() {
                return Err(ApiError::invalid("realm", "must not be empty"));
            }
            let auth = ProxmoxAuth::Password {
                username: username.clone(),
                realm: realm.clone(),
            };
            let login = PasswordLogin::new(username, realm, Secret::new(password.clone()));
            (auth, password.clone(), Credentials::Password(login))
        }
        (Some(_), ..) => {
            return Err(ApiError::invalid(
                "token",
                "give a token, or a username, password and realm, not both",
            ));
        }
        _ => {
            return Err(ApiError::invalid(
                "token",
                "give a token (USER@REALM!ID=SECRET), or a username, password and realm",
            ));
        }
    };
    let trust = Trust::choose(
        request.ca.clone(),
        request.fingerprint.clone(),
        request.insecure,
    )?;
    let client = proxmox_client(&request.url, credentials, &trust)?;
    let settings = ProxmoxSettings {
        auth,
        tls: trust,
        pve_node: request.pve_node.clone(),
    };
    Ok((settings, secret, client))
}

/// The sealing context of node `name`'s secret.
fn seal_context(name: &str) -> String {
    format!("node:{name}")
}

/// The driver of a stored node.
fn driver_of(app: &App, record: &NodeRecord) -> Result<Arc<dyn Driver>, ApiError> {
    let settings: ProxmoxSettings =
        serde_json::from_str(&record.settings).map_err(ApiError::internal)?;
    let secret = app
        .secrets
        .open_sealed(&record.secret_sealed, &seal_context(&record.name))
        .map_err(ApiError::Internal)?;
    let credentials = match settings.auth {
        ProxmoxAuth::Token { user, token_id } => Credentials::Token(ApiToken {
            user,
            token_id,
            secret: Secret::new(secret),
        }),
        ProxmoxAuth::Password { username, realm } => {
            Credentials::Password(PasswordLogin::new(username, realm, Secret::new(secret)))
        }
    };
    let client = proxmox_client(&record.url, credentials, &settings.tls)?;
    Ok(Arc::new(ProxmoxDriver::new(client, settings.pve_node)))
}

/// Puts every stored node in the registry. A node that cannot be set up is logged and
/// left out; its VMs show as unavailable.
pub async fn load(app: &App) -> Result<(), ApiError> {
    for record in app.store.nodes().await? {
        if record.kind == "agent" {
            if let Err(e) = agents::load(app, &record).await {
                tracing::error!(node = %record.name, error = %chain(&e), "cannot set up node");
            }
            continue;
        }
        match driver_of(app, &record) {
            Ok(driver) => app.nodes.insert(&record.name, driver),
            Err(e) => {
                tracing::error!(node = %record.name, error = %chain(&e), "cannot set up node");
            }
        }
    }
    Ok(())
}

/// What a failed check of a new node says, blaming the field to fix; `credential` is the
/// field that held the secret (`token` or `password`).
fn check_failed(error: &porthole_proxmox::Error, credential: &'static str) -> ApiError {
    use porthole_proxmox::Error;
    let message = chain(error);
    match error {
        Error::Unauthorized { .. } | Error::SecondFactorRequired { .. } => {
            ApiError::invalid(credential, message)
        }
        Error::Forbidden { .. } => ApiError::invalid(
            credential,
            format!("{message}; the user needs rights on / (e.g. PVEVMAdmin, Pool.Allocate)"),
        ),
        Error::Connect { .. } | Error::Tls(_) => ApiError::invalid("url", message),
        _ => ApiError::Unavailable(format!(
            "the node did not answer as Proxmox VE does: {message}"
        )),
    }
}

/// Adds a Proxmox node after checking that it answers (admins).
pub async fn add(app: &App, caller: &Caller, request: CreateNodeRequest) -> Result<Node, ApiError> {
    caller.require_admin()?;
    let target = Target::named("node", request.name.clone());
    let result = add_node(app, request).await;
    audit::recorded(app, caller.into(), "node.add", Some(target), None, result).await
}

async fn add_node(app: &App, request: CreateNodeRequest) -> Result<Node, ApiError> {
    NodeRegistry::check_name(&request.name)?;
    if request.kind == "agent" {
        return agents::add(app, &request).await;
    }
    let (settings, secret, client) = parse_request(&request)?;
    let credential = match settings.auth {
        ProxmoxAuth::Token { .. } => "token",
        ProxmoxAuth::Password { .. } => "password",
    };
    let check_failed = |e| check_failed(&e, credential);
    let version = tokio::time::timeout(CHECK_TIMEOUT, client.version())
        .await
        .map_err(|_| ApiError::invalid("url", "the node did not answer within 10 s"))?
        .map_err(check_failed)?;
    let pve_nodes = client.nodes().await.map_err(check_failed)?;
    if let Some(pinned) = &settings.pve_node
        && !pve_nodes.iter().any(|n| &n.node == pinned)
    {
        let known: Vec<_> = pve_nodes.iter().map(|n| n.node.as_str()).collect();
        return Err(ApiError::invalid(
            "pve_node",
            format!(
                "the cluster has no node {pinned:?}; it has {}",
                known.join(", ")
            ),
        ));
    }
    let record = NodeRecord {
        name: request.name.clone(),
        kind: request.kind.clone(),
        url: request.url.clone(),
        settings: serde_json::to_string(&settings).map_err(ApiError::internal)?,
        secret_sealed: app.secrets.seal(&secret, &seal_context(&request.name)),
        created_at: app.clock.now_millis(),
    };
    app.store.insert_node(&record).await.map_err(|e| match e {
        StoreError::Taken { .. } => ApiError::conflict(
            Some("name"),
            format!("name: a node called {:?} exists already", request.name),
        ),
        other => other.into(),
    })?;
    app.nodes.insert(
        &record.name,
        Arc::new(ProxmoxDriver::new(client, settings.pve_node)),
    );
    tracing::info!(node = %record.name, url = %record.url, "node added");
    Ok(Node {
        name: record.name,
        kind: record.kind,
        url: Some(record.url),
        vms: 0,
        online: true,
        detail: format!("Proxmox VE {}", version.version),
        join_token: None,
    })
}

/// Every node, each checked now (admins).
pub async fn list(app: &App, caller: &Caller) -> Result<Vec<Node>, ApiError> {
    caller.require_admin()?;
    let vms = app.store.vms(None).await?;
    let count = |name: &str| vms.iter().filter(|vm| vm.node == name).count() as u64;
    let stored = app.store.nodes().await?;
    let urls: HashMap<&str, &str> = stored
        .iter()
        .map(|n| (n.name.as_str(), n.url.as_str()))
        .collect();
    let mut out = Vec::new();
    for (name, driver) in app.nodes.all() {
        let (online, detail) = match app.nodes.agent(&name) {
            Some(agent) => agent_detail(&agent),
            None => match tokio::time::timeout(CHECK_TIMEOUT, driver.inventory()).await {
                Ok(Ok(found)) => (true, format!("{} porthole VMs found", found.len())),
                Ok(Err(e)) => (false, chain(&e)),
                Err(_) => (false, "no answer within 10 s".to_owned()),
            },
        };
        out.push(Node {
            vms: count(&name),
            kind: driver.kind().to_owned(),
            url: urls.get(name.as_str()).map(|u| (*u).to_owned()),
            name,
            online,
            detail,
            join_token: None,
        });
    }
    // Agent nodes whose agent has not joined yet.
    for record in stored
        .iter()
        .filter(|n| n.kind == "agent" && n.url.is_empty())
    {
        let detail = match app.store.pending_join(&record.name).await? {
            Some(expires_at) => agents::waiting_detail(expires_at),
            None => "waiting for its agent; no join token is valid".to_owned(),
        };
        out.push(Node {
            name: record.name.clone(),
            kind: record.kind.clone(),
            url: None,
            vms: count(&record.name),
            online: false,
            detail,
            join_token: None,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// How an agent node is, from its heartbeats: no request is made.
fn agent_detail(agent: &porthole_agent::AgentDriver) -> (bool, String) {
    let (online, since, problem) = agent.liveness();
    let since = chrono::DateTime::<chrono::Utc>::from(since)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut detail = match (online, agent.capacity(), problem) {
        (true, Some(c), _) => format!(
            "answering since {since}; {} cores, {} MiB, {} GiB",
            c.cores, c.memory_mib, c.disk_gib
        ),
        (_, _, Some(problem)) => format!("offline since {since}: {problem}"),
        _ => format!("offline since {since}"),
    };
    let findings = agent.findings();
    if !findings.is_empty() {
        detail.push_str("; found at reconnect: ");
        detail.push_str(&findings.join("; "));
    }
    (online, detail)
}

/// Removes a node that no VM or template uses (admins). With `forget_vms`, a node that is
/// offline goes together with the records of its VMs: for a host that is gone for good.
/// Nothing on the host is touched, and each forgotten VM is named in the audit log.
pub async fn remove(
    app: &App,
    caller: &Caller,
    name: &str,
    forget_vms: bool,
) -> Result<(), ApiError> {
    caller.require_admin()?;
    let result = remove_node(app, name, forget_vms).await;
    let detail = match &result {
        Ok(forgotten) if !forgotten.is_empty() => {
            Some(format!("forgot VMs {}", forgotten.join(", ")))
        }
        _ => None,
    };
    let target = Target::named("node", name.to_owned());
    audit::recorded(
        app,
        caller.into(),
        "node.remove",
        Some(target),
        detail,
        result.map(|_| ()),
    )
    .await
}

/// Removes node `name`, returning the VMs it forgot.
async fn remove_node(app: &App, name: &str, forget_vms: bool) -> Result<Vec<String>, ApiError> {
    if name == NodeRegistry::LOCAL {
        return Err(ApiError::conflict(
            None,
            "the built-in node cannot be removed",
        ));
    }
    if forget_vms
        && let Ok(driver) = app.nodes.get(name)
        && driver.unavailable().is_none()
    {
        return Err(ApiError::conflict(
            Some("forget_vms"),
            format!(
                "node {name:?} answers; delete its VMs instead of forgetting them, then remove it"
            ),
        ));
    }
    let forgotten = app
        .store
        .delete_node(name, app.clock.now_millis(), forget_vms)
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => ApiError::NotFound(format!("no node called {name:?}")),
            StoreError::InUse(_) => ApiError::conflict(
                None,
                format!(
                    "node {name:?} still has VMs or templates; delete them first (or, for a \
                     host that is gone for good, remove it with --forget-vms while it is \
                     offline)"
                ),
            ),
            other => other.into(),
        })?;
    app.nodes.remove(name);
    tracing::info!(node = %name, forgotten = forgotten.len(), "node removed");
    Ok(forgotten)
}

/// Makes a template node `node` keeps available as template `request.name` (admins). It
/// starts unapproved, like an imported one.
pub async fn link_template(
    app: &App,
    caller: &Caller,
    node: &str,
    request: LinkTemplateRequest,
) -> Result<Template, ApiError> {
    caller.require_admin()?;
    let target = Target::named("template", request.name.clone());
    let detail = Some(format!("node={node} reference={}", request.reference));
    let result = link(app, node, request).await;
    audit::recorded(
        app,
        caller.into(),
        "template.link",
        Some(target),
        detail,
        result,
    )
    .await
}

async fn link(app: &App, node: &str, request: LinkTemplateRequest) -> Result<Template, ApiError> {
    check_template_name(app, &request.name).await?;
    let driver = app
        .nodes
        .get(node)
        .map_err(|_| ApiError::NotFound(format!("no node called {node:?}")))?;
    let disk_bytes = driver
        .node_template(&request.reference)
        .await
        .map_err(|e| match e {
            DriverError::Unsupported(_) => ApiError::invalid(
                "node",
                format!("node {node:?} keeps no templates of its own; import an image instead"),
            ),
            DriverError::BadImage(why) => ApiError::invalid("reference", why),
            other => ApiError::Unavailable(chain(&other)),
        })?;
    let record = TemplateRecord {
        id: TemplateId::random(),
        name: request.name,
        disk_format: DiskFormat::Raw,
        virtual_size: disk_bytes,
        file_size: 0,
        sha256: String::new(),
        kernel_sha256: None,
        initrd_sha256: None,
        cmdline: None,
        created_at: app.clock.now_millis(),
        approved: false,
        on_node: Some(NodeTemplate {
            node: node.to_owned(),
            reference: request.reference,
        }),
    };
    app.store.insert_template(&record).await?;
    Ok(template_to_wire(&record))
}
