//! Expiry against a real SMTP server (aiosmtpd) with a clock the test moves: reminders on
//! the right days, a stop at expiry, deletion after the grace period, and nothing missed or
//! sent twice across a plane restart between sweeps.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use porthole_api::UpdateUserRequest;
use porthole_core::VmState;
use porthole_testing::server::*;

/// aiosmtpd delivering into a maildir.
struct MailServer {
    child: Child,
    port: u16,
    maildir: PathBuf,
    _dir: tempfile::TempDir,
}

impl MailServer {
    fn start() -> MailServer {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("mail");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Debian's python3 has python3-aiosmtpd; another python3 earlier in PATH may not.
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd runs (scripts/setup installs python3-aiosmtpd)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        MailServer {
            child,
            port,
            maildir,
            _dir: dir,
        }
    }

    /// Every delivered mail as (to, subject), in no particular order.
    fn mails(&self) -> Vec<(String, String)> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        entries
            .map(|e| {
                let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
                let header = |name: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(name))
                        .unwrap_or_default()
                        .trim()
                        .to_owned()
                };
                (header("To:"), header("Subject:"))
            })
            .collect()
    }

    /// The subjects of mails to `to`, sorted.
    fn subjects_to(&self, to: &str) -> Vec<String> {
        let mut subjects: Vec<String> = self
            .mails()
            .into_iter()
            .filter(|(address, _)| address.contains(to))
            .map(|(_, subject)| subject)
            .collect();
        subjects.sort();
        subjects
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn set_clock(file: &Path, at: DateTime<Utc>) {
    std::fs::write(file, at.to_rfc3339()).unwrap();
}

/// Waits until `to` has `count` mails, then a few sweeps more to see that no more come.
async fn mails_settle(mail: &MailServer, to: &str, count: usize) -> Vec<String> {
    eventually(
        Duration::from_secs(30),
        &format!("{count} mails to {to}"),
        || async { (mail.subjects_to(to).len() >= count).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let subjects = mail.subjects_to(to);
    assert_eq!(subjects.len(), count, "{subjects:#?}");
    subjects
}

#[tokio::test]
async fn reminders_stop_and_delete_arrive_once_each_across_a_restart() {
    let mail = MailServer::start();
    let clock_dir = tempfile::tempdir().unwrap();
    let clock = clock_dir.path().join("now");
    let start: DateTime<Utc> = "2030-01-01T12:00:00Z".parse().unwrap();
    set_clock(&clock, start);
    let smtp = format!("smtp://127.0.0.1:{}", mail.port);
    let clock_arg = clock.to_str().unwrap().to_owned();
    let mut server = Server::start_with(&[
        "--clock-file",
        &clock_arg,
        "--expiry-interval",
        "1",
        "--vm-lifetime-days",
        "30",
        "--expiry-grace-days",
        "7",
        "--smtp-url",
        &smtp,
        "--smtp-from",
        "porthole <porthole@test.example>",
    ])
    .await;
    let admin = server.admin().await;
    admin
        .update_user(
            "admin",
            &UpdateUserRequest {
                email: Some("admin@test.example".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let dave = member(&server, &admin, "dave").await;
    let created = dave.create_vm(&demo_vm("expiring")).await.unwrap();
    succeed(&dave, &created.job).await;
    let expires = created.vm.expires_at.unwrap();
    assert_eq!(expires, start + TimeDelta::days(30));
    let vm = created.vm.id;

    // Ten and a half days left: the 10-day reminder, nothing else.
    set_clock(&clock, expires - TimeDelta::hours(10 * 24 + 12));
    let subjects = mails_settle(&mail, "dave@", 1).await;
    assert_eq!(subjects, ["porthole: your VM expiring expires in 10 days"]);

    set_clock(&clock, expires - TimeDelta::hours(7 * 24 + 12));
    mails_settle(&mail, "dave@", 2).await;

    // The plane is down while the 3- and 1-day reminders fall due; when it is back, only
    // the one due now goes out, and nothing earlier is sent again.
    server.kill9();
    set_clock(&clock, expires - TimeDelta::hours(12));
    server.restart().await;
    let subjects = mails_settle(&mail, "dave@", 3).await;
    assert_eq!(
        subjects,
        [
            "porthole: your VM expiring expires in 10 days",
            "porthole: your VM expiring expires in 7 days",
            "porthole: your VM expiring expires today",
        ]
    );

    // At expiry the VM is stopped, and kept through the grace period.
    set_clock(&clock, expires + TimeDelta::hours(1));
    let dave = server.login("dave", "dave-password").await;
    eventually(
        Duration::from_secs(60),
        "the expired VM stopped",
        || async { (dave.vm(vm).await.unwrap().state == VmState::Stopped).then_some(()) },
    )
    .await;
    mails_settle(&mail, "dave@", 4).await;
    assert!(
        mail.subjects_to("dave@")
            .contains(&"porthole: your VM expiring expired and was stopped".to_owned())
    );

    // Restarted again between sweeps: nothing new is due, so nothing new is sent.
    server.kill9();
    server.restart().await;
    mails_settle(&mail, "dave@", 4).await;

    // After the grace period it is deleted, files and all.
    set_clock(&clock, expires + TimeDelta::days(7) + TimeDelta::hours(1));
    let dave = server.login("dave", "dave-password").await;
    eventually(
        Duration::from_secs(60),
        "the expired VM deleted",
        || async { dave.vms().await.unwrap().is_empty().then_some(()) },
    )
    .await;
    assert!(server.qemu_pids_of(vm).is_empty());
    let subjects = mails_settle(&mail, "dave@", 5).await;
    assert!(subjects.contains(&"porthole: your VM expiring was deleted".to_owned()));

    // The plane's steps are in the audit log, and admins got one summary per day.
    let admin = server.admin().await;
    let audit = admin.audit_log(200).await.unwrap();
    for action in ["vm.expire.stop", "vm.expire.delete"] {
        assert_eq!(
            audit
                .iter()
                .filter(|e| e.action == action && e.actor == "porthole")
                .count(),
            1,
            "{action}"
        );
    }
    let summaries = mail.subjects_to("admin@");
    let mut days = summaries.clone();
    days.dedup();
    assert!(!summaries.is_empty() && days == summaries, "{summaries:#?}");
}

#[tokio::test]
async fn renewing_starts_a_fresh_series_and_exempt_vms_never_expire() {
    let mail = MailServer::start();
    let clock_dir = tempfile::tempdir().unwrap();
    let clock = clock_dir.path().join("now");
    let start: DateTime<Utc> = "2030-06-01T12:00:00Z".parse().unwrap();
    set_clock(&clock, start);
    let smtp = format!("smtp://127.0.0.1:{}", mail.port);
    let clock_arg = clock.to_str().unwrap().to_owned();
    let server = Server::start_with(&[
        "--clock-file",
        &clock_arg,
        "--expiry-interval",
        "1",
        "--vm-lifetime-days",
        "30",
        "--expiry-reminder-days",
        "7",
        "--smtp-url",
        &smtp,
    ])
    .await;
    let admin = server.admin().await;
    let erin = member(&server, &admin, "erin").await;
    let kept = erin.create_vm(&demo_vm("kept")).await.unwrap();
    let exempt = erin.create_vm(&demo_vm("exempt")).await.unwrap();
    succeed(&erin, &kept.job).await;
    succeed(&erin, &exempt.job).await;
    admin
        .update_vm(
            exempt.vm.id,
            &porthole_api::UpdateVmRequest {
                expiry_exempt: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    let first_expiry = kept.vm.expires_at.unwrap();
    set_clock(&clock, first_expiry - TimeDelta::days(5));
    mails_settle(&mail, "erin@", 1).await;
    let erin = server.login("erin", "erin-password").await;
    let renewed = erin.renew_vm(kept.vm.id).await.unwrap();
    let second_expiry = renewed.expires_at.unwrap();
    assert_eq!(
        second_expiry,
        first_expiry - TimeDelta::days(5) + TimeDelta::days(30)
    );

    // Past the first expiry date: nothing happens to the renewed VM or the exempt one.
    set_clock(&clock, first_expiry + TimeDelta::days(1));
    let erin = server.login("erin", "erin-password").await;
    mails_settle(&mail, "erin@", 1).await;
    for vm in [kept.vm.id, exempt.vm.id] {
        assert_eq!(erin.vm(vm).await.unwrap().state, VmState::Running);
    }
    // The renewed series reminds again, once.
    set_clock(&clock, second_expiry - TimeDelta::days(3));
    let subjects = mails_settle(&mail, "erin@", 2).await;
    assert_eq!(
        subjects
            .iter()
            .filter(|s| s.contains("kept expires in 3 days"))
            .count(),
        1
    );
    assert!(!subjects.iter().any(|s| s.contains("exempt")));
}
