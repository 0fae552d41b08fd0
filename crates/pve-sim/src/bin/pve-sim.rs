//! `pve-sim`: serves the Proxmox VE API simulator on an address, for debugging clients by
//! hand. Users: `root@pam` (password `root`) and `alice@pve` (password `alice`, VM user on
//! pool `alice`). VMs run on the fake backend, or on QEMU with `--qemu DIR`.

use std::sync::Arc;

use clap::Parser;
use porthole_pve_sim::{Backend, FakeBackend, PveSim, QemuBackend, SimVm, VM_USER};

/// Serves a simulated Proxmox VE API.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8006")]
    listen: String,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    http: bool,
    /// Back VMs with real QEMU guests from this guest directory (e.g. target/guest).
    #[arg(long, env = "PORTHOLE_TEST_GUEST")]
    qemu: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let backend: Arc<dyn Backend> = match &args.qemu {
        Some(dir) => Arc::new(QemuBackend::new(dir).map_err(|e| anyhow::anyhow!("{e}"))?),
        None => Arc::new(FakeBackend::new()),
    };
    let mut builder = PveSim::builder()
        .user("root@pam", "root")
        .user("alice@pve", "alice")
        .acl("alice@pve", "/pool/alice", VM_USER, true)
        .vm(SimVm::new(100, "pve1", "demo").pool("alice"))
        .backend(backend);
    if args.http {
        builder = builder.plain_http();
    }
    let sim = builder.spawn(&args.listen).await?;
    tracing::info!(url = %sim.api_url(), fingerprint = %sim.fingerprint(), "pve-sim serving");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
