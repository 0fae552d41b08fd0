//! VM expiry: reminders by mail, a stop at expiry, deletion after a grace period, and a
//! daily summary for admins.
//!
//! A sweep runs every `--expiry-interval` and looks at the clock, never at how long it slept,
//! so after downtime the next sweep does whatever fell due meanwhile. Each step is recorded
//! ([`porthole_store::expiry`]) before its mail goes out, which makes every notice
//! at-most-once across sweeps and restarts. When several reminders of one series fell due
//! together (the plane was down), only the latest is sent and the others are recorded as
//! skipped. Renewing moves the expiry date, which starts a fresh series.
//!
//! Reminder day `d` is due once fewer than `d + 1` whole days are left (`0`: on the last
//! day), as Proxstar counts them.

use chrono::{DateTime, Timelike, Utc};
use porthole_core::{Action, VmState};
use porthole_store::expiry::NoticeState;
use porthole_store::vms::VmRecord;
use tokio_util::sync::CancellationToken;

use crate::app::{App, AppState};
use crate::clock::from_millis;
use crate::error::{ApiError, chain};
use crate::services::audit::{self, Actor, Target};
use crate::services::vms::queue_job;

const DAY_MS: i64 = 86_400_000;

/// Sweeps until `stop`.
pub async fn run(app: AppState, stop: CancellationToken) {
    loop {
        if let Err(e) = sweep(&app).await {
            tracing::warn!(error = %chain(&e), "expiry sweep failed; retrying at the next one");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(app.config.portal.expiry.interval) => {}
        }
    }
}

/// One sweep: whatever is due now.
pub async fn sweep(app: &App) -> Result<(), ApiError> {
    let now = app.clock.now_millis();
    for vm in app.store.vms(None).await? {
        let Some(expires_at) = vm.expires_at else {
            continue;
        };
        if vm.expiry_exempt || matches!(vm.state, VmState::Creating | VmState::Deleting) {
            continue;
        }
        if let Err(e) = step(app, &vm, expires_at, now).await {
            tracing::warn!(vm = %vm.name, error = %chain(&e), "expiry step failed; retrying at the next sweep");
        }
    }
    daily_summary(app, now).await
}

/// What is due for one VM.
async fn step(app: &App, vm: &VmRecord, expires_at: i64, now: i64) -> Result<(), ApiError> {
    let settings = &app.config.portal.expiry;
    let grace = i64::try_from(settings.grace.as_millis()).unwrap_or(i64::MAX);
    let date = from_millis(expires_at).format("%Y-%m-%d %H:%M UTC");
    let deletion = from_millis(expires_at.saturating_add(grace)).format("%Y-%m-%d %H:%M UTC");
    if now < expires_at {
        let days_left = (expires_at - now) / DAY_MS;
        let mut due: Vec<u32> = settings
            .reminder_days
            .iter()
            .copied()
            .filter(|d| days_left <= i64::from(*d))
            .collect();
        due.sort_unstable();
        let Some((&latest, earlier)) = due.split_first() else {
            return Ok(());
        };
        for day in earlier {
            let kind = format!("reminder-{day}");
            app.store
                .claim_notice(vm.id, expires_at, &kind, NoticeState::Skipped, now)
                .await?;
        }
        let when = match days_left {
            0 => "today".to_owned(),
            1 => "in 1 day".to_owned(),
            n => format!("in {n} days"),
        };
        let subject = format!("porthole: your VM {} expires {when}", vm.name);
        let body = format!(
            "Your VM {name} expires {when}, on {date}.\n\n\
             Renew it to keep it for another {lifetime} days: {link}, or run\n\n    \
             porthole vm renew {name}\n\n\
             If it is not renewed, it is stopped when it expires and deleted on {deletion}.\n",
            name = vm.name,
            lifetime = app.config.portal.vm_lifetime.as_secs() / 86_400,
            link = vm_link(app, vm),
        );
        return notify(
            app,
            vm,
            expires_at,
            &format!("reminder-{latest}"),
            &subject,
            body,
        )
        .await;
    }
    if now < expires_at.saturating_add(grace) {
        if matches!(vm.state, VmState::Running | VmState::Paused) {
            act(app, vm, Action::Stop, "vm.expire.stop").await?;
        }
        let subject = format!("porthole: your VM {} expired and was stopped", vm.name);
        let body = format!(
            "Your VM {name} expired on {date} and was stopped.\n\n\
             It will be deleted on {deletion}. Renew it before then to keep it: {link}, or run\n\n    \
             porthole vm renew {name}\n",
            name = vm.name,
            link = vm_link(app, vm),
        );
        return notify(app, vm, expires_at, "expired", &subject, body).await;
    }
    act(app, vm, Action::Delete, "vm.expire.delete").await?;
    let subject = format!("porthole: your VM {} was deleted", vm.name);
    let body = format!(
        "Your VM {name} expired on {date} and was not renewed, so it was deleted.\n",
        name = vm.name
    );
    notify(app, vm, expires_at, "deleted", &subject, body).await
}

