//! `porthole console` in a real pseudo-terminal, and `porthole vnc` with a VNC viewer on its
//! local port, against real QEMU guests.

use std::io::{BufRead, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use porthole_testing::porthole_binary;
use porthole_testing::server::*;

/// A command running in a pseudo-terminal, with everything it printed so far.
struct Terminal {
    output: Arc<Mutex<Vec<u8>>>,
    writer: Box<dyn Write + Send>,
    master: Box<dyn portable_pty::MasterPty + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
}

impl Terminal {
    fn spawn(server: &Server, token: &str, args: &[&str], size: (u16, u16)) -> Self {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: size.0,
                cols: size.1,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut command = CommandBuilder::new(porthole_binary());
        command.args(args);
        command.env("PORTHOLE_URL", &server.url);
        command.env("PORTHOLE_TOKEN", token);
        command.env(
            "PORTHOLE_CONFIG",
            server.data_dir.with_file_name("cli.toml"),
        );
        let child = pair.slave.spawn_command(command).unwrap();
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let writer = pair.master.take_writer().unwrap();
        Terminal {
            output,
            writer,
            master: pair.master,
            child,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if self.text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn expect(&self, needle: &str) {
        assert!(
            self.wait_for(needle, Duration::from_secs(60)),
            "{needle:?} never appeared in:\n{}",
            self.text()
        );
    }

    fn type_text(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    /// Types `stty size` until the guest reports `expected`: the size travels asynchronously.
    fn guest_size_becomes(&mut self, expected: &str) {
        let needle = format!("\r\n{expected}\r\n");
        for _ in 0..20 {
            self.type_text("stty size\r");
            if self.wait_for(&needle, Duration::from_secs(1)) {
                return;
            }
        }
        panic!("the guest never reported {expected}:\n{}", self.text());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn console_attaches_the_terminal_with_resizes_and_detaches_on_ctrl_bracket() {
    let server = Server::start().await;
    let token = server.admin_token().await;
    let admin = server.admin().await;
    let vm = running_vm(&admin, "tty").await;
    shell_ready(&admin, vm.id).await;

    let mut terminal = Terminal::spawn(&server, &token, &["console", "tty"], (24, 80));
    terminal.expect("Connected to tty's serial console. Detach with Ctrl-].");
    // The scrollback shows the boot, then the shell runs commands.
    terminal.expect("porthole-guest ready");
    terminal.guest_size_becomes("24 80");
    terminal.type_text("echo cli-$((6*7))\r");
    terminal.expect("\r\ncli-42\r\n");

    // A window resize reaches the guest.
    terminal
        .master
        .resize(PtySize {
            rows: 33,
            cols: 101,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    terminal.guest_size_becomes("33 101");

    // Ctrl-] detaches; the terminal is restored and porthole exits cleanly.
    terminal.type_text("\u{1d}");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = terminal.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "porthole console did not exit:\n{}",
            terminal.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    terminal.expect("Detached from tty.");
    // The session is on record.
    let sessions = admin.console_sessions().await.unwrap();
    assert!(
        sessions
            .iter()
            .any(|s| s.framing == "termproxy" && s.target_name == "tty")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn vnc_opens_a_local_port_for_native_viewers() {
    let server = Server::start().await;
    let token = server.admin_token().await;
    let admin = server.admin().await;
    let vm = running_vm(&admin, "viewer").await;
    // After boot the VGA is in 80x25 text mode, 720x400 pixels.
    console_shows(&admin, vm.id, "porthole-guest ready").await;

    let (code, _, err) = server.cli(&token, &["vnc", "viewer", "--listen", "0.0.0.0:0"]);
    assert_eq!(code, 1);
    assert!(err.contains("--allow-remote"), "{err}");

    let mut child = std::process::Command::new(porthole_binary())
        .args(["vnc", "viewer", "--listen", "127.0.0.1:0"])
        .env("PORTHOLE_URL", &server.url)
        .env("PORTHOLE_TOKEN", &token)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "VNC for viewer on 127.0.0.1:PORT: point a VNC viewer at it ..."
    let address = line
        .split(" on ")
        .nth(1)
        .and_then(|rest| rest.split(": ").next())
        .unwrap()
        .to_owned();

    // Two viewers in turn, each with its own ticket behind the scenes.
    for _ in 0..2 {
        assert_eq!(
            rfb_viewer_over_tcp(&address),
            (720, 400, "QEMU (viewer)".to_owned())
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Plays an RFB 3.8 viewer over plain TCP: expects security None only, returns the
/// ServerInit's width, height and name.
fn rfb_viewer_over_tcp(address: &str) -> (u16, u16, String) {
    let mut viewer = std::net::TcpStream::connect(address).unwrap();
    viewer
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let read = |viewer: &mut std::net::TcpStream, n: usize| {
        let mut buf = vec![0u8; n];
        viewer.read_exact(&mut buf).unwrap();
        buf
    };
    assert_eq!(read(&mut viewer, 12), b"RFB 003.008\n");
    viewer.write_all(b"RFB 003.008\n").unwrap();
    assert_eq!(
        read(&mut viewer, 2),
        [1, 1],
        "offered more than security None"
    );
    viewer.write_all(&[1]).unwrap();
    assert_eq!(read(&mut viewer, 4), [0, 0, 0, 0]);
    viewer.write_all(&[1]).unwrap();
    let init = read(&mut viewer, 24);
    let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
    let name = String::from_utf8(read(&mut viewer, name_len)).unwrap();
    (
        u16::from_be_bytes([init[0], init[1]]),
        u16::from_be_bytes([init[2], init[3]]),
        name,
    )
}
