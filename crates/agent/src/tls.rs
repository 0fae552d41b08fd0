//! Mutual TLS 1.3 between the plane and its agents.
//!
//! Both sides trust only the plane's CA and check the identity (DNS SAN) of the other end,
//! whatever host name was dialled. [`serve`] runs an axum router over such connections and
//! hands each request the verified client certificate as a [`PeerCertificate`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    SignatureScheme,
};
use tokio_util::sync::CancellationToken;
use tower::Service as _;

use crate::pki::{self, CertInfo};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// What went wrong building a TLS configuration or client.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate or key PEM could not be read.
    #[error("could not read the {what} PEM: {reason}; pass the files issued at enrolment")]
    Pem {
        /// `"certificate"` or `"private key"`.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The CA certificate cannot be a trust anchor.
    #[error("the CA certificate is not usable as a trust anchor: {0}; check the pinned CA file")]
    BadCa(String),
    /// An expected identity is not a DNS name.
    #[error(
        "{0:?} is not a valid DNS name to expect; use pki::PLANE_IDENTITY or pki::node_identity"
    )]
    BadName(String),
    /// rustls refused the configuration (e.g. the key does not match the certificate).
    #[error("TLS configuration failed: {0}; check that the certificate and key belong together")]
    Rustls(#[from] rustls::Error),
    /// The certificate verifier could not be built.
    #[error("could not build the certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// A [`PeerCheck`] refused the other end's certificate.
    #[error("the peer certificate for {identity} was refused: {reason}")]
    PeerRefused {
        /// The peer's identity, as far as known.
        identity: String,
        /// Why the check refused it.
        reason: String,
    },
}

/// A certificate chain and its private key, from PEM.
pub struct Identity {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            certs: self.certs.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let identity = self
            .certs
            .first()
            .and_then(|c| pki::cert_info(c).ok()?.identity);
        f.debug_struct("Identity")
            .field("identity", &identity)
            .field("chain_len", &self.certs.len())
            .field("key", &"[elided]")
            .finish()
    }
}

impl Identity {
    /// Reads a certificate chain (leaf first) and its private key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let pem_err = |what| {
            move |e: rustls::pki_types::pem::Error| TlsError::Pem {
                what,
                reason: e.to_string(),
            }
        };
        let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem_err("certificate"))?;
        if certs.is_empty() {
            let reason = "no CERTIFICATE block found".into();
            return Err(TlsError::Pem {
                what: "certificate",
                reason,
            });
        }
        let key =
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(pem_err("private key"))?;
        Ok(Self { certs, key })
    }
}

/// Decides whether a verified peer certificate is still acceptable (revocation lists etc).
/// Called after chain and name verification succeeded. `Err(reason)` refuses the handshake.
pub type PeerCheck = Arc<dyn Fn(&CertInfo) -> Result<(), String> + Send + Sync>;

/// A client config that trusts only `ca`, requires the server certificate to carry
/// `expected` as DNS name (whatever host the caller dials), then runs `check` if given, and
/// presents `identity` as client certificate if given. ALPN: http/1.1.
pub fn client_config(
    ca: &CertificateDer<'static>,
    expected: &str,
    identity: Option<&Identity>,
    check: Option<PeerCheck>,
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let inner =
        WebPkiServerVerifier::builder_with_provider(roots(ca)?, provider.clone()).build()?;
    let verifier = Arc::new(PinnedServer {
        inner,
        expected: dns_name(expected)?,
        check,
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some(id) => builder.with_client_auth_cert(id.certs.clone(), id.key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(config)
}

/// Which client certificates a server asks for.
pub enum ClientAuth {
    /// Required, signed by the CA, carrying DNS name `name`, then accepted by `check` if given.
    Required {
        /// The identity the client must carry.
        name: String,
        /// A further check, e.g. against revoked serials.
        check: Option<PeerCheck>,
    },
    /// Optional (a client without a certificate may connect, e.g. to join), but one that is
    /// offered must be signed by the CA and valid.
    Optional,
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Required { name, check } => f
                .debug_struct("Required")
                .field("name", name)
                .field("check", &check.is_some())
                .finish(),
            Self::Optional => f.write_str("Optional"),
        }
    }
}

/// The certificate a server presents, replaceable while it serves (after a renewal).
pub struct CertSlot {
    current: std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>,
}

impl fmt::Debug for CertSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CertSlot")
    }
}

impl CertSlot {
    /// A slot presenting `identity`.
    pub fn new(identity: &Identity) -> Result<Arc<CertSlot>, TlsError> {
        Ok(Arc::new(CertSlot {
            current: std::sync::RwLock::new(certified(identity)?),
        }))
    }

