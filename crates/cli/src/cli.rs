//! The command line, as clap sees it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Self-service virtual machines and their consoles.
#[derive(Debug, Parser)]
#[command(name = "porthole", version, about, propagate_version = true)]
pub struct Cli {
    /// The plane to talk to; defaults to the one you logged in to, then http://127.0.0.1:8080.
    #[arg(long, global = true, env = "PORTHOLE_URL")]
    pub url: Option<String>,

    /// How to print results.
    #[arg(long, short, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// The API's JSON, for programs.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the porthole server.
    Serve(ServeArgs),
    /// Log in and save a token for later commands.
    Login(LoginArgs),
    /// Revoke the saved token and forget it.
    Logout,
    /// Manage virtual machines.
    #[command(subcommand)]
    Vm(VmCommand),
    /// Manage templates (admins import and delete).
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Manage installer ISOs (admins import and delete).
    #[command(subcommand)]
    Iso(IsoCommand),
    /// Follow long-running operations.
    #[command(subcommand)]
    Job(JobCommand),
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Attach this terminal to a serial console. Detach with Ctrl-].
    Console(ConsoleArgs),
    /// Open a local port for any native VNC viewer, relayed to a VM's screen.
    Vnc(VncArgs),
    /// Manage consoles that are not porthole VMs, such as BMCs and switches (admins).
    #[command(subcommand)]
    External(ExternalCommand),
    /// List recent console sessions: who, what, from where, when, bytes (admins).
    Sessions,
}

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// The VM's name or id (or an external console's, with --external).
    pub target: String,
    /// TARGET names an external console.
    #[arg(long)]
    pub external: bool,
}

#[derive(Debug, Args)]
pub struct VncArgs {
    /// The VM's name or id (or an external console's, with --external).
    pub target: String,
    /// The local address to listen on.
    #[arg(long, default_value = "127.0.0.1:5900")]
    pub listen: SocketAddr,
    /// A viewer to start, e.g. `vncviewer`; `{}` in it is replaced by the address, else the
    /// address is appended. porthole exits when the viewer does.
    #[arg(long)]
    pub viewer: Option<String>,
    /// TARGET names an external console.
    #[arg(long)]
    pub external: bool,
    /// Listen on an address other hosts can reach. The port needs no password, so anyone
    /// who reaches it sees the console.
    #[arg(long)]
    pub allow_remote: bool,
}

