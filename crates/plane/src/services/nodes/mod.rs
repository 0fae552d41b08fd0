//! Nodes besides the built-in one: adding, listing, removing, and linking the templates a
//! node keeps.
//!
//! Each kind of node has a module here with its settings and its factory ([`proxmox`],
//! [`agent`], and [`qemu`] for the built-in node); this module dispatches on [`NodeKind`]
//! and nowhere else. A stored row is read only as its own kind ([`NodeSettings::of`]).

pub mod agent;
pub mod proxmox;
pub mod qemu;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use porthole_agent::AgentDriver;
use porthole_api::{CreateNodeRequest, LinkTemplateRequest, Node, Template};
use porthole_core::driver::{DiskFormat, Driver, DriverError};
use porthole_core::{ImageHome, NodeKind, TemplateId};
use porthole_store::StoreError;
use porthole_store::images::{NodeTemplate, TemplateRecord};
use porthole_store::nodes::NodeRecord;

use crate::app::App;
use crate::error::{ApiError, chain};
use crate::registry::NodeRegistry;
use crate::services::audit::{self, Target};
use crate::services::caller::Caller;
use crate::services::images::{check_template_name, template_to_wire};

/// How long listing a node's VMs may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// What a request to add a node asks for, checked by its kind's module.
#[derive(Debug)]
enum NewNode {
    /// A Proxmox VE cluster.
    Proxmox(Box<proxmox::NewProxmoxNode>),
    /// A host that will join with a token.
    Agent,
}

impl NewNode {
    /// The request's kind and its fields, checked; nothing is contacted yet.
    fn parse(request: &CreateNodeRequest) -> Result<NewNode, ApiError> {
        match NodeKind::parse(&request.kind) {
            Some(NodeKind::Proxmox) => Ok(NewNode::Proxmox(Box::new(proxmox::parse(request)?))),
            Some(NodeKind::Agent) => agent::parse(request).map(|()| NewNode::Agent),
            // The built-in QEMU node is the plane's own host; it is never added.
            Some(NodeKind::Qemu) | None => Err(ApiError::invalid(
                "kind",
                "must be \"proxmox\" or \"agent\"",
            )),
        }
    }
}

/// A stored node's settings, as its own kind only.
#[derive(Debug)]
pub enum NodeSettings {
    /// How to reach a Proxmox VE cluster.
    Proxmox(proxmox::ProxmoxSettings),
    /// An agent reports everything itself; its row holds only its address.
    Agent,
}

impl NodeSettings {
    /// Reads `record`'s settings as the kind it was stored as.
    pub fn of(record: &NodeRecord) -> Result<NodeSettings, ApiError> {
        match record.kind {
            NodeKind::Proxmox => serde_json::from_str(&record.settings)
                .map(NodeSettings::Proxmox)
                .map_err(|e| {
                    ApiError::internal(anyhow::anyhow!(
                        "node {:?} has unreadable Proxmox settings: {e}",
                        record.name
                    ))
                }),
            NodeKind::Agent => Ok(NodeSettings::Agent),
            NodeKind::Qemu => Err(ApiError::internal(anyhow::anyhow!(
                "node {:?} is stored as a QEMU node, which only the built-in one is",
                record.name
            ))),
        }
    }

    /// The kind's factory: the driver of stored node `record`, or `None` while it cannot
    /// have one (an agent that has not joined yet).
    async fn driver(
        self,
        app: &App,
        record: &NodeRecord,
    ) -> Result<Option<Arc<dyn Driver>>, ApiError> {
        match self {
            NodeSettings::Proxmox(settings) => proxmox::driver(app, record, settings).map(Some),
            NodeSettings::Agent => agent::driver(app, record).await,
        }
    }
}

/// Puts every stored node in the registry. A node that cannot be set up is logged and
/// left out; its VMs show as unavailable.
pub async fn load(app: &App) -> Result<(), ApiError> {
    for record in app.store.nodes().await? {
        let driver = match NodeSettings::of(&record) {
            Ok(settings) => settings.driver(app, &record).await,
            Err(e) => Err(e),
        };
        match driver {
            Ok(Some(driver)) => app.nodes.insert(&record.name, driver),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(node = %record.name, error = %chain(&e), "cannot set up node");
            }
        }
    }
    Ok(())
}

/// Adds a node of the kind the request names (admins); the kind's module checks its
/// fields, and a node that must answer first (Proxmox) is checked before it is stored.
pub async fn add(app: &App, caller: &Caller, request: CreateNodeRequest) -> Result<Node, ApiError> {
    caller.require_admin()?;
    let target = Target::named("node", request.name.clone());
    let result = add_node(app, request).await;
    audit::recorded(app, caller.into(), "node.add", Some(target), None, result).await
}

async fn add_node(app: &App, request: CreateNodeRequest) -> Result<Node, ApiError> {
    NodeRegistry::check_name(&request.name)?;
    match NewNode::parse(&request)? {
        NewNode::Proxmox(new) => proxmox::add(app, &request.name, *new).await,
        NewNode::Agent => agent::add(app, &request.name).await,
    }
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
        let (online, detail) = match app.nodes.typed::<AgentDriver>(&name) {
            Some(agent) => agent::detail(&agent),
            None => match tokio::time::timeout(CHECK_TIMEOUT, driver.inventory()).await {
                Ok(Ok(found)) => (true, format!("{} porthole VMs found", found.len())),
                Ok(Err(e)) => (false, chain(&e)),
                Err(_) => (false, "no answer within 10 s".to_owned()),
            },
        };
        out.push(Node {
            vms: count(&name),
            kind: driver.kind().as_str().into(),
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
        .filter(|n| n.kind == NodeKind::Agent && n.url.is_empty())
    {
        let detail = match app.store.pending_join(&record.name).await? {
            Some(expires_at) => agent::waiting_detail(expires_at),
            None => "waiting for its agent; no join token is valid".to_owned(),
        };
        out.push(Node {
            name: record.name.clone(),
            kind: record.kind.as_str().into(),
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
    if driver.capabilities().images != ImageHome::Node {
        return Err(ApiError::invalid(
            "node",
            format!("node {node:?} keeps no templates of its own; import an image instead"),
        ));
    }
    let disk_bytes = driver
        .node_template(&request.reference)
        .await
        .map_err(|e| match e {
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
