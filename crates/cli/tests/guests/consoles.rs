//! Consoles through the gateway, against real QEMU guests: VNC with the gateway doing the
//! RFB security handshake, serial in binary and termproxy framing, every rejection, session
//! limits, and external consoles.

use std::time::Duration;

use futures::SinkExt;
use porthole_api::{CreateExternalConsoleRequest, CreateUserRequest, ExternalProtocol};
use porthole_core::{ConsoleKind, Role};
use porthole_testing::console::*;
use porthole_testing::server::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const LONG: Duration = Duration::from_secs(60);

fn marker(prefix: &str) -> String {
    format!("{prefix}-{}", uuid_fragment())
}

fn uuid_fragment() -> String {
    porthole_core::VmId::random().to_string()[..8].to_owned()
}

#[tokio::test]
async fn vnc_goes_through_the_gateway_with_security_none() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let vm = running_vm(&admin, "screen").await;
    console_shows(&admin, vm.id, "porthole-guest ready").await;

    let ticket = admin
        .vm_console_ticket(vm.id, ConsoleKind::Vnc)
        .await
        .unwrap();
    assert!(ticket.expires_at <= chrono::Utc::now() + chrono::Duration::seconds(30));
    let mut socket = open(&admin, &ticket, false, None).await.unwrap();
    let init = rfb_viewer(&mut socket).await;
    // The VGA text console: 80x25 characters of 9x16 pixels.
    assert_eq!(
        init,
        ServerInit {
            width: 720,
            height: 400,
            name: "QEMU (screen)".into()
        }
    );
    // Ask for the whole screen and get a framebuffer update back.
    let mut request = vec![3u8, 0];
    for value in [0u16, 0, 720, 400] {
        request.extend_from_slice(&value.to_be_bytes());
    }
    socket.send(Message::binary(request)).await.unwrap();
    let update = read_until(&mut socket, LONG, |b| b.len() >= 4).await;
    assert_eq!(update.bytes[0], 0, "FramebufferUpdate");
    socket.close(None).await.unwrap();

    // One audit record with the bytes, and the metrics.
    let sessions = eventually(LONG, "the session record to close", || async {
        let sessions = admin.console_sessions().await.unwrap();
        (sessions.first().is_some_and(|s| s.ended_at.is_some())).then_some(sessions)
    })
    .await;
    let session = &sessions[0];
    assert_eq!(
        (session.username.as_str(), session.target_name.as_str()),
        ("admin", "screen")
    );
    assert_eq!(
        (session.kind, session.framing.as_str()),
        (ConsoleKind::Vnc, "binary")
    );
    assert!(
        session.remote_addr.starts_with("127.0.0.1:"),
        "{}",
        session.remote_addr
    );
    // The gateway answers the viewer's version and security choice itself (13 bytes); only
    // ClientInit (1) and the update request (10) reach the VNC server.
    assert!(session.bytes_to_client > 1000, "{session:?}");
    assert_eq!(session.bytes_from_client, 11, "{session:?}");
    assert_eq!(session.end_reason.as_deref(), Some("client_closed"));
    assert_eq!(
        server
            .metric("porthole_console_sessions_open{kind=\"vnc\"}")
            .await,
        0.0
    );
    assert_eq!(
        server
            .metric("porthole_console_sessions_total{kind=\"vnc\"}")
            .await,
        1.0
    );
    assert!(
        server
            .metric("porthole_console_bytes_total{direction=\"to_client\"}")
            .await
            >= session.bytes_to_client as f64
    );
}

#[tokio::test]
async fn termproxy_clients_drive_the_serial_console_and_resize_it() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let vm = running_vm(&admin, "term").await;
    shell_ready(&admin, vm.id).await;

    let ticket = admin
        .vm_console_ticket(vm.id, ConsoleKind::Serial)
        .await
        .unwrap();
    let mut socket = open(&admin, &ticket, true, None).await.unwrap();
    termproxy_login(&mut socket, "admin", &ticket.ticket).await;
    // A new viewer first gets the scrollback, so it sees how the guest booted.
    read_until_text(&mut socket, "porthole-guest ready", LONG).await;

    let word = marker("tp");
    socket
        .send(termproxy_input(&format!("echo {word}\n")))
        .await
        .unwrap();
    read_until_text(&mut socket, &format!("\r\n{word}\r\n"), LONG).await;

    socket.send(termproxy_resize(101, 33)).await.unwrap();
    socket.send(Message::binary(b"2".to_vec())).await.unwrap();
    guest_size_becomes(&mut socket, None, termproxy_input, "33 101").await;
}

