//! `porthole user ...`, `porthole group ...`, `porthole ssh-key ...` and `porthole audit`.

use std::path::Path;

use anyhow::{Context, bail};
use porthole_api::{AddSshKeyRequest, CreateUserRequest, SetLimitsRequest, UpdateUserRequest};
use porthole_core::{LimitOverrides, Role};

use super::{Session, read_password};
use crate::cli::{AuditArgs, GroupCommand, LimitArgs, LimitValue, SshKeyCommand, UserCommand};
use crate::output::{overrides, user_details};

pub async fn run(session: &Session, command: &UserCommand) -> anyhow::Result<()> {
    let (client, print) = (&session.client, &session.print);
    match command {
        UserCommand::Me => {
            let me = client.me().await?;
            print.done(&user_details(&me), &me)
        }
        UserCommand::List => print.list(&client.users().await?),
        UserCommand::Show { username } => {
            let user = client.user(username).await?;
            print.done(&user_details(&user), &user)
        }
        UserCommand::Create {
            username,
            role,
            email,
            password_stdin,
        } => {
            let role = parse_role(role)?;
            let password = read_password(&format!("password for {username}: "), *password_stdin)?;
            let request = CreateUserRequest {
                username: username.clone(),
                password,
                role,
                email: email.clone(),
            };
            let user = client.create_user(&request).await?;
            print.done(&format!("created {} ({})", user.username, user.role), &user)
        }
        UserCommand::Limits { username, limits } => {
            require_some(limits)?;
            let current = client.user(username).await?.limit_overrides;
            let user = client
                .set_user_limits(username, &merge(limits, current))
                .await?;
            print.done(
                &format!(
                    "{}: own limits {}; in effect {} cores, {} MiB memory, {} GiB disk",
                    user.username,
                    overrides(&user.limit_overrides),
                    user.limits.cores,
                    user.limits.memory_mib,
                    user.limits.disk_gib
                ),
                &user,
            )
        }
        UserCommand::Set {
            username,
            role,
            email,
            password_stdin,
            unlock,
        } => {
            if role.is_none() && email.is_none() && !password_stdin && !unlock {
                bail!(
                    "nothing to change: give --role, --email, --password-stdin or --unlock \
                     (see `porthole user set --help`)"
                );
            }
            let role = role.as_deref().map(parse_role).transpose()?;
            let password = if *password_stdin {
                Some(read_password("", true)?)
            } else {
                None
            };
            let mut changed = Vec::new();
            if let Some(role) = role {
                changed.push(format!("role {role}"));
            }
            match email.as_deref() {
                Some("") => changed.push("email removed".into()),
                Some(email) => changed.push(format!("email {email}")),
                None => {}
            }
            if password.is_some() {
                changed.push("password changed".into());
            }
            if *unlock {
                changed.push("unlocked".into());
            }
            let request = UpdateUserRequest {
                role,
                email: email.clone(),
                password,
                unlock: *unlock,
            };
            let user = client.update_user(username, &request).await?;
            print.done(&format!("{}: {}", user.username, changed.join(", ")), &user)
        }
    }
}

pub async fn run_group(session: &Session, command: &GroupCommand) -> anyhow::Result<()> {
    let (client, print) = (&session.client, &session.print);
    match command {
        GroupCommand::List => print.list(&client.groups().await?),
        GroupCommand::Create { name } => {
            let group = client.create_group(name).await?;
            print.done(&format!("created group {}", group.name), &group)
        }
        GroupCommand::Delete { name } => {
            client.delete_group(name).await?;
            print.done(
                &format!("deleted group {name}; its members keep their accounts"),
                &serde_json::json!({ "deleted": name }),
            )
        }
        GroupCommand::Limits { name, limits } => {
            require_some(limits)?;
            let current = client
                .groups()
                .await?
                .into_iter()
                .find(|g| &g.name == name)
                .with_context(|| format!("no group is named {name:?}; see `porthole group list`"))?
                .limits;
            let group = client
                .set_group_limits(name, &merge(limits, current))
                .await?;
            let limit = |value: Option<u64>, unit: &str, what: &str| {
                value.map_or_else(|| format!("{what} site default"), |n| format!("{n}{unit}"))
            };
            print.done(
                &format!(
                    "group {}: {}, {}, {}",
                    group.name,
                    limit(group.limits.cores, " cores", "cores"),
                    limit(group.limits.memory_mib, " MiB memory", "memory"),
                    limit(group.limits.disk_gib, " GiB disk", "disk"),
                ),
                &group,
            )
        }
        GroupCommand::Add { name, username } => {
            let group = client.add_group_member(name, username).await?;
            print.done(&format!("{username} is in group {}", group.name), &group)
        }
        GroupCommand::Remove { name, username } => {
            let group = client.remove_group_member(name, username).await?;
            print.done(
                &format!("{username} is no longer in group {}", group.name),
                &group,
            )
        }
    }
}

