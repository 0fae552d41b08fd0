//! `porthole agent`: join the plane once, then serve this host's VMs to it.
//!
//! At every start the agent tells the plane where it listens (`hello`), which also proves
//! that its certificate is still accepted: a removed node's agent is refused here and stops
//! with the plane's reason. It renews its certificate when two thirds of its life have
//! passed, and swaps it in without dropping connections.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};
use porthole_qemu::{Accel, QemuConfig, QemuDriver};
use tokio_util::sync::CancellationToken;

use porthole_image_cache::ImageCache;

use crate::enrol::{self, EnrolError, Enrolment, JoinToken, PlaneLink};
use crate::pki::{self, PLANE_IDENTITY};
use crate::server::{self, AgentService};
use crate::tls::{self, CertSlot, ClientAuth};

/// How long to wait before retrying a failed renewal.
const RENEW_RETRY: Duration = Duration::from_secs(30);

/// What `porthole agent` is told.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The plane's agent URL, `https://HOST:PORT`; needed to join.
    pub plane: Option<String>,
    /// The join token from `porthole node add`; needed once.
    pub join: Option<JoinToken>,
    /// Where the agent's API listens.
    pub listen: SocketAddr,
    /// The URL the plane reaches the agent at; by default `https://LISTEN`.
    pub advertise: Option<String>,
    /// Where the key, certificates, VMs and cached templates live.
    pub data_dir: PathBuf,
    /// The `qemu-system-x86_64` binary.
    pub qemu: PathBuf,
    /// The accelerator; probed when `None`.
    pub accel: Option<Accel>,
}

impl AgentOptions {
    /// The URL the plane reaches this agent at.
    pub fn address(&self) -> anyhow::Result<String> {
        if let Some(advertise) = &self.advertise {
            let url = url::Url::parse(advertise)
                .with_context(|| format!("--advertise {advertise:?} is not a URL"))?;
            if url.scheme() != "https" || url.host_str().is_none() {
                bail!("--advertise must be https://HOST:PORT");
            }
            return Ok(advertise.trim_end_matches('/').to_owned());
        }
        if self.listen.ip().is_unspecified() {
            bail!(
                "--listen {} accepts on every address, so the plane cannot be told which one \
                 reaches this host; give --advertise https://HOST:{}",
                self.listen,
                self.listen.port()
            );
        }
        Ok(format!("https://{}", self.listen))
    }
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(
    options: AgentOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = options.address()?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&options.data_dir)
        .with_context(|| format!("creating {}", options.data_dir.display()))?;
    let dir = options.data_dir.canonicalize()?;
    let _lock = lock(&dir)?;
    let enrolment = enrolment(&options, &dir, &address).await?;
    let info = enrolment.certificate()?;
    if info.not_after <= SystemTime::now() {
        bail!(
            "this agent's certificate expired; on the plane, run `porthole node remove {node}` \
             and `porthole node add {node}`, then start the agent with the new --join token \
             and an empty --data-dir",
            node = enrolment.node
        );
    }
    let link = PlaneLink::new(&enrolment)?;
    match link.hello(&address).await {
        Ok(()) => {
            tracing::info!(node = %enrolment.node, plane = %enrolment.plane, %address, "the plane accepted this agent");
        }
        Err(EnrolError::Unreachable { url, source }) => {
            tracing::warn!(plane = %url, error = %source, "the plane does not answer now; serving anyway");
        }
        Err(e) => return Err(e).context("the plane refused this agent"),
    }

    let accel = match options.accel {
        Some(accel) => accel,
        None => {
            let choice = porthole_qemu::accel::probe(&options.qemu, &dir).await;
            tracing::info!(accel = choice.accel.as_str(), reason = %choice.reason, "chose the guest accelerator");
            choice.accel
        }
    };
    let (vms, templates, isos) = enrol::data_paths(&dir);
    let images = Arc::new(ImageCache::new(templates, isos, Arc::clone(&link) as _));
    let driver = QemuDriver::open(QemuConfig {
        root: vms.clone(),
        qemu: options.qemu.clone(),
        accel,
        images: Arc::clone(&images) as _,
    })
    .await
    .map_err(|e| anyhow::anyhow!("opening the QEMU node: {e}"))?;
    let service = AgentService::new(Arc::new(driver), images, vms);

    let ca = pki::first_cert_der(&enrolment.ca_pem)?;
    let slot = CertSlot::new(&enrolment.identity()?)?;
    let auth = ClientAuth::Required {
        name: PLANE_IDENTITY.to_owned(),
        check: None,
    };
    let config = tls::server_config_with(&ca, Arc::clone(&slot), auth)?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    tracing::info!(listen = %options.listen, node = %enrolment.node, "the agent is serving");

