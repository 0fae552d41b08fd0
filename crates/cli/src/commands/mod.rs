//! One module per command group. Each turns parsed arguments into API calls and prints the
//! results.

mod console;
mod external;
mod images;
mod jobs;
mod nodes;
mod serve;
mod session;
mod users;
mod vms;

use anyhow::Context;
use porthole_api::client::Client;

use crate::cli::{Cli, Command};
use crate::credentials::{Credentials, DEFAULT_URL};
use crate::output::Printer;

/// What every client command needs: a logged-in client and a printer.
pub struct Session {
    pub client: Client,
    pub print: Printer,
}

/// The plane's URL: `--url`/`PORTHOLE_URL`, else the saved one, else the default.
fn plane_url(cli_url: Option<&str>, saved: &Credentials) -> String {
    cli_url
        .map(str::to_owned)
        .or_else(|| saved.url.clone())
        .unwrap_or_else(|| DEFAULT_URL.into())
}

fn session(cli: &Cli) -> anyhow::Result<Session> {
    let saved = Credentials::load()?;
    let url = plane_url(cli.url.as_deref(), &saved);
    let client = Client::new(&url)?.with_token(saved.token()?);
    Ok(Session {
        client,
        print: Printer::new(cli.output),
    })
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Agent(args) => serve::agent(args).await,
        Command::Login(args) => {
            let saved = Credentials::load()?;
            let url = plane_url(cli.url.as_deref(), &saved);
            session::login(&url, args, Printer::new(cli.output)).await
        }
        Command::Logout => session::logout(&session(&cli)?).await,
        Command::Vm(command) => vms::run(&session(&cli)?, command).await,
        Command::Template(command) => images::run_template(&session(&cli)?, command).await,
        Command::Node(command) => nodes::run(&session(&cli)?, command).await,
        Command::Iso(command) => images::run_iso(&session(&cli)?, command).await,
        Command::Job(command) => jobs::run(&session(&cli)?, command).await,
        Command::User(command) => users::run(&session(&cli)?, command).await,
        Command::Group(command) => users::run_group(&session(&cli)?, command).await,
        Command::SshKey(command) => users::run_ssh_key(&session(&cli)?, command).await,
        Command::Audit(args) => users::run_audit(&session(&cli)?, args).await,
        Command::Console(args) => console::serial(&session(&cli)?, args).await,
        Command::Vnc(args) => console::vnc(&session(&cli)?, args).await,
        Command::External(command) => external::run(&session(&cli)?, command).await,
        Command::Sessions => {
            let session = session(&cli)?;
            session
                .print
                .list(&session.client.console_sessions().await?)
        }
    }
}

/// Reads a password: from the first line of stdin, or by prompting on the terminal.
pub fn read_password(prompt: &str, from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        rpassword::prompt_password(prompt)
            .context("cannot prompt for a password (no terminal?); use --password-stdin")?
    };
    anyhow::ensure!(!password.is_empty(), "the password is empty");
    Ok(password)
}