pub async fn run_ssh_key(session: &Session, command: &SshKeyCommand) -> anyhow::Result<()> {
    let (client, print) = (&session.client, &session.print);
    match command {
        SshKeyCommand::List => print.list(&client.ssh_keys().await?),
        SshKeyCommand::Add { file, name } => {
            let request = AddSshKeyRequest {
                name: name.clone(),
                public_key: read_public_key(file)?,
            };
            let key = client
                .add_ssh_key(&request)
                .await
                .with_context(|| format!("cannot add the key in {}", file.display()))?;
            print.done(
                &format!("added SSH key {} ({})", key.name, key.fingerprint),
                &key,
            )
        }
        SshKeyCommand::Delete { key } => {
            let keys = client.ssh_keys().await?;
            let wanted = key.strip_prefix("SHA256:").unwrap_or(key);
            let matches: Vec<_> = keys
                .iter()
                .filter(|k| {
                    k.id.to_string() == *key
                        || k.fingerprint
                            .strip_prefix("SHA256:")
                            .unwrap_or(&k.fingerprint)
                            == wanted
                })
                .collect();
            let matches = if matches.is_empty() {
                keys.iter().filter(|k| k.name == *key).collect()
            } else {
                matches
            };
            let found = match matches.as_slice() {
                [one] => *one,
                [] => bail!(
                    "no SSH key on your profile has the id, fingerprint or name {key:?}; \
                     see `porthole ssh-key list`"
                ),
                many => bail!(
                    "{} keys are named {key:?}; delete one by its fingerprint or id \
                     (see `porthole ssh-key list`)",
                    many.len()
                ),
            };
            client.delete_ssh_key(found.id).await?;
            print.done(
                &format!("deleted SSH key {} ({})", found.name, found.fingerprint),
                &serde_json::json!({ "deleted": found.id, "fingerprint": found.fingerprint }),
            )
        }
    }
}

pub async fn run_audit(session: &Session, args: &AuditArgs) -> anyhow::Result<()> {
    let entries = session
        .client
        .audit(args.limit, args.actor.as_deref(), None)
        .await?;
    session.print.list(&entries)
}

/// Reads an OpenSSH public key file, refusing private keys so they never leave this machine.
pub fn read_public_key(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the SSH public key file {}; give a .pub file such as \
             ~/.ssh/id_ed25519.pub",
            path.display()
        )
    })?;
    if text.contains("PRIVATE KEY") {
        bail!(
            "{} is a private key, which must not leave this machine; give its public half, \
             {}.pub",
            path.display(),
            path.display()
        );
    }
    let key = text.trim();
    if key.is_empty() {
        bail!(
            "{} is empty; give an OpenSSH public key file such as ~/.ssh/id_ed25519.pub",
            path.display()
        );
    }
    Ok(key.to_owned())
}

fn parse_role(role: &str) -> anyhow::Result<Role> {
    Role::parse(role).with_context(|| format!("--role must be member or admin, not {role:?}"))
}

fn require_some(limits: &LimitArgs) -> anyhow::Result<()> {
    if limits.cores.is_none() && limits.memory.is_none() && limits.disk.is_none() {
        bail!("nothing to change: give --cores, --memory or --disk, each a number or `inherit`");
    }
    Ok(())
}

/// The full limits to PUT: the parts given on the command line, and the current overrides
/// for the rest (PUT replaces all three).
fn merge(limits: &LimitArgs, current: LimitOverrides) -> SetLimitsRequest {
    let pick = |given: Option<LimitValue>, current: Option<u64>| match given {
        None => current,
        Some(LimitValue::Inherit) => None,
        Some(LimitValue::Set(n)) => Some(n),
    };
    SetLimitsRequest {
        cores: pick(limits.cores, current.cores),
        memory_mib: pick(limits.memory, current.memory_mib),
        disk_gib: pick(limits.disk, current.disk_gib),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_not_given_keep_their_current_override() {
        let current = LimitOverrides {
            cores: Some(2),
            memory_mib: Some(1024),
            disk_gib: None,
        };
        let given = LimitArgs {
            cores: None,
            memory: Some(LimitValue::Inherit),
            disk: Some(LimitValue::Set(20)),
        };
        let request = merge(&given, current);
        assert_eq!(
            (request.cores, request.memory_mib, request.disk_gib),
            (Some(2), None, Some(20))
        );
    }

    #[test]
    fn private_keys_are_refused_locally() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("id_ed25519");
        std::fs::write(
            &private,
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n",
        )
        .unwrap();
        let error = read_public_key(&private).unwrap_err().to_string();
        assert!(error.contains("is a private key"), "{error}");
        let empty = dir.path().join("empty.pub");
        std::fs::write(&empty, "\n").unwrap();
        assert!(
            read_public_key(&empty)
                .unwrap_err()
                .to_string()
                .contains("is empty")
        );
    }
}
