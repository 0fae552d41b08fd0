//! QEMU processes: the files a VM keeps, the command line, launching, and liveness.
//!
//! QEMU runs daemonized (`-daemonize`), so a VM outlives a crash or restart of porthole.
//! Liveness comes from the pidfile's POSIX lock, which QEMU holds for as long as it runs and
//! the kernel drops the moment it exits. Unlike `kill(pid, 0)`, that cannot be fooled by a
//! recycled pid or a zombie, so re-adopting after a restart never starts a VM twice.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::fcntl::{FcntlArg, fcntl};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use porthole_core::driver::{BootMedia, BootOrder, VmDefinition};
use porthole_core::ids::IsoId;
use porthole_core::ids::VmId;
use tokio::process::Command;

use crate::accel::Accel;

/// How long QEMU may take to initialise before `-daemonize` returns.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);

/// The files of one VM, all inside its own directory.
#[derive(Clone, Debug)]
pub struct VmFiles {
    dir: PathBuf,
}

impl VmFiles {
    /// The files of VM `id` under `root`.
    pub fn new(root: &Path, id: VmId) -> Self {
        Self {
            dir: root.join(id.to_string()),
        }
    }

    /// The VM's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The saved definition; written last at create, so its presence means "fully created".
    pub fn definition(&self) -> PathBuf {
        self.dir.join("vm.json")
    }

    /// The main disk: a qcow2 overlay or a blank qcow2.
    pub fn disk(&self) -> PathBuf {
        self.dir.join("disk.qcow2")
    }

    /// QMP's socket.
    pub fn qmp(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }

    /// The VNC server's socket.
    pub fn vnc(&self) -> PathBuf {
        self.dir.join("vnc.sock")
    }

    /// The first serial port's socket.
    pub fn serial(&self) -> PathBuf {
        self.dir.join("serial.sock")
    }

    /// The console control port's socket: a virtio-serial port named
    /// `org.porthole.console.0` that carries terminal sizes to the guest.
    pub fn console_control(&self) -> PathBuf {
        self.dir.join("ctl.sock")
    }

    /// The cloud-init NoCloud seed (ISO 9660, label `cidata`), for VMs with cloud-init data.
    pub fn seed(&self) -> PathBuf {
        self.dir.join("seed.iso")
    }

    /// QEMU's pidfile, locked by QEMU while it runs.
    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }

    /// QEMU's stderr from the last start.
    pub fn log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }

    /// The longest path of any socket, which must fit in `sockaddr_un`.
    pub fn longest_socket_path(&self) -> PathBuf {
        self.serial()
    }
}

/// The longest unix socket path Linux accepts (`sun_path` minus its terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// The pid of the QEMU that runs from `pidfile`, or `None` if none does.
pub fn running_pid(pidfile: &Path) -> Option<Pid> {
    let file = File::open(pidfile).ok()?;
    let mut probe = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    fcntl(&file, FcntlArg::F_GETLK(&mut probe)).ok()?;
    (probe.l_type != libc::F_UNLCK as libc::c_short).then(|| Pid::from_raw(probe.l_pid))
}

/// Kills the QEMU that runs from `pidfile`, if any.
pub fn kill_hard(pidfile: &Path) {
    if let Some(pid) = running_pid(pidfile) {
        let _ = kill(pid, Signal::SIGKILL);
    }
}

