//! How the client decides to trust a PVE server's certificate.
//!
//! A PVE node serves a certificate signed by its cluster's own CA
//! (`/etc/pve/pve-root-ca.pem`), so the system's roots usually do not apply. The choices:
//! - [`TlsOptions::System`]: the platform's trust store (for nodes with an ACME
//!   certificate);
//! - [`TlsOptions::CaFile`]: a PEM file of CA certificates, e.g. `pve-root-ca.pem`,
//!   checked with the host name as usual;
//! - [`TlsOptions::Fingerprint`]: the SHA-256 fingerprint of the server's own certificate,
//!   as the PVE GUI shows it (Node → Certificates). The chain and host name are not
//!   checked, but the certificate must match exactly, and the handshake signature is still
//!   verified so the server must hold its private key;
//! - [`TlsOptions::Insecure`]: accept any certificate. Only for tests and labs; it must be
//!   asked for by name.
//!
//! [`TlsOptions::client_config`] builds the rustls configuration; the HTTP client uses it,
//! and so can a gateway opening `vncwebsocket` to the same server.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// A failure to set up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file could not be read or held no certificate.
    #[error(
        "could not load the CA file {path}: {detail}; give a PEM file such as /etc/pve/pve-root-ca.pem"
    )]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The fingerprint is not 32 bytes of hex.
    #[error(
        "invalid certificate fingerprint: expected a SHA-256 fingerprint, 64 hex digits with or \
         without colons (as the PVE GUI shows under Node → System → Certificates)"
    )]
    Fingerprint,
    /// rustls refused the configuration.
    #[error("could not configure TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The SHA-256 fingerprint of a server certificate.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CertFingerprint([u8; 32]);

impl CertFingerprint {
    /// The fingerprint of a DER certificate.
    #[must_use]
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// The raw digest.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for CertFingerprint {
    type Err = TlsError;

    /// Parses hex, with or without `:` separators, in either case; a `sha256:` prefix is
    /// allowed.
    fn from_str(s: &str) -> Result<Self, TlsError> {
        let s = s.trim();
        let s = s
            .strip_prefix("sha256:")
            .or_else(|| s.strip_prefix("SHA256:"))
            .unwrap_or(s);
        let digits: String = s.chars().filter(|c| *c != ':').collect();
        let bytes = hex::decode(digits).map_err(|_| TlsError::Fingerprint)?;
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| TlsError::Fingerprint)
    }
}

impl fmt::Display for CertFingerprint {
    /// Upper-case, colon-separated, as PVE shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertFingerprint({self})")
    }
}

/// Which server certificates to trust.
#[derive(Debug, Clone, Default)]
pub enum TlsOptions {
    /// The platform's trust store.
    #[default]
    System,
    /// CA certificates from a PEM file.
    CaFile(PathBuf),
    /// CA certificates given as PEM text (as stored with a node).
    CaPem(String),
    /// Exactly the certificate with this SHA-256 fingerprint.
    Fingerprint(CertFingerprint),
    /// Any certificate at all. Never use this outside tests and isolated labs.
    Insecure,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl TlsOptions {
    /// Builds the rustls client configuration for these options.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?;
        let config = match self {
            Self::System => {
                let verifier = rustls_platform_verifier::Verifier::new(Arc::clone(&provider))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
                    .with_no_client_auth()
            }
            Self::CaFile(path) => {
                let roots = load_roots(path, None)?;
                builder
                    .with_webpki_verifier(webpki_verifier(roots, &provider, path)?)
                    .with_no_client_auth()
            }
            Self::CaPem(pem) => {
                let path = PathBuf::from("the CA certificate given");
                let roots = load_roots(&path, Some(pem.as_bytes()))?;
                builder
                    .with_webpki_verifier(webpki_verifier(roots, &provider, &path)?)
                    .with_no_client_auth()
            }
            Self::Fingerprint(fingerprint) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedCertVerifier::new(
                    Some(*fingerprint),
                    &provider,
                )))
                .with_no_client_auth(),
            Self::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedCertVerifier::new(
                    None, &provider,
                )))
                .with_no_client_auth(),
        };
        Ok(config)
    }
}

/// A verifier trusting `roots`; `path` names them in errors.
fn webpki_verifier(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
    path: &Path,
) -> Result<Arc<rustls::client::WebPkiServerVerifier>, TlsError> {
    rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(provider),
    )
    .build()
    .map_err(|e| TlsError::CaFile {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// The certificates in the PEM file at `path`, or in `pem` if given (`path` then only
/// names it in errors).
fn load_roots(path: &PathBuf, pem: Option<&[u8]>) -> Result<RootCertStore, TlsError> {
    let err = |detail: String| TlsError::CaFile {
        path: path.clone(),
        detail,
    };
    let mut roots = RootCertStore::empty();
    let certs: Vec<_> = match pem {
        Some(pem) => CertificateDer::pem_slice_iter(pem).collect(),
        None => CertificateDer::pem_file_iter(path)
            .map_err(|e| err(e.to_string()))?
            .collect(),
    };
    for cert in certs {
        let cert = cert.map_err(|e| err(e.to_string()))?;
        roots.add(cert).map_err(|e| err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(err("it holds no certificate".to_owned()));
    }
    Ok(roots)
}

/// Trusts one certificate by its SHA-256 fingerprint (or, with no fingerprint, any
/// certificate), while still checking that the server signed the handshake with the key
/// of the certificate it presented.
#[derive(Debug)]
pub struct PinnedCertVerifier {
    expected: Option<CertFingerprint>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedCertVerifier {
    /// A verifier that accepts only `expected`, or anything when `None` (insecure mode).
    #[must_use]
    pub fn new(expected: Option<CertFingerprint>, provider: &CryptoProvider) -> Self {
        Self {
            expected,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(expected) = self.expected else {
            return Ok(ServerCertVerified::assertion());
        };
        let actual = CertFingerprint::of_der(end_entity.as_ref());
        if actual == expected {
            Ok(ServerCertVerified::assertion())
        } else {
            tracing::warn!(
                %expected, %actual,
                "Proxmox VE server certificate does not match the pinned fingerprint"
            );
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_pve_and_plain_forms() {
        let colons = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";
        let a: CertFingerprint = colons.parse().unwrap();
        let b: CertFingerprint = colons.replace(':', "").to_lowercase().parse().unwrap();
        let c: CertFingerprint = format!("sha256:{}", colons.replace(':', ""))
            .parse()
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.to_string(), colons);
        assert!("AB:CD".parse::<CertFingerprint>().is_err());
        assert!("zz".repeat(32).parse::<CertFingerprint>().is_err());
    }

    #[test]
    fn missing_ca_file_names_the_file() {
        let err = TlsOptions::CaFile("/nonexistent/pve-root-ca.pem".into())
            .client_config()
            .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/pve-root-ca.pem"),
            "{err}"
        );
    }

    #[test]
    fn every_mode_builds() {
        TlsOptions::Insecure.client_config().unwrap();
        TlsOptions::Fingerprint(CertFingerprint::of_der(b"x"))
            .client_config()
            .unwrap();
    }
}
