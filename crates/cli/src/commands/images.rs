//! `porthole template ...` and `porthole iso ...`.

use porthole_api::client::{ImageSource, TemplateUpload};

use super::Session;
use crate::cli::{IsoCommand, TemplateCommand};
use crate::progress::upload_bar;

pub async fn run_template(session: &Session, command: &TemplateCommand) -> anyhow::Result<()> {
    let (client, print) = (&session.client, &session.print);
    match command {
        TemplateCommand::List => print.list(&client.templates().await?),
        TemplateCommand::Import {
            source,
            name,
            kernel,
            initrd,
            cmdline,
        } => {
            let upload = TemplateUpload {
                name: name.clone(),
                disk: ImageSource::parse(source),
                kernel: kernel.as_deref().map(ImageSource::parse),
                initrd: initrd.as_deref().map(ImageSource::parse),
                cmdline: cmdline.clone(),
            };
            let mut total = Some(0u64);
            for part in [
                Some(&upload.disk),
                upload.kernel.as_ref(),
                upload.initrd.as_ref(),
            ]
            .into_iter()
            .flatten()
            {
                total = match (total, client.upload_size(part).await?) {
                    (Some(sum), Some(size)) => Some(sum + size),
                    _ => None,
                };
            }
            let (bar, progress) = upload_bar(name, total);
            let template = client.import_template(&upload, progress).await;
            bar.finish_and_clear();
            let template = template?;
            print.done(
                &format!(
                    "imported template {} ({})",
                    template.name,
                    template.format.as_str()
                ),
                &template,
            )
        }
        TemplateCommand::Delete { name } => {
            client.delete_template(name).await?;
            print.done(
                &format!("deleted template {name}"),
                &serde_json::json!({ "deleted": name }),
            )
        }
        TemplateCommand::Link { name, node, vmid } => {
            let request = porthole_api::LinkTemplateRequest {
                name: name.clone(),
                reference: vmid.clone(),
            };
            let template = client.link_template(node, &request).await?;
            print.done(
                &format!(
                    "template {} is VMID {vmid} on node {node}; approve it with `porthole template approve {}`",
                    template.name, template.name
                ),
                &template,
            )
        }
        TemplateCommand::Approve { name, revoke } => {
            let template = client.approve_template(name, !revoke).await?;
            let message = if template.approved {
                format!(
                    "template {} is approved: members may create VMs from it",
                    template.name
                )
            } else {
                format!(
                    "template {} is no longer approved: only admins may create VMs from it",
                    template.name
                )
            };
            print.done(&message, &template)
        }
    }
}

pub async fn run_iso(session: &Session, command: &IsoCommand) -> anyhow::Result<()> {
    let (client, print) = (&session.client, &session.print);
    match command {
        IsoCommand::List => print.list(&client.isos().await?),
        IsoCommand::Import { source, name } => {
            let source = ImageSource::parse(source);
            let (bar, progress) = upload_bar(name, client.upload_size(&source).await?);
            let iso = client.import_iso(name, &source, progress).await;
            bar.finish_and_clear();
            let iso = iso?;
            print.done(&format!("imported ISO {}", iso.name), &iso)
        }
        IsoCommand::Delete { name } => {
            client.delete_iso(name).await?;
            print.done(
                &format!("deleted ISO {name}"),
                &serde_json::json!({ "deleted": name }),
            )
        }
        IsoCommand::Approve { name, revoke } => {
            let iso = client.approve_iso(name, !revoke).await?;
            let message = if iso.approved {
                format!("ISO {} is approved: members may boot it", iso.name)
            } else {
                format!(
                    "ISO {} is no longer approved: only admins may boot it",
                    iso.name
                )
            };
            print.done(&message, &iso)
        }
    }
}
