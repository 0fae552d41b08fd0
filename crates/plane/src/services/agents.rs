//! Hypervisor agents: the plane's CA, join tokens, enrolment and renewal, template images
//! for agents, heartbeats, and what a returning node is found to hold.
//!
//! An admin adds an agent node and gets a one-time join token, `NODE.SECRET.CAHASH`, stored
//! as a hash and valid for [`AgentSettings::join_ttl`]. The agent sends a CSR with it; the
//! CA signs the agent's own key for the node's identity, and spending the token and
//! recording the certificate happen in one transaction. From then on every request either
//! way is mutual TLS 1.3, and a certificate counts only while its row is unrevoked:
//! removing the node revokes them all.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use porthole_agent::driver::{AgentDriver, Heartbeat};
use porthole_agent::pki::{self};
use porthole_agent::tls::PeerCertificate;
use porthole_agent::wire::{Cached, Enrolled, HelloRequest, JoinRequest, RenewRequest};
use porthole_core::driver::Driver;
use porthole_core::{IsoId, TemplateId, VmId, VmState};
use porthole_store::agents::{AgentCertificate, JoinRefusal};
use tokio_util::sync::CancellationToken;

use crate::app::{App, AppState};
use crate::error::{ApiError, chain};
use crate::registry::NodeRegistry;
use crate::services::audit::{self, Actor, Target};
use crate::services::nodes::agent;
use crate::services::tokens::token_hash;

