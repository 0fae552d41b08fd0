//! Agent hosts as nodes: an admin adds one by name and gets a one-time join token; the
//! agent joins with it (see [`agents`](crate::services::agents)), and from then on the
//! factory builds an [`AgentDriver`] for it that trusts only the certificates the store
//! lists for the node.

use std::sync::Arc;

use porthole_agent::AgentDriver;
use porthole_api::{CreateNodeRequest, Node};
use porthole_core::NodeKind;
use porthole_core::driver::Driver;
use porthole_store::StoreError;
use porthole_store::nodes::NodeRecord;

use crate::app::App;
use crate::clock::from_millis;
use crate::error::ApiError;
use crate::services::tokens::{random_secret, token_hash};

/// Checks that an add request for an agent node gives only a name.
pub fn parse(request: &CreateNodeRequest) -> Result<(), ApiError> {
    let extra = [
        ("url", !request.url.is_empty()),
        ("token", request.token.is_some()),
        ("username", request.username.is_some()),
        ("password", request.password.is_some()),
        ("realm", request.realm.is_some()),
        ("ca", request.ca.is_some()),
        ("fingerprint", request.fingerprint.is_some()),
        ("insecure", request.insecure),
        ("pve_node", request.pve_node.is_some()),
    ];
    if let Some((field, _)) = extra.iter().find(|(_, given)| *given) {
        return Err(ApiError::invalid(
            field,
            "agent nodes take only a name: the agent reports everything else when it joins",
        ));
    }
    Ok(())
}

/// Adds agent node `name` and returns it with its join token; for an agent node that has
/// not joined yet, replaces its token instead.
pub async fn add(app: &App, name: &str) -> Result<Node, ApiError> {
    if app.config.agents.listen.is_none() {
        return Err(ApiError::conflict(
            None,
            "this plane has no agent listener, so no agent could join; start `porthole serve` \
             with --agent-listen ADDR:PORT",
        ));
    }
    let secret = random_secret("ptj");
    let credential = format!("{name}.{secret}");
    let now = app.clock.now_millis();
    let ttl = i64::try_from(app.config.agents.join_ttl.as_millis()).unwrap_or(i64::MAX);
    let expires_at = now.saturating_add(ttl);
    let record = NodeRecord {
        name: name.to_owned(),
        kind: NodeKind::Agent,
        url: String::new(),
        settings: "{}".into(),
        secret_sealed: String::new(),
        created_at: now,
    };
    let hash = token_hash(&credential);
    match app
        .store
        .insert_agent_node(&record, &hash, expires_at)
        .await
    {
        Ok(()) => {}
        Err(StoreError::Taken { .. }) => {
            app.store
                .replace_join_token(name, &hash, expires_at)
                .await
                .map_err(|e| match e {
                    StoreError::NotFound(_) => ApiError::conflict(
                        Some("name"),
                        format!(
                            "name: a node called {name:?} exists already; to enrol its host \
                             again, remove it first"
                        ),
                    ),
                    other => other.into(),
                })?;
        }
        Err(other) => return Err(other.into()),
    }
    tracing::info!(node = %name, "agent node added; waiting for its agent to join");
    Ok(Node {
        name: name.to_owned(),
        kind: NodeKind::Agent.as_str().into(),
        url: None,
        vms: 0,
        online: false,
        detail: waiting_detail(expires_at),
        join_token: Some(format!("{credential}.{}", app.pki.ca.fingerprint())),
    })
}

/// What a node waiting for its agent shows.
pub fn waiting_detail(expires_at: i64) -> String {
    let when = from_millis(expires_at).to_rfc3339();
    format!("waiting for its agent to join; the join token expires at {when}")
}

/// The factory: the driver of stored agent node `record`, or `None` while its agent has
/// not joined (no address yet).
pub async fn driver(app: &App, record: &NodeRecord) -> Result<Option<Arc<dyn Driver>>, ApiError> {
    if record.url.is_empty() {
        return Ok(None);
    }
    Ok(Some(driver_at(app, &record.name, &record.url).await?))
}

/// The driver of agent node `name` at `url`, accepting the certificates the store lists.
pub async fn driver_at(app: &App, name: &str, url: &str) -> Result<Arc<AgentDriver>, ApiError> {
    let serials = app
        .store
        .agent_serials(name, app.clock.now_millis())
        .await?;
    AgentDriver::new(
        name,
        url,
        app.pki.ca.cert_der(),
        &app.pki.identity(),
        serials,
    )
    .map_err(ApiError::internal)
}

/// How an agent node is, from its heartbeats: no request is made.
pub fn detail(agent: &AgentDriver) -> (bool, String) {
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
