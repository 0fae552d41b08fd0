//! The console pages in a real browser: headless Chromium (Debian's, driven by playwright-core
//! from web/node_modules) logs in and uses noVNC and xterm.js against real QEMU guests.
//!
//! - VNC: the canvas noVNC draws is compared pixel by pixel with a screenshot QEMU takes
//!   itself (QMP `screendump`), and keys typed into the canvas must reach the guest's VGA
//!   console (read back from its text buffer).
//! - Serial: `echo hello-<random>` typed into xterm.js must come back, and `stty size` in the
//!   guest must match the terminal's size.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use porthole_testing::server::*;
use porthole_testing::web::{browser_script, script_event};
use serde_json::Value;

/// Starts the browser script in `mode` against VM `id`.
fn browse(server: &Server, id: porthole_core::VmId, mode: &str, out: &Path, marker: &str) -> Child {
    browser_script("console.mjs", server, "admin", ADMIN_PASSWORD, out)
        .env("VM_ID", id.to_string())
        .env("MODE", mode)
        .env("MARKER", marker)
        .stdin(Stdio::piped())
        .spawn()
        .expect("node is installed by scripts/setup")
}

/// The next JSON event the script prints.
fn next_event(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> Value {
    let line = lines
        .next()
        .expect("the browser script ended early")
        .unwrap();
    script_event(&line)
}

/// RGB pixels of a PNG file.
fn rgb(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let decoder = png::Decoder::new(BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert_eq!(info.bit_depth, png::BitDepth::Eight, "{path:?}");
    let pixels = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width, info.height, pixels)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_vnc_page_shows_the_guest_screen_and_types_into_it() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let vm = running_vm(&admin, "browser-vnc").await;
    shell_ready(&admin, vm.id).await;
    let out = tempfile::tempdir().unwrap();
    let marker = format!("vnc-{}", &porthole_core::VmId::random().to_string()[..8]);

    let mut script = browse(&server, vm.id, "vnc", out.path(), &marker);
    let mut lines = BufReader::new(script.stdout.take().unwrap()).lines();
    let login = next_event(&mut lines);
    assert_eq!(login["cookie"]["httpOnly"], true, "{login}");
    assert_eq!(login["cookie"]["sameSite"], "Strict", "{login}");
    let captured = next_event(&mut lines);
    assert_eq!(captured["event"], "captured", "{captured}");
    assert_eq!(
        captured["buttons"], true,
        "Ctrl-Alt-Del, fit and clipboard controls"
    );
    // QEMU's own picture of the same screen, taken while the browser waits.
    let dump = out.path().join("screendump.png");
    screendump(&server, vm.id, &dump);
    let mut stdin = script.stdin.take().unwrap();
    writeln!(stdin, "go").unwrap();

    let (cw, ch, canvas) = rgb(&out.path().join("canvas.png"));
    let (dw, dh, screen) = rgb(&dump);
    assert_eq!((cw, ch), (dw, dh), "canvas and screen differ in size");
    assert_eq!((cw, ch), (720, 400));
    let same = canvas.iter().zip(&screen).filter(|(a, b)| a == b).count();
    let lit = screen.iter().filter(|p| **p != [0, 0, 0]).count();
    // Only the blinking cursor may differ between the two moments.
    assert!(
        same as f64 >= 0.995 * screen.len() as f64,
        "only {same} of {} pixels match",
        screen.len()
    );
    assert!(lit > 1000, "the screen is blank: {lit} lit pixels");

    let typed = next_event(&mut lines);
    assert_eq!(typed["event"], "typed", "{typed}");
    assert_eq!(
        typed["problems"],
        serde_json::json!([]),
        "errors in the page: {typed}"
    );
    assert!(script.wait().unwrap().success());
    // The keys reached the guest: its VGA console shows the command and what it printed.
    eventually(
        Duration::from_secs(30),
        "the typed command on the VGA console",
        || async { (vga_text(&server, vm.id).matches(&marker).count() >= 2).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_serial_page_echoes_typed_commands_and_sizes_the_guest_terminal() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let vm = running_vm(&admin, "browser-serial").await;
    shell_ready(&admin, vm.id).await;
    let out = tempfile::tempdir().unwrap();
    let marker = format!("hello-{}", &porthole_core::VmId::random().to_string()[..8]);

    let mut script = browse(&server, vm.id, "serial", out.path(), &marker);
    let mut lines = BufReader::new(script.stdout.take().unwrap()).lines();
    let login = next_event(&mut lines);
    assert_eq!(login["event"], "logged_in", "{login}");
    let serial = next_event(&mut lines);
    assert_eq!(serial["echoed"], true, "{serial}");
    assert_eq!(serial["sized"], true, "{serial}");
    assert_eq!(serial["problems"], serde_json::json!([]), "{serial}");
    assert!(script.wait().unwrap().success());
    // The guest really ran it: the output line is in its serial scrollback too.
    let output = admin.console_output(vm.id).await.unwrap();
    assert!(output.contains(&format!("\r\n{marker}\r\n")), "{output}");
}
