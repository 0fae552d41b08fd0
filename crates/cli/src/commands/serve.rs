//! `porthole serve`.

use std::io::IsTerminal;
use std::time::Duration;

use porthole_core::Limits;
use porthole_gateway::SessionPolicy;
use porthole_plane::{
    AccelSetting, ConsoleSettings, ExpirySettings, Plane, PlaneConfig, PortalSettings,
};
use porthole_qemu::Accel;
use tracing_subscriber::EnvFilter;

use crate::cli::{AccelArg, ServeArgs};

pub async fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_env("PORTHOLE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let config = PlaneConfig {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        public_url: args.public_url.clone(),
        demo_guest: args.demo.then(|| args.demo_guest.clone()),
        accel: match args.accel {
            AccelArg::Auto => AccelSetting::Auto,
            AccelArg::Kvm => AccelSetting::Fixed(Accel::Kvm),
            AccelArg::Tcg => AccelSetting::Fixed(Accel::Tcg),
        },
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
