//! Proxmox VE clusters as nodes: the settings an admin gives (the API's URL, a token or a
//! user's password, which certificates to trust, an optional pinned PVE node), the check
//! that the cluster answers with them, and the factory that builds a [`ProxmoxDriver`]
//! from a stored row.
//!
//! The token secret or password is sealed under the plane's key, bound to the node's name;
//! the rest is stored as JSON.

use std::sync::Arc;
use std::time::Duration;

use porthole_api::{CreateNodeRequest, Node};
use porthole_core::NodeKind;
use porthole_core::driver::Driver;
use porthole_proxmox::{
    ApiToken, Client, ClientBuilder, Credentials, PasswordLogin, ProxmoxDriver, Secret,
};
use porthole_store::StoreError;
use porthole_store::nodes::NodeRecord;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::config::{Trust, check_url};
use crate::error::{ApiError, chain};

/// How long checking a node may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// How a Proxmox node is reached, without its secret: the stored settings.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProxmoxSettings {
    auth: ProxmoxAuth,
    tls: Trust,
    #[serde(default)]
    pve_node: Option<String>,
}

/// Who the node's driver logs in as.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ProxmoxAuth {
    /// An API token; the secret is sealed.
    Token { user: String, token_id: String },
    /// A user's password; the password is sealed.
    Password { username: String, realm: String },
}

/// A checked request to add a Proxmox node: its settings, its secret, and a client that
/// uses them.
#[derive(Debug)]
pub struct NewProxmoxNode {
    settings: ProxmoxSettings,
    secret: String,
    client: Client,
    url: String,
}

/// A Proxmox client for `url` with `credentials` and `trust`.
fn client(url: &str, credentials: Credentials, trust: &Trust) -> Result<Client, ApiError> {
    ClientBuilder::new(url, credentials)
        .tls(trust.options()?)
        .timeout(CHECK_TIMEOUT)
        .build()
        .map_err(|e| ApiError::invalid("url", chain(&e)))
}

/// The Proxmox fields of an add request, checked; nothing is contacted yet.
pub fn parse(request: &CreateNodeRequest) -> Result<NewProxmoxNode, ApiError> {
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
    let client = client(&request.url, credentials, &trust)?;
    let settings = ProxmoxSettings {
        auth,
        tls: trust,
        pve_node: request.pve_node.clone(),
    };
    Ok(NewProxmoxNode {
        settings,
        secret,
        client,
        url: request.url.clone(),
    })
}

/// The sealing context of node `name`'s secret.
fn seal_context(name: &str) -> String {
    format!("node:{name}")
}

/// The factory: the driver of stored node `record`, with its sealed secret opened.
pub fn driver(
    app: &App,
    record: &NodeRecord,
    settings: ProxmoxSettings,
) -> Result<Arc<dyn Driver>, ApiError> {
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
    let client = client(&record.url, credentials, &settings.tls)?;
    Ok(Arc::new(ProxmoxDriver::new(client, settings.pve_node)))
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

/// Adds node `name` after checking that the cluster answers with the settings given; a
/// node that does not is refused and nothing is stored.
pub async fn add(app: &App, name: &str, new: NewProxmoxNode) -> Result<Node, ApiError> {
    let NewProxmoxNode {
        settings,
        secret,
        client,
        url,
    } = new;
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
        name: name.to_owned(),
        kind: NodeKind::Proxmox,
        url,
        settings: serde_json::to_string(&settings).map_err(ApiError::internal)?,
        secret_sealed: app.secrets.seal(&secret, &seal_context(name)),
        created_at: app.clock.now_millis(),
    };
    app.store.insert_node(&record).await.map_err(|e| match e {
        StoreError::Taken { .. } => ApiError::conflict(
            Some("name"),
            format!("name: a node called {name:?} exists already"),
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
        kind: NodeKind::Proxmox.as_str().into(),
        url: Some(record.url),
        vms: 0,
        online: true,
        detail: format!("Proxmox VE {}", version.version),
        join_token: None,
    })
}