/// How long an agent may take to drop a cached image.
const EVICT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often each agent is asked how it is.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// Renews the plane's certificate when it is due, and has every agent driver present it.
fn renew_plane_certificate(app: &App) {
    match app.pki.renew_if_due() {
        Ok(None) => {}
        Ok(Some(identity)) => {
            for (node, driver) in app.nodes.of_type::<AgentDriver>() {
                if let Err(e) = driver.set_identity(&identity) {
                    tracing::error!(%node, error = %e, "cannot present the plane's new certificate");
                }
            }
            tracing::info!("renewed the plane's certificate");
        }
        Err(e) => tracing::error!(error = %e, "cannot renew the plane's certificate"),
    }
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The node whose certificate the request came with, if the plane issued it and it is not
/// revoked.
async fn authenticate(app: &App, peer: &PeerCertificate) -> Result<String, ApiError> {
    let Some(info) = &peer.0 else {
        return Err(ApiError::Unauthorized(
            "present this agent's certificate (from joining with a token)".into(),
        ));
    };
    let node = info
        .identity
        .as_deref()
        .and_then(pki::node_of_identity)
        .ok_or_else(|| ApiError::Forbidden("the certificate does not name a node".into()))?
        .to_owned();
    let record = app.store.agent_certificate(&info.serial).await?;
    match record {
        Some(record) if record.node == node && record.revoked_at.is_none() => Ok(node),
        Some(record) if record.revoked_at.is_some() => Err(ApiError::Forbidden(format!(
            "certificate {} of node {node:?} was revoked when the node was removed; ask an \
             admin for a new join token",
            info.serial
        ))),
        _ => Err(ApiError::Forbidden(format!(
            "certificate {} was not issued to node {node:?} by this plane",
            info.serial
        ))),
    }
}

/// Checks an agent's address: `https://HOST:PORT`.
fn check_address(address: &str) -> Result<(), ApiError> {
    let url = url::Url::parse(address)
        .map_err(|e| ApiError::invalid("address", format!("{e}; give https://HOST:PORT")))?;
    if url.scheme() != "https" || url.host_str().is_none() || url.port_or_known_default().is_none()
    {
        return Err(ApiError::invalid("address", "give https://HOST:PORT"));
    }
    Ok(())
}

/// Signs `csr` for `node` and returns it with its store row.
fn sign(app: &App, node: &str, csr: &str) -> Result<(String, AgentCertificate), ApiError> {
    let issued = app
        .pki
        .ca
        .sign_csr(
            csr,
            &pki::node_identity(node),
            app.config.agents.certificate_ttl,
        )
        .map_err(|e| ApiError::invalid("csr", chain(&e)))?;
    let row = AgentCertificate {
        serial: issued.serial.clone(),
        node: node.to_owned(),
        issued_at: app.clock.now_millis(),
        not_after: millis(issued.not_after),
        revoked_at: None,
    };
    Ok((issued.cert_pem, row))
}

fn enrolled(app: &App, node: &str, certificate: String) -> Enrolled {
    Enrolled {
        node: node.to_owned(),
        certificate,
        ca: app.pki.ca.cert_pem().to_owned(),
    }
}

/// The plane's CA certificate (PEM), which agents pin by the hash their join token carries.
pub fn ca_pem(app: &App) -> String {
    app.pki.ca.cert_pem().to_owned()
}

/// An agent joins with its one-time token.
pub async fn join(
    app: &App,
    request: JoinRequest,
    remote: Option<SocketAddr>,
) -> Result<Enrolled, ApiError> {
    let node = request
        .token
        .split('.')
        .next()
        .unwrap_or_default()
        .to_owned();
    if NodeRegistry::check_name(&node).is_err() {
        // Not even shaped like a token: nothing worth a line in the audit log.
        return Err(ApiError::Unauthorized(
            "the join token is refused: it is not a join token of this plane".into(),
        ));
    }
    let result = join_node(app, &node, request).await;
    let actor = Actor {
        user: None,
        name: &node,
        remote,
    };
    let target = Target::named("node", node.clone());
    audit::recorded(app, actor, "node.join", Some(target), None, result).await
}

async fn join_node(app: &App, node: &str, request: JoinRequest) -> Result<Enrolled, ApiError> {
    check_address(&request.address)?;
    let (certificate, row) = sign(app, node, &request.csr)?;
    let hash = token_hash(&request.token);
    let redeemed = app
        .store
        .redeem_join_token(node, &hash, app.clock.now_millis(), &row, &request.address)
        .await?;
    if let Err(refusal) = redeemed {
        let why = match refusal {
            JoinRefusal::Unknown => "it is not a join token of this plane",
            JoinRefusal::Used => "it was used already; each token admits one agent once",
            JoinRefusal::Expired => "it expired",
        };
        return Err(ApiError::Unauthorized(format!(
            "the join token is refused: {why}; on the plane, run `porthole node add {node}` \
             for a new one"
        )));
    }
    let driver = agent::driver_at(app, node, &request.address).await?;
    app.nodes.insert(node, driver);
    tracing::info!(%node, address = %request.address, serial = %row.serial, "agent joined");
    Ok(enrolled(app, node, certificate))
}

/// An agent says where it listens, at every start.
pub async fn hello(
    app: &App,
    peer: &PeerCertificate,
    request: HelloRequest,
) -> Result<(), ApiError> {
    let node = authenticate(app, peer).await?;
    check_address(&request.address)?;
    app.store.set_node_url(&node, &request.address).await?;
    if let Some(driver) = app.nodes.typed::<AgentDriver>(&node) {
        driver.set_address(&request.address);
        driver.restarted();
    }
    tracing::info!(%node, address = %request.address, "agent started");
    Ok(())
}

/// An agent renews its certificate with the current one.
pub async fn renew(
    app: &App,
    peer: &PeerCertificate,
    request: RenewRequest,
) -> Result<Enrolled, ApiError> {
    let node = authenticate(app, peer).await?;
    check_address(&request.address)?;
    let (certificate, row) = sign(app, &node, &request.csr)?;
    app.store.insert_agent_certificate(&row).await?;
    app.store.set_node_url(&node, &request.address).await?;
    if let Some(driver) = app.nodes.typed::<AgentDriver>(&node) {
        driver.allow(row.serial.clone());
        driver.set_address(&request.address);
    }
    tracing::info!(%node, serial = %row.serial, "agent certificate renewed");
    Ok(enrolled(app, &node, certificate))
}

/// A file of template `id` for an agent: its path and the SHA-256 recorded at import.
pub async fn template_file(
    app: &App,
    peer: &PeerCertificate,
    id: &str,
    part: &str,
) -> Result<(PathBuf, String), ApiError> {
    authenticate(app, peer).await?;
    let missing = || ApiError::NotFound(format!("no template file {id}/{part}"));
    let id: TemplateId = id.parse().map_err(|_| missing())?;
    let template = app.store.template(id).await?.ok_or_else(missing)?;
    let files = app.images.template_files(&template);
    let (path, sha256) = match part {
        "disk" => (Some(files.disk), Some(template.sha256)),
        "kernel" => (files.kernel, template.kernel_sha256),
        "initrd" => (files.initrd, template.initrd_sha256),
        _ => (None, None),
    };
    match (path, sha256) {
        (Some(path), Some(sha256)) => Ok((path, sha256)),
        _ => Err(missing()),
    }
}

/// ISO `id`'s file for an agent: its path and the SHA-256 recorded at import.
pub async fn iso_file(
    app: &App,
    peer: &PeerCertificate,
    id: &str,
) -> Result<(PathBuf, String), ApiError> {
    authenticate(app, peer).await?;
    let missing = || ApiError::NotFound(format!("no ISO {id}"));
    let id: IsoId = id.parse().map_err(|_| missing())?;
    let iso = app.store.iso(id).await?.ok_or_else(missing)?;
    Ok((app.images.iso_path(iso.id), iso.sha256))
}

/// Sends every agent a heartbeat each [`HEARTBEAT_INTERVAL`], one at a time per agent, until
/// `stop` is cancelled.
pub async fn run(app: AppState, stop: CancellationToken) {
    let mut beating: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        renew_plane_certificate(&app);
        beating.retain(|_, beat| !beat.is_finished());
        for (name, driver) in app.nodes.of_type::<AgentDriver>() {
            if beating.contains_key(&name) {
                continue;
            }
            let app = app.clone();
            let node = name.clone();
            beating.insert(
                name,
                tokio::spawn(async move { beat(&app, &node, &driver).await }),
            );
        }
    }
    for (_, beat) in beating {
        beat.abort();
    }
}

