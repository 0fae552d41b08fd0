//! Console sessions through the gateway, in process on a fake node whose serial console is
//! a shared line device: every rejection before a byte is relayed, the per-user cap, the
//! idle timeout and maximum duration, and sessions that end when the VM stops. The guest
//! tier runs the same gateway against real QEMU consoles.

use std::time::Duration;

use futures::SinkExt;
use porthole_api::CreateUserRequest;
use porthole_core::{ConsoleKind, Role};
use porthole_testing::console::*;
use porthole_testing::server::*;
use tokio_tungstenite::tungstenite::Message;

use crate::{demo_app, demo_app_with};

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn every_rejection_is_refused_before_a_byte_is_relayed() {
    let server = demo_app_with(|config| config.consoles.ticket_ttl = Duration::from_secs(1)).await;
    let admin = server.admin().await;
    let alice_request = CreateUserRequest {
        username: "alice".into(),
        password: "alice-password".into(),
        role: Role::Member,
        email: None,
    };
    admin.create_user(&alice_request).await.unwrap();
    let alice = server.login("alice", "alice-password").await;
    let one = running_vm(&admin, "one").await;
    let two = running_vm(&admin, "two").await;
    let bytes_before = server
        .metric("porthole_console_bytes_total{direction=\"to_client\"}")
        .await;

    // Another user's VM: no ticket at all.
    assert_eq!(
        alice
            .vm_console_ticket(one.id, ConsoleKind::Vnc)
            .await
            .unwrap_err()
            .status(),
        Some(404)
    );

    // A ticket for another VM, and for the other kind.
    let ticket = admin
        .vm_console_ticket(one.id, ConsoleKind::Serial)
        .await
        .unwrap();
    let other_vm = ticket
        .ws_path
        .replace(&one.id.to_string(), &two.id.to_string());
    let url =
        |path: &str, t: &str| format!("{}{path}?ticket={t}", server.url.replace("http", "ws"));
    assert_eq!(
        open_url(&url(&other_vm, &ticket.ticket), None).await.err(),
        Some(403)
    );
    let ticket = admin
        .vm_console_ticket(one.id, ConsoleKind::Serial)
        .await
        .unwrap();
    let other_kind = ticket.ws_path.replace("/serial/", "/vnc/");
    assert_eq!(
        open_url(&url(&other_kind, &ticket.ticket), None)
            .await
            .err(),
        Some(403)
    );

    // A reused ticket: the first use works, the second is refused.
    let ticket = admin
        .vm_console_ticket(one.id, ConsoleKind::Serial)
        .await
        .unwrap();
    let mut socket = open(&admin, &ticket, false, None).await.unwrap();
    socket.close(None).await.unwrap();
    assert_eq!(open(&admin, &ticket, false, None).await.err(), Some(401));

    // An expired ticket (this plane's tickets live 1 s).
    let ticket = admin
        .vm_console_ticket(one.id, ConsoleKind::Serial)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(open(&admin, &ticket, false, None).await.err(), Some(401));

    // A foreign Origin; porthole's own Origin is fine.
    let ticket = admin
        .vm_console_ticket(one.id, ConsoleKind::Serial)
        .await
        .unwrap();
    assert_eq!(
        open(&admin, &ticket, false, Some("https://evil.example"))
            .await
            .err(),
        Some(403)
    );
    let ticket = admin
        .vm_console_ticket(one.id, ConsoleKind::Serial)
        .await
        .unwrap();
    let own = server.url.trim_end_matches('/').to_owned();
    open(&admin, &ticket, false, Some(&own))
        .await
        .unwrap()
        .close(None)
        .await
        .unwrap();

    // No ticket at all, and a forged one.
    let path = ticket.ws_path.clone();
    assert_eq!(
        open_url(&format!("{}{path}", server.url.replace("http", "ws")), None)
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        open_url(&url(&path, "pct_forged"), None).await.err(),
        Some(401)
    );

    // termproxy with a bad login line: closed with 4001 and nothing else.
    let mut socket = open_url(
        &format!(
            "{}{path}?framing=termproxy",
            server.url.replace("http", "ws")
        ),
        None,
    )
    .await
    .unwrap();
    socket
        .send(Message::text("admin:pct_forged\n"))
        .await
        .unwrap();
    let refused = read_until(&mut socket, LONG, |_| false).await;
    assert!(refused.bytes.is_empty(), "relayed {:?}", refused.text());
    assert_eq!(refused.close.map(|c| c.0), Some(4001));

    // Only the two sessions that were allowed are on record, and the rejections are counted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(admin.console_sessions().await.unwrap().len(), 2);
    for (reason, count) in [
        ("wrong_target", 1.0),
        ("wrong_kind", 1.0),
        ("unknown", 3.0),
        ("expired", 1.0),
        ("foreign_origin", 1.0),
        ("missing", 1.0),
    ] {
        let sample = format!("porthole_console_ticket_rejections_total{{reason=\"{reason}\"}}");
        assert_eq!(server.metric(&sample).await, count, "{reason}");
    }
    // The allowed sessions were closed at once; whatever they relayed, rejections added nothing
    // beyond their scrollback.
    let bytes_after = server
        .metric("porthole_console_bytes_total{direction=\"to_client\"}")
        .await;
    let allowed: u64 = admin
        .console_sessions()
        .await
        .unwrap()
        .iter()
        .map(|s| s.bytes_to_client)
        .sum();
    assert_eq!(bytes_after - bytes_before, allowed as f64);
}

