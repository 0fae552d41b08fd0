//! `porthole serve`.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use porthole_core::Limits;
use porthole_gateway::SessionPolicy;
use porthole_plane::{
    AccelSetting, AccessorSettings, AgentSettings, ConsoleSettings, ExpirySettings, LocalNode,
    Overcommit, Plane, PlaneConfig, PortalSettings, Trust, check_url,
};
use porthole_qemu::Accel;
use tracing_subscriber::EnvFilter;

use porthole_agent::enrol::JoinToken;
use porthole_agent::run::AgentOptions;

use crate::cli::{AccelArg, AgentArgs, AuthArg, ServeArgs};

/// Logs to stderr, filtered by `PORTHOLE_LOG`.
fn init_logging() {
    let filter = EnvFilter::try_from_env("PORTHOLE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// `porthole agent`.
pub async fn agent(args: &AgentArgs) -> anyhow::Result<()> {
    init_logging();
    let join = match &args.join {
        Some(token) => Some(
            token
                .parse::<JoinToken>()
                .map_err(|e| anyhow::anyhow!("--join: {e}"))?,
        ),
        None => None,
    };
    let options = AgentOptions {
        plane: args.plane.clone(),
        join,
        listen: args.listen,
        advertise: args.advertise.clone(),
        data_dir: args.data_dir.clone(),
        qemu: args.qemu.clone(),
        accel: accel_setting(args.accel),
    };
    porthole_agent::run::run(options, shutdown_signal()).await
}

fn accel_setting(accel: AccelArg) -> Option<Accel> {
    match accel {
        AccelArg::Auto => None,
        AccelArg::Kvm => Some(Accel::Kvm),
        AccelArg::Tcg => Some(Accel::Tcg),
    }
}

pub async fn run(args: &ServeArgs) -> anyhow::Result<()> {
    init_logging();

    let config = PlaneConfig {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        public_url: args.public_url.clone(),
        demo_guest: args.demo.then(|| args.demo_guest.clone()),
        accel: accel_setting(args.accel).map_or(AccelSetting::Auto, AccelSetting::Fixed),
        qemu: args.qemu.clone(),
        token_ttl: Duration::from_secs(u64::from(args.token_days) * 86_400),
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
        admin_password: std::env::var("PORTHOLE_ADMIN_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty()),
        consoles: ConsoleSettings {
            policy: SessionPolicy {
                ping_interval: Duration::from_secs(args.console_ping_interval.max(1)),
                idle_timeout: Duration::from_secs(args.console_idle_timeout.max(1)),
                max_duration: Duration::from_secs(args.console_max_duration.max(1)),
            },
            ticket_ttl: Duration::from_secs(args.console_ticket_ttl),
            sessions_per_user: args.console_sessions_per_user.max(1),
        },
        portal: PortalSettings {
            default_limits: Limits {
                cores: args.default_cores,
                memory_mib: args.default_memory_mib,
                disk_gib: args.default_disk_gib,
            },
            vm_lifetime: Duration::from_secs(args.vm_lifetime_days * 86_400),
            max_login_failures: args.login_max_failures,
            lockout: Duration::from_secs(args.login_lockout),
            logins_per_minute_per_address: args.logins_per_minute,
            expiry: ExpirySettings {
                reminder_days: args.expiry_reminder_days.clone(),
                grace: Duration::from_secs(args.expiry_grace_days * 86_400),
                interval: Duration::from_secs(args.expiry_interval),
                summary_hour: args.expiry_summary_hour,
            },
            smtp: args
                .smtp_url
                .clone()
                .map(|url| (url, args.smtp_from.clone())),
        },
        clock_file: args.clock_file.clone(),
        accessor: accessor(args)?,
        agents: AgentSettings {
            listen: args.agent_listen,
            certificate_ttl: Duration::from_secs(args.agent_cert_ttl),
            join_ttl: Duration::from_secs(args.join_token_ttl),
        },
        local_node: if args.no_local_node {
            LocalNode::Off
        } else {
            LocalNode::Qemu
        },
        overcommit: {
            let overcommit = Overcommit {
                cpu: args.cpu_overcommit,
                memory: args.memory_overcommit,
                disk: args.disk_overcommit,
            };
            overcommit
                .validate()
                .map_err(|e| anyhow::anyhow!("--{}: {}", e.field.replace('_', "-"), e.problem))?;
            overcommit
        },
    };
    let plane = Plane::open(config).await?;
    if let Some(password) = &plane.generated_admin_password {
        // Shown exactly once, on stderr, never through the log.
        eprintln!(
            "\nporthole: created the admin account.\n  username: admin\n  password: {password}\n\
             This password is shown only now. Log in with `porthole login`.\n"
        );
    }
    let address = plane.local_addr()?;
    eprintln!(
        "porthole: serving on http://{address} (guests run under {})",
        plane.accel().as_str()
    );
    if let Some(agents) = plane.agent_addr() {
        eprintln!("porthole: agents join at https://{agents}");
    }
    plane.serve(shutdown_signal()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM can be handled");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("stopping; VMs keep running");
}

/// Accessor mode's settings, checked, if `--auth proxmox`.
fn accessor(args: &ServeArgs) -> anyhow::Result<Option<AccessorSettings>> {
    if args.auth != AuthArg::Proxmox {
        anyhow::ensure!(
            args.proxmox_url.is_none(),
            "--proxmox-url needs --auth proxmox"
        );
        return Ok(None);
    }
    let url = args.proxmox_url.clone().unwrap_or_default();
    check_url(&url).map_err(|e| anyhow::anyhow!("--proxmox-url: {}", e.problem))?;
    let ca = match &args.proxmox_ca {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --proxmox-ca {}", path.display()))?,
        ),
        None => None,
    };
    let trust = Trust::choose(ca, args.proxmox_fingerprint.clone(), args.proxmox_insecure)
        .map_err(|e| anyhow::anyhow!("--proxmox-{}: {}", e.field, e.problem))?;
    Ok(Some(AccessorSettings {
        url,
        trust,
        default_realm: args.proxmox_realm.clone(),
    }))
}
