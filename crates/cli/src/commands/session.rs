//! `porthole login` and `porthole logout`.

use porthole_api::client::Client;

use super::{Session, read_password};
use crate::cli::LoginArgs;
use crate::credentials::Credentials;
use crate::output::Printer;

pub async fn login(url: &str, args: &LoginArgs, print: Printer) -> anyhow::Result<()> {
    let client = Client::new(url)?;
    let password = read_password(
        &format!("password for {} at {url}: ", args.username),
        args.password_stdin,
    )?;
    let login = client.login(&args.username, &password).await?;
    Credentials {
        url: Some(url.to_owned()),
        token: Some(login.token.clone()),
    }
    .save()?;
    let expires = login.expires_at.format("%Y-%m-%d");
    print.done(
        &format!("logged in to {url} as {} until {expires}", args.username),
        &serde_json::json!({
            "url": url,
            "username": args.username,
            "expires_at": login.expires_at,
        }),
    )
}

pub async fn logout(session: &Session) -> anyhow::Result<()> {
    session.client.logout().await?;
    Credentials::load()?.forget_token()?;
    session
        .print
        .done("logged out", &serde_json::json!({ "logged_out": true }))
}