/// Waits up to `timeout` for the QEMU of `pidfile` to exit. Returns whether it did.
pub async fn wait_for_exit(pidfile: &Path, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if running_pid(pidfile).is_none() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Why QEMU did not start.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The QEMU binary could not be run.
    #[error("cannot run {0}")]
    Spawn(String, #[source] std::io::Error),
    /// QEMU exited with an error during initialisation.
    #[error("{0}")]
    Failed(String),
    /// QEMU did not finish initialising in time.
    #[error("QEMU did not finish starting within {} s", LAUNCH_TIMEOUT.as_secs())]
    Timeout,
    /// The log file could not be prepared.
    #[error("cannot write {0}")]
    Log(String, #[source] std::io::Error),
}

/// Starts QEMU for `def` with its CPUs paused (`-S`), and returns once it has daemonized and
/// all its sockets listen.
pub async fn launch(
    qemu: &Path,
    accel: Accel,
    files: &VmFiles,
    def: &VmDefinition,
    boot: &BootFiles,
) -> Result<(), LaunchError> {
    for stale in [
        files.qmp(),
        files.vnc(),
        files.serial(),
        files.console_control(),
        files.pidfile(),
    ] {
        let _ = std::fs::remove_file(stale);
    }
    let log_path = files.log();
    let log =
        File::create(&log_path).map_err(|e| LaunchError::Log(log_path.display().to_string(), e))?;
    let mut child = Command::new(qemu)
        .args(arguments(accel, files, def, boot))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| LaunchError::Spawn(qemu.display().to_string(), e))?;
    let status = match tokio::time::timeout(LAUNCH_TIMEOUT, child.wait()).await {
        Ok(status) => status.map_err(|e| LaunchError::Spawn(qemu.display().to_string(), e))?,
        Err(_) => {
            kill_hard(&files.pidfile());
            return Err(LaunchError::Timeout);
        }
    };
    if status.success() {
        return Ok(());
    }
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let message = log
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(qemu_message)
        .unwrap_or_else(|| format!("QEMU exited with {status}"));
    Err(LaunchError::Failed(message))
}

/// QEMU's message without the `-msg timestamp=on` prefix and the program name.
fn qemu_message(line: &str) -> String {
    let line = line.trim();
    let line = match line.split_once(' ') {
        Some((stamp, rest)) if stamp.ends_with('Z') && stamp.contains('T') => rest,
        _ => line,
    };
    let line = match line.split_once(": ") {
        Some((program, rest)) if program.starts_with("qemu-system") => rest,
        _ => line,
    };
    line.to_owned()
}

/// The files on this host a VM boots from besides its disk, resolved from the identities
/// its definition names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootFiles {
    /// The ISO in the CD-ROM drive.
    pub cdrom: Option<PathBuf>,
    /// The template's kernel, for direct boot.
    pub kernel: Option<PathBuf>,
    /// Its initrd.
    pub initrd: Option<PathBuf>,
}

/// The ISO in `def`'s CD-ROM drive: the one put in, else an installer VM's own.
pub fn cdrom(def: &VmDefinition) -> Option<IsoId> {
    match (&def.boot, def.cdrom) {
        (_, Some(iso)) => Some(iso),
        (BootMedia::Iso { id }, None) => Some(*id),
        _ => None,
    }
}

/// QEMU's command line for `def`, booting from `boot`.
pub fn arguments(
    accel: Accel,
    files: &VmFiles,
    def: &VmDefinition,
    boot: &BootFiles,
) -> Vec<OsString> {
    let mut args = Args::default();
    args.push("-name")
        .push(format!("guest={},debug-threads=on", def.name));
    args.push("-uuid").push(def.id.to_string());
    args.push("-machine").push("pc");
    args.push("-accel").push(accel.as_str());
    args.push("-cpu").push(accel.cpu_model());
    args.push("-smp").push(def.resources.cores.to_string());
    args.push("-m")
        .push(format!("{}M", def.resources.memory_mib));
    args.push("-nodefaults").push("-no-user-config");
    args.push("-display").push("none").push("-vga").push("std");
    // Every VNC connection needs a password that the gateway sets just before it connects.
    args.push("-vnc")
        .push(option("unix:", &files.vnc(), ",password=on"));
    args.push("-chardev").push(option(
        "socket,id=serial0,server=on,wait=off,path=",
        &files.serial(),
        "",
    ));
    args.push("-serial").push("chardev:serial0");
    args.push("-device").push("virtio-serial-pci,id=vser0");
    args.push("-chardev").push(option(
        "socket,id=consolectl,server=on,wait=off,path=",
        &files.console_control(),
        "",
    ));
    args.push("-device")
        .push("virtserialport,bus=vser0.0,chardev=consolectl,name=org.porthole.console.0");
    args.push("-qmp")
        .push(option("unix:", &files.qmp(), ",server=on,wait=off"));
    args.push("-drive").push(option(
        "if=none,id=disk0,format=qcow2,discard=unmap,file=",
        &files.disk(),
        "",
    ));
    let (disk_index, cdrom_index) = match def.boot_order {
        BootOrder::Disk => (1, 2),
        BootOrder::Cdrom => (2, 1),
    };
    // The main disk is the first virtio disk, so the guest sees it as /dev/vda whatever else
    // is attached. Index 0 is left to a direct-boot kernel, which takes it itself.
    args.push("-device")
        .push(format!("virtio-blk-pci,drive=disk0,bootindex={disk_index}"));
    if def.cloud_init.is_some() {
        args.push("-drive").push(option(
            "if=none,id=seed0,format=raw,readonly=on,file=",
            &files.seed(),
            "",
        ));
        args.push("-device").push("virtio-blk-pci,drive=seed0");
    }
    if let Some(cdrom) = &boot.cdrom {
        args.push("-drive").push(option(
            "if=none,id=cdrom0,format=raw,media=cdrom,readonly=on,file=",
            cdrom,
            "",
        ));
        args.push("-device")
            .push(format!("ide-cd,drive=cdrom0,bootindex={cdrom_index}"));
    }
    if let Some(kernel) = &boot.kernel {
        args.push("-kernel").push(kernel.as_os_str());
        if let Some(initrd) = &boot.initrd {
            args.push("-initrd").push(initrd.as_os_str());
        }
        let cmdline = match &def.boot {
            BootMedia::Template {
                direct_boot: Some(direct),
                ..
            } => direct.cmdline.as_deref(),
            _ => None,
        };
        if let Some(cmdline) = cmdline {
            args.push("-append").push(cmdline);
        }
    }
    args.push("-nic").push("none");
    args.push("-sandbox")
        .push("on,obsolete=deny,resourcecontrol=deny");
    args.push("-msg").push("timestamp=on");
    args.push("-pidfile").push(files.pidfile().as_os_str());
    args.push("-S").push("-daemonize");
    args.0
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push(&mut self, arg: impl Into<OsString>) -> &mut Self {
        self.0.push(arg.into());
        self
    }
}

