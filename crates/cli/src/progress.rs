//! Progress bars for jobs and uploads. They draw on stderr and only on a terminal, so
//! piped output stays clean.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use porthole_api::Job;
use porthole_api::client::{Client, ProgressFn};
use porthole_core::JobState;

/// How often a job is polled while waiting for it.
const POLL: Duration = Duration::from_millis(200);

/// Follows job `job` to its end with a progress bar. Fails if the job fails.
pub async fn wait_for_job(client: &Client, job: &Job) -> anyhow::Result<Job> {
    let bar = ProgressBar::new(100);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos:>3}% {wide_msg}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    bar.set_prefix(job.kind.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    let finished = client
        .wait_for_job(job.id, POLL, |job| {
            bar.set_position((job.progress * 100.0).round() as u64);
            bar.set_message(job.step.clone().unwrap_or_else(|| job.state.to_string()));
        })
        .await;
    bar.finish_and_clear();
    let finished = finished?;
    if finished.state == JobState::Failed {
        bail!(
            "{} failed: {}",
            finished.kind,
            finished.error.as_deref().unwrap_or("no reason recorded")
        );
    }
    Ok(finished)
}

/// A byte-counting bar for an upload of `total` bytes (unknown: a spinner), and the callback
/// that feeds it.
pub fn upload_bar(what: &str, total: Option<u64>) -> (ProgressBar, ProgressFn) {
    let bar = match total {
        Some(total) => {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            bar
        }
        None => {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {bytes} {bytes_per_sec}")
                    .expect("the template is valid"),
            );
            bar
        }
    };
    bar.set_prefix(format!("uploading {what}"));
    let feed = bar.clone();
    (bar, Arc::new(move |n| feed.inc(n)))
}