#[tokio::test]
async fn sessions_are_capped_per_user_and_closed_when_idle() {
    let server = demo_app_with(|config| {
        config.consoles.sessions_per_user = 1;
        config.consoles.policy.idle_timeout = Duration::from_secs(2);
    })
    .await;
    let admin = server.admin().await;
    let vm = running_vm(&admin, "capped").await;
    let mut first = open_vm_console(&admin, vm.id, ConsoleKind::Serial).await;
    let second = admin
        .vm_console_ticket(vm.id, ConsoleKind::Serial)
        .await
        .unwrap();
    assert_eq!(open(&admin, &second, false, None).await.err(), Some(429));
    let started = std::time::Instant::now();
    let ended = read_until(&mut first, LONG, |_| false).await;
    let (code, reason) = ended.close.expect("a close frame");
    assert_eq!(code, 4002, "{reason}");
    assert!(reason.contains("without input"), "{reason}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The slot is free again.
    let third = admin
        .vm_console_ticket(vm.id, ConsoleKind::Serial)
        .await
        .unwrap();
    open(&admin, &third, false, None).await.unwrap();
    let sessions = admin.console_sessions().await.unwrap();
    assert!(
        sessions
            .iter()
            .any(|s| s.end_reason.as_deref() == Some("idle_timeout"))
    );
}

#[tokio::test]
async fn sessions_end_at_their_maximum_duration_and_when_the_vm_stops() {
    let server =
        demo_app_with(|config| config.consoles.policy.max_duration = Duration::from_secs(2)).await;
    let admin = server.admin().await;
    let vm = running_vm(&admin, "limited").await;
    let mut socket = open_vm_console(&admin, vm.id, ConsoleKind::Serial).await;
    // Typing keeps it from idling, but not past its maximum.
    for _ in 0..3 {
        socket.send(Message::binary(b"\n".to_vec())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ended = read_until(&mut socket, LONG, |_| false).await;
    assert_eq!(ended.close.map(|c| c.0), Some(4003));

    let server = demo_app().await;
    let admin = server.admin().await;
    let vm = running_vm(&admin, "stopping").await;
    let mut socket = open_vm_console(&admin, vm.id, ConsoleKind::Serial).await;
    succeed(&admin, &admin.vm_action(vm.id, "stop").await.unwrap().job).await;
    let ended = read_until(&mut socket, LONG, |_| false).await;
    assert_eq!(ended.close, Some((1000, "the console closed".into())));
    assert_eq!(
        admin
            .vm_console_ticket(vm.id, ConsoleKind::Serial)
            .await
            .unwrap_err()
            .status(),
        Some(409)
    );
}
