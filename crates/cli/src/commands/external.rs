//! `porthole external ...`: consoles that are not porthole VMs.

use anyhow::bail;
use porthole_api::{CreateExternalConsoleRequest, ExternalProtocol};

use super::{Session, read_password};
use crate::cli::ExternalCommand;

pub async fn run(session: &Session, command: &ExternalCommand) -> anyhow::Result<()> {
    let (client, print) = (&session.client, &session.print);
    match command {
        ExternalCommand::List => print.list(&client.external_consoles().await?),
        ExternalCommand::Add {
            name,
            protocol,
            address,
            password_stdin,
        } => {
            let protocol = match protocol.as_str() {
                "vnc" => ExternalProtocol::Vnc,
                "tcp" => ExternalProtocol::Tcp,
                other => bail!("--protocol must be vnc or tcp, not {other:?}"),
            };
            let password = if *password_stdin {
                Some(read_password("", true)?)
            } else {
                None
            };
            let request = CreateExternalConsoleRequest {
                name: name.clone(),
                protocol,
                address: address.clone(),
                password,
            };
            let console = client.create_external_console(&request).await?;
            print.done(
                &format!("registered {} ({})", console.name, console.address),
                &console,
            )
        }
        ExternalCommand::Delete { name } => {
            let console = client.find_external_console(name).await?;
            client.delete_external_console(console.id).await?;
            print.done(
                &format!("deleted {}", console.name),
                &serde_json::json!({ "deleted": console.name }),
            )
        }
        ExternalCommand::Grant { name, username } => {
            let console = client.find_external_console(name).await?;
            client.grant_external_console(console.id, username).await?;
            print.done(
                &format!("{username} may open {}", console.name),
                &serde_json::json!({ "granted": username }),
            )
        }
        ExternalCommand::Revoke { name, username } => {
            let console = client.find_external_console(name).await?;
            client.revoke_external_console(console.id, username).await?;
            print.done(
                &format!("{username} may no longer open {}", console.name),
                &serde_json::json!({ "revoked": username }),
            )
        }
    }
}