    /// Presents `identity` on every handshake from now on.
    pub fn replace(&self, identity: &Identity) -> Result<(), TlsError> {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = certified(identity)?;
        Ok(())
    }
}

fn certified(identity: &Identity) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
    let key = provider()
        .key_provider
        .load_private_key(identity.key.clone_key())?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(
        identity.certs.clone(),
        key,
    )))
}

impl rustls::server::ResolvesServerCert for CertSlot {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

/// A client config that accepts any server certificate, for one purpose only: fetching the
/// plane's CA certificate at join, which the caller then checks against the hash in the
/// join token before trusting anything it says.
pub fn unverified_client_config() -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(AnyServer {
        provider: Arc::clone(&provider),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(config)
}

/// See [`unverified_client_config`].
#[derive(Debug)]
struct AnyServer {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A server config presenting the certificate in `slot`, verifying clients as `auth` says,
/// ALPN http/1.1.
pub fn server_config_with(
    ca: &CertificateDer<'static>,
    slot: Arc<CertSlot>,
    auth: ClientAuth,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(client_verifier(ca, &provider, auth)?)
        .with_cert_resolver(slot);
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(config)
}

fn client_verifier(
    ca: &CertificateDer<'static>,
    provider: &Arc<CryptoProvider>,
    auth: ClientAuth,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let webpki = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider.clone());
    Ok(match auth {
        ClientAuth::Optional => webpki.allow_unauthenticated().build()?,
        ClientAuth::Required { name, check } => Arc::new(NamedClient {
            inner: webpki.build()?,
            name: dns_name(&name)?,
            check,
        }),
    })
}

/// A server config presenting `identity`, verifying clients as `auth` says, ALPN http/1.1.
pub fn server_config(
    ca: &CertificateDer<'static>,
    identity: &Identity,
    auth: ClientAuth,
) -> Result<rustls::ServerConfig, TlsError> {
    server_config_with(ca, CertSlot::new(identity)?, auth)
}

/// The verified client certificate of the connection a request came on, inserted by
/// [`serve`] as a request extension on every request (`None` when the client sent none).
#[derive(Clone, Debug)]
pub struct PeerCertificate(pub Option<Arc<CertInfo>>);

/// Serves `router` over TLS on `listener` until `shutdown` is cancelled, then lets open
/// connections finish for up to 5 s. Each request carries the [`PeerCertificate`] and the
/// peer's `ConnectInfo<SocketAddr>` as extensions; WebSocket upgrades work.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: axum::Router,
    shutdown: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a TCP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, %error, "could not set TCP_NODELAY");
        }
        let (acceptor, router, watcher) = (acceptor.clone(), router.clone(), graceful.watcher());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first());
            let peer_cert =
                PeerCertificate(cert.and_then(|c| pki::cert_info(c).ok()).map(Arc::new));
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(peer_cert.clone());
                req.extensions_mut().insert(ConnectInfo(peer));
                router.clone().call(req)
            });
            let builder = Builder::new(TokioExecutor::new()).http1_only();
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(error) = watcher.watch(conn).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open {SHUTDOWN_GRACE:?} after shutdown; dropping them");
    }
}

/// A reqwest client over `config`, with connect timeout `connect_timeout` and no proxy.
pub fn http_client(
    config: rustls::ClientConfig,
    connect_timeout: Duration,
) -> Result<reqwest::Client, TlsError> {
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .connect_timeout(connect_timeout)
        .no_proxy()
        .build()?)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots(ca: &CertificateDer<'static>) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|e| TlsError::BadCa(e.to_string()))?;
    Ok(Arc::new(roots))
}

fn dns_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    match ServerName::try_from(name.to_owned()) {
        Ok(dns @ ServerName::DnsName(_)) => Ok(dns),
        _ => Err(TlsError::BadName(name.to_owned())),
    }
}

/// Parses the verified peer certificate and runs `check` on it.
fn run_check(
    check: Option<&PeerCheck>,
    end_entity: &CertificateDer<'_>,
) -> Result<(), rustls::Error> {
    let Some(check) = check else { return Ok(()) };
    let info = pki::cert_info(end_entity)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    check(&info).map_err(|reason| {
        let identity = info
            .identity
            .clone()
            .unwrap_or_else(|| format!("serial {}", info.serial));
        tracing::info!(%identity, %reason, "peer certificate refused");
        let error = TlsError::PeerRefused { identity, reason };
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(error))))
    })
}

/// The signature methods of a verifier wrapper, delegated to its `inner` verifier.
macro_rules! delegate_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
}

/// Verifies the server against the CA and the expected name, ignoring the dialled name.
struct PinnedServer {
    inner: Arc<WebPkiServerVerifier>,
    expected: ServerName<'static>,
    check: Option<PeerCheck>,
}

