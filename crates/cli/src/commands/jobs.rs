//! `porthole job ...`.

use anyhow::Context;
use porthole_core::JobId;

use super::Session;
use crate::cli::JobCommand;
use crate::progress::wait_for_job;

pub async fn run(session: &Session, command: &JobCommand) -> anyhow::Result<()> {
    match command {
        JobCommand::List => session.print.list(&session.client.jobs().await?),
        JobCommand::Show { id, wait } => {
            let id: JobId = id
                .parse()
                .with_context(|| format!("{id:?} is not a job id"))?;
            let mut job = session.client.job(id).await?;
            if wait.wait {
                job = wait_for_job(&session.client, &job).await?;
            }
            session.print.one(&job)
        }
    }
}
