//! `porthole node ...`: the hypervisors and clusters VMs run on.

use anyhow::Context;
use porthole_api::CreateNodeRequest;

use super::{Session, read_password};
use crate::cli::NodeCommand;

pub async fn run(session: &Session, command: &NodeCommand) -> anyhow::Result<()> {
    let (client, print) = (&session.client, &session.print);
    match command {
        NodeCommand::List => print.list(&client.nodes().await?),
        NodeCommand::Add {
            name,
            proxmox,
            token,
            username,
            realm,
            password_stdin,
            ca,
            fingerprint,
            insecure,
            pve_node,
        } => {
            let Some(proxmox) = proxmox else {
                anyhow::ensure!(
                    token.is_none()
                        && username.is_none()
                        && ca.is_none()
                        && fingerprint.is_none()
                        && !*insecure
                        && pve_node.is_none(),
                    "--token, --username, --ca, --fingerprint, --insecure and --pve-node are for \
                     --proxmox nodes; an agent node takes only its name"
                );
                return add_agent(session, name).await;
            };
            anyhow::ensure!(
                token.is_some() || username.is_some(),
                "give --token USER@REALM!ID=SECRET, or --username and --realm"
            );
            let password = match username {
                Some(user) => Some(read_password(
                    &format!("Password of {user}@{}: ", realm.as_deref().unwrap_or("")),
                    *password_stdin,
                )?),
                None => None,
            };
            let ca = match ca {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read --ca {}", path.display()))?,
                ),
                None => None,
            };
            let request = CreateNodeRequest {
                name: name.clone(),
                kind: "proxmox".into(),
                url: proxmox.clone(),
                token: token.clone(),
                username: username.clone(),
                password,
                realm: realm.clone(),
                ca,
                fingerprint: fingerprint.clone(),
                insecure: *insecure,
                pve_node: pve_node.clone(),
            };
            let node = client.add_node(&request).await?;
            print.done(
                &format!(
                    "added node {} ({}); link its templates with `porthole template link`",
                    node.name, node.detail
                ),
                &node,
            )
        }
        NodeCommand::Remove { name, forget_vms } => {
            if *forget_vms {
                client.forget_node(name).await?;
            } else {
                client.remove_node(name).await?;
            }
            print.done(
                &format!("removed node {name}"),
                &serde_json::json!({ "removed": name }),
            )
        }
    }
}

/// Adds an agent node and shows its join token with the command to run on the host.
async fn add_agent(session: &Session, name: &str) -> anyhow::Result<()> {
    let request = CreateNodeRequest {
        name: name.to_owned(),
        kind: "agent".into(),
        ..CreateNodeRequest::default()
    };
    let node = session.client.add_node(&request).await?;
    let token = node.join_token.clone().unwrap_or_default();
    session.print.done(
        &format!(
            "added node {name}; {}.\nOn the host, run:\n  porthole agent --plane https://PLANE:AGENT-PORT \\\n    --join {token} \\\n    --listen ADDR:PORT --data-dir /var/lib/porthole-agent\nThe token works once; it is not shown again.",
            node.detail
        ),
        &node,
    )
}