#[tokio::test]
async fn serial_viewers_share_one_port() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let vm = running_vm(&admin, "shared").await;
    shell_ready(&admin, vm.id).await;
    let mut first = open_vm_console(&admin, vm.id, ConsoleKind::Serial).await;
    let mut second = open_vm_console(&admin, vm.id, ConsoleKind::Serial).await;
    read_until_text(&mut first, "porthole-guest ready", LONG).await;
    read_until_text(&mut second, "porthole-guest ready", LONG).await;
    let word = marker("shared");
    first
        .send(Message::binary(format!("echo {word}\n").into_bytes()))
        .await
        .unwrap();
    read_until_text(&mut second, &format!("\r\n{word}\r\n"), LONG).await;
    read_until_text(&mut first, &format!("\r\n{word}\r\n"), LONG).await;
    // The JSON control frame of binary framing resizes too.
    second
        .send(Message::text(r#"{"resize": {"cols": 90, "rows": 20}}"#))
        .await
        .unwrap();
    let typed = |text: &str| Message::binary(text.as_bytes().to_vec());
    guest_size_becomes(&mut second, Some(&mut first), typed, "20 90").await;
    // A malformed control frame ends that session with a protocol error, not the other.
    second.send(Message::text("{\"resize\": 5}")).await.unwrap();
    let ended = read_until(&mut second, LONG, |_| false).await;
    assert_eq!(ended.close.map(|c| c.0), Some(1002));
    first
        .send(Message::binary(b"echo still-here\n".to_vec()))
        .await
        .unwrap();
    read_until_text(&mut first, "\r\nstill-here\r\n", LONG).await;
    // Frames are bounded: a message over 64 KiB ends the session with 1009.
    first
        .send(Message::binary(vec![b'x'; 100 * 1024]))
        .await
        .unwrap();
    let ended = read_until(&mut first, LONG, |_| false).await;
    assert_eq!(ended.close.map(|c| c.0), Some(1009));
}

/// A TCP "serial console": greets, then echoes each line in upper case.
async fn tcp_serial_device() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                stream.write_all(b"switch> ").await.unwrap();
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    let upper = buf[..n].to_ascii_uppercase();
                    if stream.write_all(&upper).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (address, task)
}

/// A QEMU process killed when dropped, so a failing test leaves none behind.
struct QemuGuard(std::process::Child);