impl fmt::Debug for PinnedServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedServer")
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _dialled: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            &self.expected,
            ocsp_response,
            now,
        )?;
        run_check(self.check.as_ref(), end_entity)?;
        Ok(verified)
    }

    delegate_signatures!();
}

/// Requires a client certificate from the CA carrying `name`.
struct NamedClient {
    inner: Arc<dyn ClientCertVerifier>,
    name: ServerName<'static>,
    check: Option<PeerCheck>,
}

impl fmt::Debug for NamedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedClient")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for NamedClient {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?
            .verify_is_valid_for_subject_name(&self.name)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::NotValidForName))?;
        run_check(self.check.as_ref(), end_entity)?;
        Ok(verified)
    }

    delegate_signatures!();
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::SystemTime;

    use axum::Extension;
    use axum::routing::get;

    use super::*;
    use crate::pki::{CertificateAuthority, PLANE_IDENTITY, key_and_csr, node_identity};

    const HOUR: Duration = Duration::from_secs(3600);

    struct Pki {
        _dir: tempfile::TempDir,
        ca: CertificateAuthority,
    }

    impl Pki {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let ca = CertificateAuthority::load_or_create(dir.path()).unwrap();
            Self { _dir: dir, ca }
        }

        fn identity(&self, name: &str) -> Identity {
            let (issued, key) = self.ca.issue(name, HOUR).unwrap();
            Identity::from_pem(&issued.cert_pem, &key).unwrap()
        }

        fn client(
            &self,
            expected: &str,
            identity: Option<&Identity>,
            check: Option<PeerCheck>,
        ) -> rustls::ClientConfig {
            client_config(self.ca.cert_der(), expected, identity, check).unwrap()
        }
    }

    /// Serves a router answering `/who` with the client's identity and `/addr` with its IP.
    async fn start(
        config: rustls::ServerConfig,
    ) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let who = |Extension(PeerCertificate(peer)): Extension<PeerCertificate>| async move {
            peer.and_then(|info| info.identity.clone())
                .unwrap_or_else(|| "anonymous".into())
        };
        let addr =
            |ConnectInfo(addr): ConnectInfo<SocketAddr>| async move { addr.ip().to_string() };
        let router = axum::Router::new()
            .route("/who", get(who))
            .route("/addr", get(addr));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let task = tokio::spawn(serve(listener, Arc::new(config), router, token.clone()));
        (local, token, task)
    }

    /// GETs `path` from the server at `addr` (dialled by IP, so the name check must not use it).
    async fn fetch(
        config: rustls::ClientConfig,
        addr: SocketAddr,
        path: &str,
    ) -> Result<String, reqwest::Error> {
        let client = http_client(config, Duration::from_secs(5)).unwrap();
        let request = client
            .get(format!("https://{addr}{path}"))
            .timeout(Duration::from_secs(10));
        request.send().await?.error_for_status()?.text().await
    }

    /// The identity the server at `addr` sees for this client.
    async fn who(config: rustls::ClientConfig, addr: SocketAddr) -> String {
        fetch(config, addr, "/who").await.unwrap()
    }

    /// The error chain of a GET that must fail, to check why it failed.
    async fn refusal(config: rustls::ClientConfig, addr: SocketAddr) -> String {
        let error = fetch(config, addr, "/who").await.unwrap_err();
        let mut chain = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            chain = format!("{chain}: {cause}");
            source = cause.source();
        }
        chain
    }

    fn node_server(pki: &Pki, auth: ClientAuth) -> rustls::ServerConfig {
        server_config(pki.ca.cert_der(), &pki.identity(&node_identity("a")), auth).unwrap()
    }

    fn require_plane(check: Option<PeerCheck>) -> ClientAuth {
        ClientAuth::Required {
            name: PLANE_IDENTITY.into(),
            check,
        }
    }

    #[tokio::test]
    async fn required_client_identity_is_enforced() {
        let pki = Pki::new();
        let (addr, token, task) = start(node_server(&pki, require_plane(None))).await;
        let a = node_identity("a");
        let plane = pki.identity(PLANE_IDENTITY);
        let node = pki.identity(&node_identity("b"));
        assert_eq!(
            who(pki.client(&a, Some(&plane), None), addr).await,
            PLANE_IDENTITY
        );
        assert_eq!(
            fetch(pki.client(&a, Some(&plane), None), addr, "/addr")
                .await
                .unwrap(),
            "127.0.0.1"
        );
        let err = refusal(pki.client(&a, Some(&node), None), addr).await;
        assert!(err.contains("BadCertificate"), "{err}");
        let err = refusal(pki.client(&a, None, None), addr).await;
        assert!(err.contains("CertificateRequired"), "{err}");
        // The server is a.node.porthole: expecting anything else is refused.
        let err = refusal(pki.client(&node_identity("b"), Some(&plane), None), addr).await;
        assert!(err.contains("not valid for name"), "{err}");
        token.cancel();
        tokio::time::timeout(Duration::from_secs(7), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn server_from_another_ca_is_refused() {
        let (pki, other) = (Pki::new(), Pki::new());
        let (addr, ..) = start(node_server(&other, ClientAuth::Optional)).await;
        let a = node_identity("a");
        let err = refusal(pki.client(&a, None, None), addr).await;
        assert!(err.contains("invalid peer certificate"), "{err}");
        assert_eq!(who(other.client(&a, None, None), addr).await, "anonymous");
    }

    #[tokio::test]
    async fn expired_server_certificate_is_refused() {
        let pki = Pki::new();
        let (key, csr) = key_and_csr("x.node.porthole").unwrap();
        let now = SystemTime::now();
        let issued = pki
            .ca
            .sign_csr_valid_between(&csr, "a.node.porthole", now - 2 * HOUR, now - HOUR)
            .unwrap();
        let expired = Identity::from_pem(&issued.cert_pem, &key).unwrap();
        let config = server_config(pki.ca.cert_der(), &expired, ClientAuth::Optional).unwrap();
        let (addr, ..) = start(config).await;
        let err = refusal(pki.client("a.node.porthole", None, None), addr).await;
        assert!(err.contains("expired"), "{err}");
    }

    #[tokio::test]
    async fn peer_checks_can_refuse() {
        let pki = Pki::new();
        let a = node_identity("a");
        let plane = pki.identity(PLANE_IDENTITY);
        let revoked: PeerCheck = Arc::new(|_| Err("revoked".into()));
        let seen_a: PeerCheck = Arc::new(|info| {
            if info.identity.as_deref() == Some("a.node.porthole") {
                Ok(())
            } else {
                Err("who?".into())
            }
        });

        // Client side: the server's certificate is checked.
        let (addr, ..) = start(node_server(&pki, require_plane(None))).await;
        let err = refusal(pki.client(&a, Some(&plane), Some(revoked.clone())), addr).await;
        assert!(err.contains("revoked"), "{err}");
        who(pki.client(&a, Some(&plane), Some(seen_a)), addr).await;

        // Server side: the client's certificate is checked.
        let (addr, ..) = start(node_server(&pki, require_plane(Some(revoked)))).await;
        let err = refusal(pki.client(&a, Some(&plane), None), addr).await;
        assert!(err.contains("alert"), "{err}");
        let fine: PeerCheck = Arc::new(|_| Ok(()));
        let (addr, ..) = start(node_server(&pki, require_plane(Some(fine)))).await;
        who(pki.client(&a, Some(&plane), None), addr).await;
    }

    #[tokio::test]
    async fn optional_client_auth_reports_the_peer() {
        let pki = Pki::new();
        let (addr, ..) = start(node_server(&pki, ClientAuth::Optional)).await;
        let a = node_identity("a");
        assert_eq!(who(pki.client(&a, None, None), addr).await, "anonymous");
        let b = pki.identity(&node_identity("b"));
        assert_eq!(
            who(pki.client(&a, Some(&b), None), addr).await,
            "b.node.porthole"
        );
        let stranger = Pki::new().identity(&node_identity("b"));
        let err = refusal(pki.client(&a, Some(&stranger), None), addr).await;
        assert!(err.contains("alert"), "{err}");
    }

    #[tokio::test]
    async fn tls12_clients_are_refused() {
        let pki = Pki::new();
        let (addr, ..) = start(node_server(&pki, ClientAuth::Optional)).await;
        let a = node_identity("a");
        let inner = WebPkiServerVerifier::builder_with_provider(
            roots(pki.ca.cert_der()).unwrap(),
            provider(),
        );
        let verifier = Arc::new(PinnedServer {
            inner: inner.build().unwrap(),
            expected: dns_name(&a).unwrap(),
            check: None,
        });
        let tls12 = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        let err = refusal(tls12, addr).await;
        assert!(err.contains("ProtocolVersion"), "{err}");
        assert_eq!(who(pki.client(&a, None, None), addr).await, "anonymous");
    }

    #[test]
    fn debug_output_hides_keys() {
        let pki = Pki::new();
        let (issued, key) = pki.ca.issue(PLANE_IDENTITY, HOUR).unwrap();
        let identity = Identity::from_pem(&issued.cert_pem, &key).unwrap();
        let debug = format!("{identity:?}");
        assert!(
            debug.contains(PLANE_IDENTITY) && !debug.contains("PRIVATE"),
            "{debug}"
        );
        assert!(Identity::from_pem("", &key).is_err());
        assert!(client_config(pki.ca.cert_der(), "not a name", None, None).is_err());
    }
}
