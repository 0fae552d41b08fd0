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
    Serve(Box<ServeArgs>),
    /// Run a hypervisor agent: join a plane once, then serve this host's VMs to it.
    Agent(AgentArgs),
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
    /// Manage nodes: add a Proxmox VE cluster, list, remove (admins).
    #[command(subcommand)]
    Node(NodeCommand),
    /// Manage installer ISOs (admins import and delete).
    #[command(subcommand)]
    Iso(IsoCommand),
    /// Follow long-running operations.
    #[command(subcommand)]
    Job(JobCommand),
    /// Manage accounts, their limits and what they use.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage groups of users that share limits (admins).
    #[command(subcommand)]
    Group(GroupCommand),
    /// Manage the SSH public keys on your profile; they go into VMs you create from templates.
    #[command(subcommand)]
    SshKey(SshKeyCommand),
    /// Show the audit log: who did what, from where, and whether it worked (admins).
    Audit(AuditArgs),
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

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes, each checked now.
    #[command(alias = "ls")]
    List,
    /// Add a host that runs `porthole agent` (prints its one-time join token), or with
    /// --proxmox a Proxmox VE cluster, after checking it answers with these credentials.
    #[command(group(clap::ArgGroup::new("tls").args(["ca", "fingerprint", "insecure"])))]
    Add {
        /// The node's name in porthole.
        name: String,
        /// The PVE API, e.g. https://pve.example.org:8006.
        #[arg(long, value_name = "URL")]
        proxmox: Option<String>,
        /// An API token, USER@REALM!TOKENID=SECRET.
        #[arg(long, conflicts_with_all = ["username", "realm", "password_stdin"])]
        token: Option<String>,
        /// Log in as this user (without @realm); the password is prompted for.
        #[arg(long, requires = "realm")]
        username: Option<String>,
        /// The user's realm, e.g. pve or pam.
        #[arg(long, requires = "username")]
        realm: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long, requires = "username")]
        password_stdin: bool,
        /// Trust the API's certificate if this CA (PEM file) signed it.
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// Trust exactly the certificate with this SHA-256 fingerprint.
        #[arg(long, value_name = "SHA256")]
        fingerprint: Option<String>,
        /// Do not verify the API's certificate at all (isolated labs only).
        #[arg(long)]
        insecure: bool,
        /// Put every new VM on this PVE node instead of the one with the most free memory.
        #[arg(long, value_name = "NODE")]
        pve_node: Option<String>,
    },
    /// Remove a node no VM or template uses.
    #[command(alias = "rm")]
    Remove {
        /// Its name.
        name: String,
        /// For a host that is gone for good: remove the node while it is offline, with the
        /// records of its VMs (nothing on the host is touched).
        #[arg(long)]
        forget_vms: bool,
    },
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
    /// Cores of running VMs a user may have, unless their groups or they have a limit.
    #[arg(long, default_value_t = 4)]
    pub default_cores: u64,
    /// MiB of memory of running VMs a user may have, by default.
    #[arg(long, default_value_t = 8192)]
    pub default_memory_mib: u64,
    /// GiB of disk over all VMs a user may have, by default.
    #[arg(long, default_value_t = 100)]
    pub default_disk_gib: u64,
    /// Days a new or renewed VM lives before it expires.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub vm_lifetime_days: u64,
    /// Wrong passwords in a row that lock an account.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub login_max_failures: u64,
    /// Seconds a locked account refuses logins.
    #[arg(long, default_value_t = 900)]
    pub login_lockout: u64,
    /// Login attempts one client address may make per minute.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub logins_per_minute: u32,
    /// Days before expiry on which owners are reminded, comma-separated; 0 is the last day.
    #[arg(long, value_delimiter = ',', default_value = "10,7,3,1,0")]
    pub expiry_reminder_days: Vec<u32>,
    /// Days an expired (stopped) VM is kept before it is deleted.
    #[arg(long, default_value_t = 7)]
    pub expiry_grace_days: u64,
    /// Seconds between expiry sweeps.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub expiry_interval: u64,
    /// Hour (UTC, 0-23) from which admins get the daily expiry summary.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(0..24))]
    pub expiry_summary_hour: u32,
    /// The mail server for reminders: smtp://HOST:PORT, smtp://HOST:587?tls=required
    /// (STARTTLS) or smtps://HOST:465, with USER:PASSWORD@ if it needs a login.
    #[arg(long, env = "PORTHOLE_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The sender of porthole's mail.
    #[arg(
        long,
        default_value = "porthole <porthole@localhost>",
        env = "PORTHOLE_SMTP_FROM"
    )]
    pub smtp_from: String,
    /// Read the current time from this file (an RFC 3339 time) instead of the system clock.
    /// For testing expiry only.
    #[arg(long, hide = true)]
    pub clock_file: Option<PathBuf>,
    /// Who logs in: `local` porthole accounts, or `proxmox`: accessor mode, where people
    /// log in with their Proxmox VE account and see only what its permissions show.
    #[arg(long, value_enum, default_value = "local")]
    pub auth: AuthArg,
    /// Accessor mode: the Proxmox VE API, e.g. https://pve.example.org:8006.
    #[arg(long, value_name = "URL", required_if_eq("auth", "proxmox"))]
    pub proxmox_url: Option<String>,
    /// Accessor mode: trust exactly the PVE certificate with this SHA-256 fingerprint.
    #[arg(long, value_name = "SHA256", conflicts_with_all = ["proxmox_ca", "proxmox_insecure"])]
    pub proxmox_fingerprint: Option<String>,
    /// Accessor mode: trust PVE's certificate if this CA (PEM file) signed it.
    #[arg(long, value_name = "FILE", conflicts_with = "proxmox_insecure")]
    pub proxmox_ca: Option<PathBuf>,
    /// Accessor mode: do not verify PVE's certificate (isolated labs only).
    #[arg(long)]
    pub proxmox_insecure: bool,
    /// Accessor mode: the realm preselected on the login page.
    #[arg(long, value_name = "REALM", default_value = "pve")]
    pub proxmox_realm: String,
    /// Where hypervisor agents join and fetch images (TLS 1.3, the plane's own CA); agents
    /// are given https://THIS-HOST:PORT as --plane.
    #[arg(long, value_name = "ADDR:PORT", env = "PORTHOLE_AGENT_LISTEN")]
    pub agent_listen: Option<SocketAddr>,
    /// Seconds an agent's certificate lives; agents renew it at two thirds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30 * 86_400, value_parser = clap::value_parser!(u64).range(60..))]
    pub agent_cert_ttl: u64,
    /// Seconds a join token from `porthole node add` stays usable.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub join_token_ttl: u64,
    /// Run no VMs on this host: only on nodes (agents, Proxmox) added to it.
    #[arg(long)]
    pub no_local_node: bool,
    /// Virtual cores placement allows per host CPU thread.
    #[arg(long, value_name = "RATIO", default_value_t = 4.0)]
    pub cpu_overcommit: f64,
    /// Guest memory placement allows per byte of host memory.
    #[arg(long, value_name = "RATIO", default_value_t = 1.0)]
    pub memory_overcommit: f64,
    /// Guest disk placement allows per byte of host disk.
    #[arg(long, value_name = "RATIO", default_value_t = 2.0)]
    pub disk_overcommit: f64,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The plane's agent listener (its serve --agent-listen), e.g. https://plane.example:8443.
    #[arg(long, value_name = "URL", env = "PORTHOLE_PLANE")]
    pub plane: Option<String>,
    /// The join token `porthole node add NAME` printed; needed only the first time.
    #[arg(long, value_name = "TOKEN", env = "PORTHOLE_JOIN_TOKEN")]
    pub join: Option<String>,
    /// Where the agent's API listens; only the plane can use it.
    #[arg(long, value_name = "ADDR:PORT", env = "PORTHOLE_AGENT_LISTEN")]
    pub listen: SocketAddr,
    /// The URL the plane reaches this agent at, if not https://LISTEN.
    #[arg(long, value_name = "URL")]
    pub advertise: Option<String>,
    /// Where the agent keeps its key, certificates, VMs and cached templates.
    #[arg(
        long,
        default_value = "/var/lib/porthole-agent",
        env = "PORTHOLE_DATA_DIR"
    )]
    pub data_dir: PathBuf,
    /// How guests execute: probe KVM by booting a guest (auto), or force kvm or tcg.
    #[arg(long, value_enum, default_value_t = AccelArg::Auto, env = "PORTHOLE_ACCEL")]
    pub accel: AccelArg,
    /// The QEMU system emulator.
    #[arg(long, default_value = "qemu-system-x86_64", env = "PORTHOLE_QEMU")]
    pub qemu: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthArg {
    Local,
    Proxmox,
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
    /// Push a VM's expiry out by the site's VM lifetime, counted from now.
    Renew {
        /// The VM's name or id.
        vm: String,
    },
    /// Exempt a VM from expiry, or with --off make it expire again (admins).
    Exempt {
        /// The VM's name or id.
        vm: String,
        /// Withdraw the exemption.
        #[arg(long)]
        off: bool,
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
    /// An OpenSSH public key file (such as ~/.ssh/id_ed25519.pub) the guest user accepts,
    /// besides the keys on your profile. Repeat for more keys. Templates only.
    #[arg(long = "ssh-key", value_name = "FILE", conflicts_with = "iso")]
    pub ssh_keys: Vec<PathBuf>,
    /// The user created in the guest; defaults to your username. Templates only.
    #[arg(long, value_name = "NAME", conflicts_with = "iso")]
    pub guest_user: Option<String>,
    /// The node to run it on (admins); by default the least-loaded node with room.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
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
    /// Make a template a node keeps (a Proxmox template VM) a porthole template.
    Link {
        /// The template's name in porthole.
        name: String,
        /// The node that keeps it.
        #[arg(long)]
        node: String,
        /// The node's name for it: the template VM's VMID.
        #[arg(long)]
        vmid: String,
    },
    /// Delete a template no VM uses.
    #[command(alias = "rm")]
    Delete {
        /// The template's name.
        name: String,
    },
    /// Let members create VMs from a template, or with --revoke stop them (admins).
    Approve {
        /// The template's name.
        name: String,
        /// Withdraw the approval; existing VMs are not touched.
        #[arg(long)]
        revoke: bool,
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
    /// Let members boot an ISO, or with --revoke stop them (admins).
    Approve {
        /// The ISO's name.
        name: String,
        /// Withdraw the approval; existing VMs are not touched.
        #[arg(long)]
        revoke: bool,
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
    /// Show who you are logged in as, with your limits and what you use.
    Me,
    /// List every account with its limits and usage (admins).
    #[command(alias = "ls")]
    List,
    /// Show one account: role, groups, limits and where they come from, usage, lockout.
    Show {
        /// The login name.
        username: String,
    },
    /// Set a user's own limits (admins). Parts not given keep their current setting;
    /// `inherit` clears one, so it comes from the user's groups or the site default.
    Limits {
        /// The login name.
        username: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Change a user's role, email or password, or lift a lockout (admins).
    Set {
        /// The login name.
        username: String,
        /// member or admin.
        #[arg(long)]
        role: Option<String>,
        /// Where reminders go; "" removes it.
        #[arg(long)]
        email: Option<String>,
        /// Set a new password, read from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Lift a lockout after too many wrong passwords.
        #[arg(long)]
        unlock: bool,
    },
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

/// One limit on the command line: a number, or `inherit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitValue {
    /// Clear the override; inherit from the level below.
    Inherit,
    /// This many.
    Set(u64),
}

fn parse_limit(text: &str) -> Result<LimitValue, String> {
    if text == "inherit" {
        return Ok(LimitValue::Inherit);
    }
    text.parse()
        .map(LimitValue::Set)
        .map_err(|_| format!("{text:?} is neither a whole number nor `inherit`"))
}

/// Limits to change; each a number or `inherit`.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Cores of running VMs, or `inherit`.
    #[arg(long, value_name = "N|inherit", value_parser = parse_limit)]
    pub cores: Option<LimitValue>,
    /// MiB of memory of running VMs, or `inherit`.
    #[arg(long, value_name = "MIB|inherit", value_parser = parse_limit)]
    pub memory: Option<LimitValue>,
    /// GiB of disk over all VMs, or `inherit`.
    #[arg(long, value_name = "GIB|inherit", value_parser = parse_limit)]
    pub disk: Option<LimitValue>,
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List groups with their limits and members.
    #[command(alias = "ls")]
    List,
    /// Make a group.
    Create {
        /// 1 to 64 characters of a-z, 0-9, '.', '_' and '-'.
        name: String,
    },
    /// Remove a group; its members keep their accounts.
    #[command(alias = "rm")]
    Delete {
        /// The group's name.
        name: String,
    },
    /// Set a group's limits. Parts not given keep their current setting; `inherit` clears
    /// one, so it comes from the site default.
    Limits {
        /// The group's name.
        name: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Add a user to a group.
    Add {
        /// The group's name.
        name: String,
        /// The user's login name.
        username: String,
    },
    /// Take a user out of a group.
    Remove {
        /// The group's name.
        name: String,
        /// The user's login name.
        username: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SshKeyCommand {
    /// List the keys on your profile.
    #[command(alias = "ls")]
    List,
    /// Add a public key from an OpenSSH .pub file, such as ~/.ssh/id_ed25519.pub.
    Add {
        /// The .pub file.
        file: PathBuf,
        /// A label; defaults to the key's comment.
        #[arg(long, short)]
        name: Option<String>,
    },
    /// Remove a key, named by its id, fingerprint (SHA256:...) or label.
    #[command(alias = "rm")]
    Delete {
        /// Its id, fingerprint or label.
        key: String,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// How many records, newest first (1 to 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Only this user's records (`porthole` for the plane's own).
    #[arg(long)]
    pub actor: Option<String>,
}