/// Queues `action` on an expired VM, as the plane, and audits it.
async fn act(app: &App, vm: &VmRecord, action: Action, audit_action: &str) -> Result<(), ApiError> {
    if vm.job_id.is_some() {
        return Err(ApiError::conflict(
            None,
            format!("VM {} is busy with a job", vm.name),
        ));
    }
    let result = queue_job(app, vm, action, vm.owner_id).await;
    let target = Target::new("vm", vm.id, vm.name.as_str());
    audit::record(app, Actor::PLANE, audit_action, Some(target), &result, None).await;
    result.map(|_| tracing::info!(vm = %vm.name, %action, "VM expired"))
}

/// Sends notice `kind` of this expiry date to the VM's owner, unless it was sent before.
async fn notify(
    app: &App,
    vm: &VmRecord,
    expires_at: i64,
    kind: &str,
    subject: &str,
    body: String,
) -> Result<(), ApiError> {
    let now = app.clock.now_millis();
    if !app
        .store
        .claim_notice(vm.id, expires_at, kind, NoticeState::Claimed, now)
        .await?
    {
        return Ok(());
    }
    let owner = app.store.user_by_name(&vm.owner).await?;
    let address = owner.and_then(|o| o.email);
    let (Some(mailer), Some(address)) = (&app.mailer, address) else {
        tracing::info!(vm = %vm.name, kind, "expiry notice not mailed: no mail server or no address");
        app.store
            .settle_notice(vm.id, expires_at, kind, NoticeState::NoAddress)
            .await?;
        return Ok(());
    };
    match mailer.send(&address, subject, body).await {
        Ok(()) => {
            tracing::info!(vm = %vm.name, kind, "expiry notice sent");
            app.store
                .settle_notice(vm.id, expires_at, kind, NoticeState::Sent)
                .await?;
            Ok(())
        }
        Err(e) => {
            app.store.release_notice(vm.id, expires_at, kind).await?;
            Err(ApiError::Unavailable(chain(&e)))
        }
    }
}

/// Once a day, from `--expiry-summary-hour`, tells admins what expires soon and what awaits
/// deletion.
async fn daily_summary(app: &App, now: i64) -> Result<(), ApiError> {
    let today: DateTime<Utc> = from_millis(now);
    if today.hour() < app.config.portal.expiry.summary_hour {
        return Ok(());
    }
    let Some(mailer) = &app.mailer else {
        return Ok(());
    };
    let period = today.format("%Y-%m-%d").to_string();
    let admins: Vec<String> = app
        .store
        .users()
        .await?
        .into_iter()
        .filter(|u| u.role == porthole_core::Role::Admin)
        .filter_map(|u| u.email)
        .collect();
    let mut due = Vec::new();
    for admin in admins {
        // One claim per admin and day, so a failed delivery is retried for that admin only.
        let run = format!("daily-summary:{admin}");
        if app.store.claim_run(&run, &period, now).await? {
            due.push((admin, run));
        }
    }
    if due.is_empty() {
        return Ok(());
    }
    let grace = i64::try_from(app.config.portal.expiry.grace.as_millis()).unwrap_or(i64::MAX);
    let mut soon = Vec::new();
    let mut expired = Vec::new();
    for vm in app.store.vms(None).await? {
        let Some(at) = vm.expires_at.filter(|_| !vm.expiry_exempt) else {
            continue;
        };
        let line = |what: &str, when: i64| {
            format!(
                "  {} ({}): {what} {}\n",
                vm.name,
                vm.owner,
                from_millis(when).format("%Y-%m-%d %H:%M UTC")
            )
        };
        if at <= now {
            expired.push(line("deleted on", at.saturating_add(grace)));
        } else if at - now <= 7 * DAY_MS {
            soon.push(line("expires on", at));
        }
    }
    let mut body = format!("porthole's expiry summary for {period}.\n\n");
    body.push_str(&format!("Expiring within 7 days: {}\n", soon.len()));
    body.extend(soon);
    body.push_str(&format!(
        "\nExpired, awaiting deletion: {}\n",
        expired.len()
    ));
    body.extend(expired);
    let subject = format!("porthole: expiry summary for {period}");
    for (admin, run) in due {
        let sent = mailer.send(&admin, &subject, body.clone()).await;
        if let Err(e) = &sent {
            tracing::warn!(to = %admin, error = %chain(e), "cannot send the daily summary; retrying at the next sweep");
        }
        app.store.settle_run(&run, &period, sent.is_ok()).await?;
    }
    Ok(())
}

/// Where the VM's page is, for mails.
fn vm_link(app: &App, vm: &VmRecord) -> String {
    let base = app
        .config
        .public_url
        .as_deref()
        .unwrap_or("http://127.0.0.1:8080")
        .trim_end_matches('/');
    format!("{base}/vms/{}", vm.id)
}
