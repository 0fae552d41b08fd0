//! Consoles that are not porthole VMs, such as BMCs and lab switches: an admin registers
//! their address (a VNC password is sealed to its row under the plane's key) and grants
//! users access; tickets and relaying are the same as for VMs.

use porthole_api::{
    CreateExternalConsoleRequest, ExternalConsole, ExternalProtocol as WireProtocol,
};
use porthole_core::{ExternalConsoleId, UserId};
use porthole_store::consoles::{ExternalConsoleRecord, ExternalProtocol};

use crate::app::App;
use crate::clock::from_millis;
use crate::error::ApiError;
use crate::services::audit::{self, Target};
use crate::services::caller::Caller;
use crate::services::images::validate_image_name;

/// External console `id`, if the caller is an admin or was granted it.
pub async fn visible_external(
    app: &App,
    caller: &Caller,
    id: ExternalConsoleId,
) -> Result<ExternalConsoleRecord, ApiError> {
    let missing = || {
        ApiError::NotFound(format!(
            "no external console with id {id} is visible to you"
        ))
    };
    let console = app.store.external_console(id).await?.ok_or_else(missing)?;
    if caller.is_admin()
        || app
            .store
            .external_console_granted(id, caller.user.id)
            .await?
    {
        Ok(console)
    } else {
        Err(missing())
    }
}

/// Every external console for admins; the granted ones for members.
pub async fn list(app: &App, caller: &Caller) -> Result<Vec<ExternalConsole>, ApiError> {
    let user = (!caller.is_admin()).then_some(caller.user.id);
    Ok(app
        .store
        .external_consoles(user)
        .await?
        .iter()
        .map(external_to_wire)
        .collect())
}

/// Checks and stores a new external console; the password is sealed to its row (admins).
pub async fn create(
    app: &App,
    caller: &Caller,
    request: CreateExternalConsoleRequest,
) -> Result<ExternalConsole, ApiError> {
    caller.require_admin()?;
    let name = request.name.clone();
    let result = create_checked(app, request).await;
    let target = result
        .as_ref()
        .map_or(Target::named("external_console", name), |c| {
            Target::new("external_console", c.id, &c.name)
        });
    let console = audit::recorded(
        app,
        caller.into(),
        "external_console.create",
        Some(target),
        None,
        result,
    )
    .await?;
    tracing::info!(console = %console.name, by = %caller.user.username, "external console registered");
    Ok(console)
}

async fn create_checked(
    app: &App,
    request: CreateExternalConsoleRequest,
) -> Result<ExternalConsole, ApiError> {
    validate_image_name(&request.name)?;
    validate_address(&request.address)?;
    if let Some(password) = &request.password
        && (password.is_empty() || password.len() > 256 || password.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(
            "password",
            "must be 1 to 256 printable characters",
        ));
    }
    if request.protocol == WireProtocol::Tcp && request.password.is_some() {
        return Err(ApiError::invalid(
            "password",
            "only vnc consoles take a password",
        ));
    }
    let id = ExternalConsoleId::random();
    let record = ExternalConsoleRecord {
        id,
        name: request.name,
        protocol: match request.protocol {
            WireProtocol::Vnc => ExternalProtocol::Vnc,
            WireProtocol::Tcp => ExternalProtocol::Tcp,
        },
        address: request.address,
        password_sealed: request
            .password
            .map(|p| app.secrets.seal(&p, &id.to_string())),
        created_at: app.clock.now_millis(),
    };
    app.store.insert_external_console(&record).await?;
    Ok(external_to_wire(&record))
}

/// Removes an external console and its grants (admins).
pub async fn delete(app: &App, caller: &Caller, id: &str) -> Result<(), ApiError> {
    caller.require_admin()?;
    let id = parse_id(id)?;
    let result = app.store.delete_external_console(id).await;
    let target = Target::new("external_console", id, "");
    audit::recorded(
        app,
        caller.into(),
        "external_console.delete",
        Some(target),
        None,
        result,
    )
    .await
}

/// Lets `username` open external console `id` (`allow`), or takes that away (admins).
pub async fn set_grant(
    app: &App,
    caller: &Caller,
    id: &str,
    username: &str,
    allow: bool,
) -> Result<(), ApiError> {
    let (id, user) = grant_parts(app, caller, id, username).await?;
    let result = if allow {
        app.store
            .grant_external_console(id, user, app.clock.now_millis())
            .await
    } else {
        app.store.revoke_external_console(id, user).await
    };
    let action = if allow {
        "external_console.grant"
    } else {
        "external_console.revoke"
    };
    let target = Target::new("external_console", id, "");
    audit::recorded(
        app,
        caller.into(),
        action,
        Some(target),
        Some(username.to_owned()),
        result,
    )
    .await
}

/// The console and user of a grant, once the caller is an admin and both exist.
async fn grant_parts(
    app: &App,
    caller: &Caller,
    id: &str,
    username: &str,
) -> Result<(ExternalConsoleId, UserId), ApiError> {
    caller.require_admin()?;
    let id = parse_id(id)?;
    app.store
        .external_console(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no external console {id}")))?;
    let user = app
        .store
        .user_by_name(username)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no user {username:?}")))?;
    Ok((id, user.id))
}

/// Parses an external console's id from a URL path.
pub fn parse_id(text: &str) -> Result<ExternalConsoleId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::NotFound(format!("no external console has the id {text:?}")))
}

/// `host:port`, with a port.
fn validate_address(address: &str) -> Result<(), ApiError> {
    let invalid = || {
        ApiError::invalid(
            "address",
            "must be HOST:PORT, e.g. 10.0.0.5:5900 or bmc.lab:2001",
        )
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(invalid)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| invalid())?;
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:_".contains(c));
    if port == 0 || !host_ok {
        return Err(invalid());
    }
    Ok(())
}

/// An external console as the API shows it.
pub fn external_to_wire(record: &ExternalConsoleRecord) -> ExternalConsole {
    ExternalConsole {
        id: record.id,
        name: record.name.clone(),
        protocol: match record.protocol {
            ExternalProtocol::Vnc => WireProtocol::Vnc,
            ExternalProtocol::Tcp => WireProtocol::Tcp,
        },
        address: record.address.clone(),
        has_password: record.password_sealed.is_some(),
        created_at: from_millis(record.created_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_need_a_host_and_a_port() {
        for good in [
            "10.0.0.5:5900",
            "bmc.lab:2001",
            "[fe80::1]:23",
            "localhost:1",
        ] {
            assert!(validate_address(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "host",
            "host:",
            ":22",
            "host:0",
            "host:70000",
            "a b:22",
            "host:22/x",
        ] {
            assert!(validate_address(bad).is_err(), "{bad}");
        }
    }
}