/// A QEMU option value that embeds a path. QEMU separates options with commas, so a comma
/// inside the path is doubled.
fn option(prefix: &str, path: &Path, suffix: &str) -> OsString {
    let mut value = OsString::from(prefix);
    let escaped: Vec<u8> = path
        .as_os_str()
        .as_bytes()
        .iter()
        .flat_map(|&b| if b == b',' { vec![b',', b','] } else { vec![b] })
        .collect();
    value.push(std::ffi::OsStr::from_bytes(&escaped));
    value.push(suffix);
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use porthole_core::driver::{DirectBoot, DiskFormat};
    use porthole_core::{Resources, TemplateId, VmName};

    #[test]
    fn messages_lose_timestamp_and_program_name() {
        assert_eq!(
            qemu_message("2026-11-23T12:16:01.816455Z qemu-system-x86_64: -device x: bad\n"),
            "-device x: bad"
        );
        assert_eq!(qemu_message("qemu-system-x86_64: no"), "no");
        assert_eq!(qemu_message("plain text"), "plain text");
    }

    #[test]
    fn commas_in_paths_are_escaped() {
        let value = option("file=", Path::new("/data/a,b/disk"), ",x=y");
        assert_eq!(value, OsString::from("file=/data/a,,b/disk,x=y"));
    }

    #[test]
    fn command_line_wires_sockets_disk_and_direct_boot() {
        let id = VmId::random();
        let files = VmFiles::new(Path::new("/d/vms"), id);
        let def = VmDefinition {
            id,
            name: VmName::parse("web").unwrap(),
            resources: Resources {
                cores: 2,
                memory_mib: 256,
                disk_gib: 1,
            },
            boot: BootMedia::Template {
                id: TemplateId::random(),
                format: DiskFormat::Qcow2,
                direct_boot: Some(DirectBoot {
                    initrd: false,
                    cmdline: Some("console=ttyS0".into()),
                }),
            },
            cloud_init: None,
            cdrom: None,
            boot_order: BootOrder::Disk,
            owner: None,
        };
        let boot = BootFiles {
            kernel: Some("/d/t/vmlinuz".into()),
            ..BootFiles::default()
        };
        let args = strings(&arguments(Accel::Tcg, &files, &def, &boot));
        let after = |flag: &str| {
            let i = args.iter().position(|a| a == flag).unwrap();
            args[i + 1].clone()
        };
        assert_eq!(after("-smp"), "2");
        assert_eq!(after("-m"), "256M");
        assert_eq!(after("-accel"), "tcg");
        assert_eq!(after("-kernel"), "/d/t/vmlinuz");
        assert_eq!(after("-append"), "console=ttyS0");
        assert!(!args.contains(&"-initrd".to_owned()));
        assert_eq!(
            after("-qmp"),
            format!("unix:/d/vms/{id}/qmp.sock,server=on,wait=off")
        );
        assert!(args.contains(&"-daemonize".to_owned()) && args.contains(&"-S".to_owned()));
        // No CD-ROM and no seed unless asked for.
        assert!(
            !args
                .iter()
                .any(|a| a.contains("cdrom0") || a.contains("seed0"))
        );
    }

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.clone().into_string().unwrap())
            .collect()
    }

    fn values_of<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    fn template_def(id: VmId) -> VmDefinition {
        VmDefinition {
            id,
            name: VmName::parse("web").unwrap(),
            resources: Resources {
                cores: 1,
                memory_mib: 128,
                disk_gib: 1,
            },
            boot: BootMedia::Template {
                id: TemplateId::random(),
                format: DiskFormat::Qcow2,
                direct_boot: None,
            },
            cloud_init: None,
            cdrom: None,
            boot_order: BootOrder::Disk,
            owner: None,
        }
    }

    #[test]
    fn cdrom_and_boot_order_follow_the_definition() {
        let id = VmId::random();
        let files = VmFiles::new(Path::new("/d/vms"), id);
        let mut def = template_def(id);
        let netinst = IsoId::random();
        def.cdrom = Some(netinst);
        assert_eq!(cdrom(&def), Some(netinst));
        let boot = BootFiles {
            cdrom: Some("/d/isos/debian,netinst.iso".into()),
            ..BootFiles::default()
        };
        let args = strings(&arguments(Accel::Tcg, &files, &def, &boot));
        let devices = values_of(&args, "-device");
        assert!(
            devices.contains(&"virtio-blk-pci,drive=disk0,bootindex=1"),
            "{devices:?}"
        );
        assert!(
            devices.contains(&"ide-cd,drive=cdrom0,bootindex=2"),
            "{devices:?}"
        );
        assert!(values_of(&args, "-drive").contains(
            &"if=none,id=cdrom0,format=raw,media=cdrom,readonly=on,file=/d/isos/debian,,netinst.iso"
        ));

        def.boot_order = BootOrder::Cdrom;
        let args = strings(&arguments(Accel::Tcg, &files, &def, &boot));
        let devices = values_of(&args, "-device");
        assert!(
            devices.contains(&"virtio-blk-pci,drive=disk0,bootindex=2"),
            "{devices:?}"
        );
        assert!(
            devices.contains(&"ide-cd,drive=cdrom0,bootindex=1"),
            "{devices:?}"
        );

        // An installer VM keeps its ISO in the drive unless another one is put in.
        let installer = IsoId::random();
        let iso = VmDefinition {
            boot: BootMedia::Iso { id: installer },
            cdrom: None,
            ..def.clone()
        };
        assert_eq!(cdrom(&iso), Some(installer));
        let boot = BootFiles {
            cdrom: Some("/d/isos/installer.iso".into()),
            ..BootFiles::default()
        };
        let args = strings(&arguments(Accel::Tcg, &files, &iso, &boot));
        assert!(
            values_of(&args, "-drive")
                .iter()
                .any(|d| d.ends_with("file=/d/isos/installer.iso"))
        );
        assert!(values_of(&args, "-device").contains(&"ide-cd,drive=cdrom0,bootindex=1"));
        let rescue = IsoId::random();
        let swapped = VmDefinition {
            cdrom: Some(rescue),
            ..iso
        };
        assert_eq!(cdrom(&swapped), Some(rescue));
        // A template VM without one has an empty drive.
        assert_eq!(cdrom(&template_def(id)), None);
    }

    #[test]
    fn the_seed_is_a_read_only_disk_after_the_main_disk() {
        let id = VmId::random();
        let files = VmFiles::new(Path::new("/d/vms"), id);
        let mut def = template_def(id);
        def.cloud_init = Some(porthole_core::CloudInit {
            hostname: "h".into(),
            user: "u".into(),
            password_hash: String::new(),
            ssh_keys: vec![],
        });
        let args = strings(&arguments(Accel::Tcg, &files, &def, &BootFiles::default()));
        assert!(values_of(&args, "-drive").contains(
            &format!("if=none,id=seed0,format=raw,readonly=on,file=/d/vms/{id}/seed.iso").as_str()
        ));
        let devices = values_of(&args, "-device");
        let disk = devices
            .iter()
            .position(|d| d.contains("drive=disk0"))
            .unwrap();
        let seed = devices
            .iter()
            .position(|d| *d == "virtio-blk-pci,drive=seed0")
            .unwrap();
        // virtio disks are named in PCI order: the main disk stays /dev/vda.
        assert!(disk < seed, "{devices:?}");
    }
}
