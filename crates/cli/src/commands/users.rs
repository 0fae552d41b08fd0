//! `porthole user ...`.

use anyhow::bail;
use porthole_api::CreateUserRequest;
use porthole_core::Role;

use super::{Session, read_password};
use crate::cli::UserCommand;

pub async fn run(session: &Session, command: &UserCommand) -> anyhow::Result<()> {
    let print = &session.print;
    match command {
        UserCommand::Me => {
            let me = session.client.me().await?;
            print.done(&format!("{} ({})", me.username, me.role), &me)
        }
        UserCommand::Create {
            username,
            role,
            email,
            password_stdin,
        } => {
            let Some(role) = Role::parse(role) else {
                bail!("--role must be member or admin, not {role:?}");
            };
            let password = read_password(&format!("password for {username}: "), *password_stdin)?;
            let request = CreateUserRequest {
                username: username.clone(),
                password,
                role,
                email: email.clone(),
            };
            let user = session.client.create_user(&request).await?;
            print.done(&format!("created {} ({})", user.username, user.role), &user)
        }
    }
}