#[derive(Debug, Subcommand)]
pub enum ExternalCommand {
    /// List external consoles.
    #[command(alias = "ls")]
    List,
    /// Register a VNC server or TCP serial console. A VNC password is read from stdin.
    Add {
        /// A name: a DNS label.
        name: String,
        /// vnc or tcp.
        #[arg(long)]
        protocol: String,
        /// HOST:PORT.
        #[arg(long)]
        address: String,
        /// Read the VNC password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove an external console.
    #[command(alias = "rm")]
    Delete {
        /// Its name.
        name: String,
    },
    /// Let a user open an external console.
    Grant {
        /// Its name.
        name: String,
        /// Who.
        username: String,
    },
    /// Take a user's access away.
    Revoke {
        /// Its name.
        name: String,
        /// Who.
        username: String,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the API listens.
    #[arg(long, default_value = "127.0.0.1:8080", env = "PORTHOLE_LISTEN")]
    pub listen: SocketAddr,
    /// Where the database, templates and VMs live.
    #[arg(long, default_value = "/var/lib/porthole", env = "PORTHOLE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The URL users reach porthole at, if it is not the listen address.
    #[arg(long, env = "PORTHOLE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Make sure the `demo` template exists, importing it from --demo-guest.
    #[arg(long)]
    pub demo: bool,
    /// The guest built by guest/build.sh, for --demo.
    #[arg(long, default_value = "target/guest", env = "PORTHOLE_DEMO_GUEST")]
    pub demo_guest: PathBuf,
    /// How guests execute: probe KVM by booting a guest (auto), or force kvm or tcg.
    #[arg(long, value_enum, default_value_t = AccelArg::Auto, env = "PORTHOLE_ACCEL")]
    pub accel: AccelArg,
    /// The QEMU system emulator.
    #[arg(long, default_value = "qemu-system-x86_64", env = "PORTHOLE_QEMU")]
    pub qemu: PathBuf,
    /// Seconds `shutdown` waits for the guest to power off before pulling the plug.
    #[arg(long, default_value_t = 60)]
    pub shutdown_timeout: u64,
    /// Days a login token stays valid.
    #[arg(long, default_value_t = 30)]
    pub token_days: u32,
    /// Seconds a console session may go without input before it is closed.
    #[arg(long, default_value_t = 1800)]
    pub console_idle_timeout: u64,
    /// Seconds a console session may last at all.
    #[arg(long, default_value_t = 8 * 3600)]
    pub console_max_duration: u64,
    /// Seconds between keepalive pings on console sessions.
    #[arg(long, default_value_t = 20)]
    pub console_ping_interval: u64,
    /// Console sessions one user may hold at once.
    #[arg(long, default_value_t = 8)]
    pub console_sessions_per_user: usize,
    /// Seconds a console ticket stays valid (at most 30).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=30))]
    pub console_ticket_ttl: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccelArg {
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Your username.
    #[arg(long, short, default_value = "admin")]
    pub username: String,
    /// Read the password from the first line of standard input instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
}

/// Waiting for a job.
#[derive(Debug, Args)]
pub struct WaitArg {
    /// Wait for the job to finish, showing its progress.
    #[arg(long, short)]
    pub wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// List your VMs (every VM, for admins).
    #[command(alias = "ls")]
    List,
    /// Create a VM from a template or an ISO, and boot it.
    Create(CreateVmArgs),
    /// Show one VM.
    Show {
        /// The VM's name or id.
        vm: String,
    },
    /// Power a VM on.
    Start(VmActionArgs),
    /// Pull a VM's plug.
    Stop(VmActionArgs),
    /// Press a VM's power button; pull the plug if the guest does not react in time.
    Shutdown(VmActionArgs),
    /// Press a VM's reset button.
    Reset(VmActionArgs),
    /// Pause a VM's CPUs.
    Suspend(VmActionArgs),
    /// Continue a paused VM.
    Resume(VmActionArgs),
    /// Delete a VM and every file it had.
    #[command(alias = "rm")]
    Delete(VmActionArgs),
    /// Change cores and memory (VM stopped) or grow the disk (any time).
    Resize(ResizeArgs),
    /// Print the recent serial console output.
    Log {
        /// The VM's name or id.
        vm: String,
    },
}

#[derive(Debug, Args)]
pub struct VmActionArgs {
    /// The VM's name or id.
    pub vm: String,
    #[command(flatten)]
    pub wait: WaitArg,
}

#[derive(Debug, Args)]
pub struct CreateVmArgs {
    /// The VM's name: a DNS label (a-z, 0-9, '-').
    pub name: String,
    /// The template to clone.
    #[arg(long, short, conflicts_with = "iso", required_unless_present = "iso")]
    pub template: Option<String>,
    /// The ISO to boot, with a blank disk.
    #[arg(long)]
    pub iso: Option<String>,
    /// Virtual CPUs.
    #[arg(long, default_value_t = 1)]
    pub cores: u32,
    /// Memory in MiB.
    #[arg(long, default_value_t = 512)]
    pub memory: u64,
    /// Disk size in GiB; defaults to the template's minimum, or 8 for an ISO.
    #[arg(long)]
    pub disk: Option<u64>,
    #[command(flatten)]
    pub wait: WaitArg,
}

#[derive(Debug, Args)]
pub struct ResizeArgs {
    /// The VM's name or id.
    pub vm: String,
    /// New number of virtual CPUs.
    #[arg(long)]
    pub cores: Option<u32>,
    /// New memory in MiB.
    #[arg(long)]
    pub memory: Option<u64>,
    /// New disk size in GiB.
    #[arg(long)]
    pub disk: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// List templates.
    #[command(alias = "ls")]
    List,
    /// Import a disk image (qcow2 or raw) from a file or an http(s) URL.
    Import {
        /// A path or URL.
        source: String,
        /// The template's name.
        #[arg(long, short)]
        name: String,
        /// A kernel to boot directly (path or URL).
        #[arg(long)]
        kernel: Option<String>,
        /// An initrd for the kernel (path or URL).
        #[arg(long, requires = "kernel")]
        initrd: Option<String>,
        /// The kernel command line.
        #[arg(long, requires = "kernel")]
        cmdline: Option<String>,
    },
    /// Delete a template no VM uses.
    #[command(alias = "rm")]
    Delete {
        /// The template's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum IsoCommand {
    /// List ISOs.
    #[command(alias = "ls")]
    List,
    /// Import an installer ISO from a file or an http(s) URL.
    Import {
        /// A path or URL.
        source: String,
        /// The ISO's name.
        #[arg(long, short)]
        name: String,
    },
    /// Delete an ISO no VM uses.
    #[command(alias = "rm")]
    Delete {
        /// The ISO's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// List recent jobs.
    #[command(alias = "ls")]
    List,
    /// Show one job.
    Show {
        /// The job's id.
        id: String,
        #[command(flatten)]
        wait: WaitArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Show who you are logged in as.
    Me,
    /// Create an account (admins only). The password is prompted for, or read from stdin.
    Create {
        /// The login name.
        username: String,
        /// member or admin.
        #[arg(long, default_value = "member")]
        role: String,
        /// Where reminders go.
        #[arg(long)]
        email: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}