impl Drop for QemuGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real QEMU VNC server on TCP that wants `password`.
fn qemu_vnc_server(password: &str) -> (QemuGuard, String) {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    assert!(port > 5900, "ephemeral ports are above 5900 on Linux");
    let display = port - 5900;
    let child = std::process::Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "pc",
            "-accel",
            "tcg",
            "-m",
            "32",
            "-nodefaults",
            "-vga",
            "std",
            "-display",
            "none",
            "-S",
        ])
        .args(["-object", &format!("secret,id=vncpw,data={password}")])
        .args([
            "-vnc",
            &format!("127.0.0.1:{display},password-secret=vncpw"),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let child = QemuGuard(child);
    let address = format!("127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(&address).is_ok() {
            return (child, address);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("QEMU's VNC server did not listen on {address}");
}

#[tokio::test]
async fn external_consoles_are_granted_and_relayed_like_vms() {
    let server = Server::start().await;
    let admin = server.admin().await;
    for (name, password) in [("alice", "alice-password"), ("bob", "bob-password")] {
        let request = CreateUserRequest {
            username: name.into(),
            password: password.into(),
            role: Role::Member,
            email: None,
        };
        admin.create_user(&request).await.unwrap();
    }
    let alice = server.login("alice", "alice-password").await;
    let bob = server.login("bob", "bob-password").await;

    let (address, _device) = tcp_serial_device().await;
    let switch = admin
        .create_external_console(&CreateExternalConsoleRequest {
            name: "switch1".into(),
            protocol: ExternalProtocol::Tcp,
            address,
            password: None,
        })
        .await
        .unwrap();
    let (_qemu, vnc_address) = qemu_vnc_server("s3cret");
    let bmc = admin
        .create_external_console(&CreateExternalConsoleRequest {
            name: "bmc1".into(),
            protocol: ExternalProtocol::Vnc,
            address: vnc_address.clone(),
            password: Some("s3cret".into()),
        })
        .await
        .unwrap();
    assert!(bmc.has_password);
    let wrong = admin
        .create_external_console(&CreateExternalConsoleRequest {
            name: "bmc-wrong".into(),
            protocol: ExternalProtocol::Vnc,
            address: vnc_address,
            password: Some("guess".into()),
        })
        .await
        .unwrap();

    // Only those granted see and open them.
    admin
        .grant_external_console(switch.id, "alice")
        .await
        .unwrap();
    admin.grant_external_console(bmc.id, "alice").await.unwrap();
    assert_eq!(alice.external_consoles().await.unwrap().len(), 2);
    assert!(bob.external_consoles().await.unwrap().is_empty());
    assert_eq!(
        bob.external_console_ticket(switch.id, ConsoleKind::Serial)
            .await
            .unwrap_err()
            .status(),
        Some(404)
    );
    let mismatch = alice
        .external_console_ticket(switch.id, ConsoleKind::Vnc)
        .await
        .unwrap_err();
    assert_eq!(mismatch.status(), Some(422));

    // TCP serial, in termproxy framing.
    let ticket = alice
        .external_console_ticket(switch.id, ConsoleKind::Serial)
        .await
        .unwrap();
    let mut socket = open(&alice, &ticket, true, None).await.unwrap();
    termproxy_login(&mut socket, "alice", &ticket.ticket).await;
    read_until_text(&mut socket, "switch> ", LONG).await;
    socket
        .send(termproxy_input("show version\n"))
        .await
        .unwrap();
    read_until_text(&mut socket, "SHOW VERSION\n", LONG).await;
    socket.close(None).await.unwrap();

    // VNC with a password: the gateway authenticates; alice gets security None.
    let ticket = alice
        .external_console_ticket(bmc.id, ConsoleKind::Vnc)
        .await
        .unwrap();
    let mut socket = open(&alice, &ticket, false, None).await.unwrap();
    let init = rfb_viewer(&mut socket).await;
    // This QEMU has no name and is paused before its BIOS, so the screen is its default.
    assert_eq!(
        init,
        ServerInit {
            width: 640,
            height: 480,
            name: "QEMU".into()
        }
    );
    socket.close(None).await.unwrap();

    // A wrong stored password: the viewer is told why, and the session never starts.
    let ticket = admin
        .external_console_ticket(wrong.id, ConsoleKind::Vnc)
        .await
        .unwrap();
    let mut socket = open(&admin, &ticket, false, None).await.unwrap();
    let refused = read_until(&mut socket, LONG, |b| b.len() >= 12).await;
    assert_eq!(&refused.bytes[..12], b"RFB 003.008\n");
    socket
        .send(Message::binary(b"RFB 003.008\n".to_vec()))
        .await
        .unwrap();
    let reason = read_until(&mut socket, LONG, |_| false).await;
    assert_eq!(reason.bytes[0], 0, "no security types");
    assert!(
        reason.text().contains("VNC authentication failed"),
        "{:?}",
        reason.text()
    );

    // Revoking takes access away at once.
    let ticket = alice
        .external_console_ticket(switch.id, ConsoleKind::Serial)
        .await
        .unwrap();
    admin
        .revoke_external_console(switch.id, "alice")
        .await
        .unwrap();
    assert_eq!(open(&alice, &ticket, false, None).await.err(), Some(403));
}

/// Types `stty size` (through `writer`, in its framing) until the guest, as seen on
/// `reader` (or `writer` itself), reports `expected`. The guest's console agent applies sizes
/// asynchronously, so the first answer may still be the old size.
async fn guest_size_becomes(
    writer: &mut Socket,
    mut reader: Option<&mut Socket>,
    typed: impl Fn(&str) -> Message,
    expected: &str,
) {
    let needle = format!("\r\n{expected}\r\n");
    for _ in 0..20 {
        writer.send(typed("stty size\n")).await.unwrap();
        let socket = match reader.as_deref_mut() {
            Some(reader) => reader,
            None => &mut *writer,
        };
        let seen = read_until(socket, Duration::from_secs(1), |b| {
            b.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .await;
        if seen.text().contains(&needle) {
            return;
        }
    }
    panic!("the guest never reported a size of {expected}");
}