async fn beat(app: &App, node: &str, driver: &AgentDriver) {
    let target = || Target::named("node", node.to_owned());
    match driver.heartbeat().await {
        Heartbeat::CameOnline(health) => {
            tracing::info!(%node, "node answers");
            sweep(app, node, driver, &health.cached).await;
            let findings = reconcile(app, node, &health.inventory).await;
            driver.set_findings(findings.clone());
            let detail = (!findings.is_empty()).then(|| findings.join("; "));
            audit::record(
                app,
                Actor::PLANE,
                "node.online",
                Some(target()),
                &Ok::<(), ApiError>(()),
                detail,
            )
            .await;
        }
        Heartbeat::WentOffline(why) => {
            tracing::warn!(%node, reason = %why, "node stopped answering; marking it offline");
            if let Err(e) = mark_unknown(app, node).await {
                tracing::warn!(%node, error = %chain(&e), "cannot mark the node's VMs unknown");
            }
            audit::record(
                app,
                Actor::PLANE,
                "node.offline",
                Some(target()),
                &Ok::<(), ApiError>(()),
                Some(why),
            )
            .await;
        }
        Heartbeat::Steady(_) | Heartbeat::StillOffline => {}
    }
}

/// Has every online agent drop its cached copy of an image the plane just deleted; `kind`
/// is `templates` or `isos`. Agents that are offline now are swept when they come back.
pub async fn evict_everywhere(app: &App, kind: &str, id: &str) {
    for (node, driver) in app.nodes.of_type::<AgentDriver>() {
        if driver.unavailable().is_some() {
            continue;
        }
        match tokio::time::timeout(EVICT_TIMEOUT, driver.evict(kind, id)).await {
            Ok(Ok(())) => tracing::info!(%node, kind, id, "dropped a cached image"),
            Ok(Err(e)) => {
                tracing::warn!(%node, kind, id, error = %chain(&e), "cannot drop a cached image");
            }
            Err(_) => tracing::warn!(%node, kind, id, "no answer to dropping a cached image"),
        }
    }
}

/// Drops the images an agent caches that the plane no longer keeps.
async fn sweep(app: &App, node: &str, driver: &AgentDriver, cached: &Cached) {
    for id in &cached.templates {
        if let Ok(None) = app.store.template(*id).await
            && let Err(e) = driver.evict("templates", &id.to_string()).await
        {
            tracing::warn!(%node, template = %id, error = %chain(&e), "cannot drop a cached template");
        }
    }
    for id in &cached.isos {
        if let Ok(None) = app.store.iso(*id).await
            && let Err(e) = driver.evict("isos", &id.to_string()).await
        {
            tracing::warn!(%node, iso = %id, error = %chain(&e), "cannot drop a cached ISO");
        }
    }
}

/// Records every idle VM of an offline node as `unknown` at once; the reconciler restores
/// their states when the node answers again.
async fn mark_unknown(app: &App, node: &str) -> Result<(), ApiError> {
    for vm in app.store.vms(None).await? {
        if vm.node != node
            || vm.job_id.is_some()
            || matches!(
                vm.state,
                VmState::Creating | VmState::Deleting | VmState::Unknown
            )
        {
            continue;
        }
        app.store
            .record_vm_state(vm.id, vm.state, VmState::Unknown, app.clock.now_millis())
            .await?;
    }
    Ok(())
}

/// Compares what a node holds with what the plane expects there, and reports (never
/// deletes) both kinds of difference.
async fn reconcile(
    app: &App,
    node: &str,
    inventory: &[(VmId, porthole_core::PowerState)],
) -> Vec<String> {
    let vms = match app.store.vms(None).await {
        Ok(vms) => vms,
        Err(e) => return vec![format!("cannot compare with the database: {e}")],
    };
    let on_host: HashSet<VmId> = inventory.iter().map(|(id, _)| *id).collect();
    let known: HashSet<VmId> = vms.iter().map(|vm| vm.id).collect();
    let mut findings = Vec::new();
    for (id, _) in inventory {
        if !known.contains(id) {
            findings.push(format!(
                "the host has VM {id}, which porthole does not know; it was left alone"
            ));
        }
    }
    for vm in vms.iter().filter(|vm| vm.node == node) {
        if !on_host.contains(&vm.id) && !matches!(vm.state, VmState::Creating | VmState::Deleting) {
            findings.push(format!(
                "VM {} ({}) is missing from the host; delete it in porthole to clean up",
                vm.name, vm.id
            ));
        }
    }
    for finding in &findings {
        tracing::warn!(%node, "{finding}");
    }
    findings
}