    let stop = CancellationToken::new();
    let renewal = tokio::spawn(renew_forever(
        enrolment,
        dir,
        address,
        link,
        slot,
        stop.clone(),
    ));
    let serving = tokio::spawn(tls::serve(
        listener,
        Arc::new(config),
        server::router(service),
        stop.clone(),
    ));
    shutdown.await;
    stop.cancel();
    let _ = tokio::join!(serving, renewal);
    Ok(())
}

/// The stored enrolment, or a new one made with the join token.
async fn enrolment(
    options: &AgentOptions,
    dir: &std::path::Path,
    address: &str,
) -> anyhow::Result<Enrolment> {
    if let Some(enrolment) = Enrolment::load(dir)? {
        if let Some(token) = &options.join
            && token.node != enrolment.node
        {
            bail!(
                "{} already holds the enrolment of node {:?}; use another --data-dir to join \
                 as {:?}",
                dir.display(),
                enrolment.node,
                token.node
            );
        }
        return Ok(enrolment);
    }
    let (Some(plane), Some(token)) = (&options.plane, &options.join) else {
        bail!(
            "this agent has not joined a plane yet: run it with --plane https://PLANE:PORT \
             --join TOKEN, where TOKEN comes from `porthole node add NAME` on the plane"
        );
    };
    let enrolment = enrol::join(plane, token, address)
        .await
        .context("joining the plane")?;
    enrolment.save(dir)?;
    tracing::info!(node = %enrolment.node, %plane, "joined the plane");
    Ok(enrolment)
}

/// Renews the certificate each time two thirds of its life have passed.
async fn renew_forever(
    mut enrolment: Enrolment,
    dir: PathBuf,
    address: String,
    link: Arc<PlaneLink>,
    slot: Arc<CertSlot>,
    stop: CancellationToken,
) {
    loop {
        // The CA backdates certificates for clock skew; their life counts from when the
        // agent received them (the file's time), if that is later.
        let received = std::fs::metadata(dir.join("agent.crt"))
            .and_then(|m| m.modified())
            .ok();
        let wait = match enrolment.certificate() {
            Ok(info) => renewal_due(
                received.map_or(info.not_before, |r| r.max(info.not_before)),
                info.not_after,
            ),
            Err(e) => {
                tracing::error!(error = %e, "cannot read this agent's certificate");
                return;
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
        let renewed = async {
            let renewed = link.renew(&enrolment, &address).await?;
            renewed.save(&dir)?;
            link.update(&renewed)?;
            slot.replace(&renewed.identity()?)?;
            Ok::<_, EnrolError>(renewed)
        }
        .await;
        match renewed {
            Ok(renewed) => {
                enrolment = renewed;
                tracing::info!(node = %enrolment.node, "renewed this agent's certificate");
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing this agent's certificate failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(RENEW_RETRY) => {}
                    () = stop.cancelled() => return,
                }
            }
        }
    }
}

/// How long until a certificate valid from `start` to `not_after` is due for renewal: when
/// two thirds of its life have passed.
fn renewal_due(start: SystemTime, not_after: SystemTime) -> Duration {
    let life = not_after.duration_since(start).unwrap_or_default();
    let due = start + life * 2 / 3;
    due.duration_since(SystemTime::now())
        .unwrap_or_default()
        .max(Duration::from_secs(1))
}

/// Takes the data directory's lock, so two agents never drive the same VMs.
fn lock(dir: &std::path::Path) -> anyhow::Result<Flock<std::fs::File>> {
    let path = dir.join("agent.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|_| anyhow::anyhow!("another agent is using {}; stop it first", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_at_two_thirds_of_the_life() {
        let now = SystemTime::now();
        let due = renewal_due(now - Duration::from_secs(30), now + Duration::from_secs(60));
        assert!((29..=30).contains(&due.as_secs()), "{due:?}");
        let overdue = renewal_due(now - Duration::from_secs(90), now + Duration::from_secs(10));
        assert_eq!(overdue, Duration::from_secs(1));
    }

    #[test]
    fn an_address_is_needed_when_listening_everywhere() {
        let mut options = AgentOptions {
            plane: None,
            join: None,
            listen: "0.0.0.0:9443".parse().unwrap(),
            advertise: None,
            data_dir: "/x".into(),
            qemu: "/q".into(),
            accel: None,
        };
        assert!(
            options
                .address()
                .unwrap_err()
                .to_string()
                .contains("--advertise")
        );
        options.listen = "10.1.2.3:9443".parse().unwrap();
        assert_eq!(options.address().unwrap(), "https://10.1.2.3:9443");
        options.advertise = Some("http://x".into());
        assert!(options.address().is_err());
    }
}
