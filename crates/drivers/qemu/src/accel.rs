//! Choosing between KVM and TCG.
//!
//! `/dev/kvm` existing proves little: on some hosts QEMU opens it and then aborts when it
//! programs the vCPU ("failed to set MSR"), the guest never executes, or (nested inside
//! another hypervisor) it executes but every memory access is so slow that a Linux kernel
//! never finishes unpacking itself. So the probe boots a real, tiny guest: a 512-byte boot
//! sector that writes a marker to the first serial port, copies 8 MiB in memory, and writes
//! a second marker. KVM is used only if the first marker arrives and the copy finishes in
//! time; otherwise porthole runs guests under TCG.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// How long the probe guest gets to print its marker. SeaBIOS reaches a boot sector in well
/// under a second when KVM works.
const PROBE_TIMEOUT: Duration = Duration::from_secs(4);

/// What the probe guest writes to COM1 when it runs.
const MARKER: &[u8] = b"KVM";

/// What it writes once it has copied [`PROBE_WORK_BYTES`] in memory.
const DONE: &[u8] = b"OK";

/// How much the probe guest copies: 256 times 32 KiB.
const PROBE_WORK_BYTES: u32 = 256 * 32 * 1024;

/// How long the copy may take. Working KVM does it in a few milliseconds and TCG in well
/// under 100; a host that needs longer (seen: 2 s, nested KVM) runs real guests far too
/// slowly to boot them.
const WORK_LIMIT: Duration = Duration::from_millis(1000);

/// How guests execute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
    /// QEMU's software emulator.
    Tcg,
}

impl Accel {
    /// QEMU's `-accel` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// QEMU's `-cpu` value that suits the accelerator.
    pub fn cpu_model(self) -> &'static str {
        match self {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        }
    }
}

/// The outcome of [`probe`]: the choice and why it was made, to be logged once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccelChoice {
    /// The accelerator to use.
    pub accel: Accel,
    /// Why, in words.
    pub reason: String,
}

/// A boot sector: write "KVM" to COM1 (port 0x3f8), copy 32 KiB from 0x8000 to 0x10000
/// 256 times, write "OK", then halt forever.
fn probe_boot_sector() -> [u8; 512] {
    let mut sector = [0u8; 512];
    let mut code = vec![0xBA, 0xF8, 0x03]; // mov dx, 0x3f8
    for &byte in MARKER {
        code.extend_from_slice(&[0xB0, byte, 0xEE]); // mov al, byte; out dx, al
    }
    let copy = [
        0x31, 0xF6, // xor si, si
        0xB8, 0x00, 0x08, // mov ax, 0x0800
        0x8E, 0xD8, // mov ds, ax
        0xB8, 0x00, 0x10, // mov ax, 0x1000
        0x8E, 0xC0, // mov es, ax
        0x31, 0xFF, // xor di, di
        0xB9, 0x00, 0x40, // mov cx, 0x4000 (words)
        0xF3, 0xA5, // rep movsw
        0x4B, // dec bx
    ];
    code.extend_from_slice(&[0xBB, 0x00, 0x01]); // mov bx, 256
    code.extend_from_slice(&copy);
    let back = u8::try_from(256 - (copy.len() + 2)).expect("a short jump");
    code.extend_from_slice(&[0x75, back]); // jnz to the copy
    for &byte in DONE {
        code.extend_from_slice(&[0xB0, byte, 0xEE]);
    }
    code.extend_from_slice(&[0xF4, 0xEB, 0xFD]); // hlt; jmp back to hlt
    sector[..code.len()].copy_from_slice(&code);
    sector[510] = 0x55;
    sector[511] = 0xAA;
    sector
}

/// Finds out whether KVM really runs guests here.
pub async fn probe(qemu: &Path, scratch: &Path) -> AccelChoice {
    let tcg = |reason: String| AccelChoice {
        accel: Accel::Tcg,
        reason,
    };
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return tcg(format!("/dev/kvm is not usable ({e})"));
    }
    match boot_probe_guest(qemu, scratch, Accel::Kvm).await {
        Ok(()) => AccelChoice {
            accel: Accel::Kvm,
            reason: "a KVM probe guest ran".into(),
        },
        Err(why) => tcg(format!(
            "/dev/kvm exists but a KVM probe guest failed: {why}"
        )),
    }
}

/// Boots the probe guest under `accel` (its image goes in `scratch`) and waits for its
/// marker on the serial port; the reason it did not print one otherwise.
pub async fn boot_probe_guest(qemu: &Path, scratch: &Path, accel: Accel) -> Result<(), String> {
    let image = scratch.join("kvm-probe.img");
    std::fs::write(&image, probe_boot_sector()).map_err(|e| format!("writing {image:?}: {e}"))?;
    let mut drive = std::ffi::OsString::from("format=raw,if=ide,snapshot=on,file=");
    drive.push(&image);
    let child = Command::new(qemu)
        .args([
            "-accel",
            accel.as_str(),
            "-cpu",
            accel.cpu_model(),
            "-machine",
            "pc",
            "-m",
            "16",
        ])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "stdio",
        ])
        .arg("-drive")
        .arg(drive)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let result = match child {
        Err(e) => Err(format!("cannot run {}: {e}", qemu.display())),
        Ok(mut child) => {
            let mut stdout = child.stdout.take().expect("stdout is piped");
            let mut seen = Vec::new();
            let ran = wait_for(&mut stdout, &mut seen, MARKER, PROBE_TIMEOUT).await;
            let worked = match ran {
                Some(true) => wait_for(&mut stdout, &mut seen, DONE, WORK_LIMIT).await,
                other => other,
            };
            let _ = child.start_kill();
            let stderr = match child.wait_with_output().await {
                Ok(output) => String::from_utf8_lossy(&output.stderr).trim().to_owned(),
                Err(_) => String::new(),
            };
            match (ran, worked) {
                (Some(true), Some(true)) => Ok(()),
                (Some(true), None) => Err(format!(
                    "the guest runs far too slowly: copying {} MiB took longer than {} ms",
                    PROBE_WORK_BYTES >> 20,
                    WORK_LIMIT.as_millis()
                )),
                (Some(false), _) | (_, Some(false)) if !stderr.is_empty() => {
                    Err(last_line(&stderr))
                }
                (Some(false), _) | (_, Some(false)) => {
                    Err("QEMU exited before the guest ran".into())
                }
                (None, _) => Err(format!(
                    "the guest printed nothing within {} s",
                    PROBE_TIMEOUT.as_secs()
                )),
            }
        }
    };
    let _ = std::fs::remove_file(&image);
    result
}

/// Reads the guest's serial output into `seen` until it holds `needle`: `Some(true)`, or
/// `Some(false)` if the output ends first, `None` after `timeout`.
async fn wait_for(
    stdout: &mut tokio::process::ChildStdout,
    seen: &mut Vec<u8>,
    needle: &[u8],
    timeout: Duration,
) -> Option<bool> {
    let read = async {
        let mut buf = [0u8; 256];
        loop {
            if seen.windows(needle.len()).any(|w| w == needle) {
                return true;
            }
            match stdout.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(timeout, read).await.ok()
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_sector_is_bootable_and_prints_the_marker() {
        let sector = probe_boot_sector();
        assert_eq!(&sector[510..], &[0x55, 0xAA]);
        let outs: Vec<u8> = sector
            .windows(3)
            .filter(|w| w[0] == 0xB0 && w[2] == 0xEE)
            .map(|w| w[1])
            .collect();
        assert_eq!(outs, [MARKER, DONE].concat());
    }
}
