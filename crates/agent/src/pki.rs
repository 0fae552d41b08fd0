//! The plane's certificate authority and the identities its certificates carry.
//!
//! The CA lives in two files (`ca.crt`, `ca.key`) in the plane's state directory. It signs
//! the agents' keys (from CSRs, choosing the identity itself) and the plane's own key.

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber,
    SubjectPublicKeyInfo,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer, DnsName};
use sha2::{Digest as _, Sha256};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer as _;

/// The identity (DNS SAN) in the plane's certificate.
pub const PLANE_IDENTITY: &str = "plane.porthole";
const NODE_SUFFIX: &str = ".node.porthole";
const CA_NAME: &str = "porthole plane CA";
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// What went wrong with the CA, a CSR or a certificate.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A CA file could not be read or written.
    #[error("could not {action} {}: {source}; check the directory's ownership and free space", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The CA key file is readable by other users.
    #[error("{} is accessible to other users (mode {mode:o}); run `chmod 600 {}` and start again", path.display(), path.display())]
    InsecureKey {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Only one of the two CA files exists.
    #[error("found {} but not {}; restore the missing file, or remove both to create a new CA (every agent then has to join again)", present.display(), missing.display())]
    Incomplete {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// The CA files exist but are unusable.
    #[error("the CA in {} is unusable: {reason}; restore ca.crt and ca.key from a backup", dir.display())]
    BadCa {
        /// The CA directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A certificate signing request was malformed or its signature did not verify.
    #[error("the certificate signing request is invalid: {0}; make a new one with key_and_csr")]
    Csr(String),
    /// An identity is not a DNS name.
    #[error("{0:?} is not a valid identity (a DNS name); use PLANE_IDENTITY or node_identity")]
    Identity(String),
    /// A certificate could not be parsed.
    #[error("the certificate could not be read: {0}; pass a DER or PEM X.509 certificate")]
    Cert(String),
    /// Key or certificate generation failed.
    #[error("could not make a key or certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The system's random number generator failed.
    #[error("the system random number generator failed; check the OS entropy source")]
    Random,
}

/// The identity of agent node `node` (node names are a-z0-9-): `"{node}.node.porthole"`.
pub fn node_identity(node: &str) -> String {
    format!("{node}{NODE_SUFFIX}")
}

/// The node name in an identity made by [`node_identity`], if it is one.
pub fn node_of_identity(identity: &str) -> Option<&str> {
    let node = identity.strip_suffix(NODE_SUFFIX)?;
    let valid = node
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    (!node.is_empty() && valid).then_some(node)
}

/// The plane's certificate authority: its certificate and signing key.
pub struct CertificateAuthority {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    fingerprint: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("fingerprint", &self.fingerprint)
            .field("key", &"[elided]")
            .finish()
    }
}

impl CertificateAuthority {
    /// Loads the CA from `dir` (files `ca.crt` and `ca.key`), creating it on first start: an
    /// ECDSA P-256 self-signed CA valid for 10 years, the key written with mode 0600.
    /// Refuses a `ca.key` that group or others can access.
    pub fn load_or_create(dir: &Path) -> Result<Self, PkiError> {
        let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
        match (crt.exists(), key.exists()) {
            (true, true) => {}
            (false, false) => create(dir, &crt, &key)?,
            (true, false) => {
                return Err(PkiError::Incomplete {
                    present: crt,
                    missing: key,
                });
            }
            (false, true) => {
                return Err(PkiError::Incomplete {
                    present: key,
                    missing: crt,
                });
            }
        }
        let meta = fs::metadata(&key).map_err(io("inspect", &key))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(PkiError::InsecureKey { path: key, mode });
        }
        let cert_pem = fs::read_to_string(&crt).map_err(io("read", &crt))?;
        let key_pem = fs::read_to_string(&key).map_err(io("read", &key))?;
        let bad = |reason: String| PkiError::BadCa {
            dir: dir.to_owned(),
            reason,
        };
        let cert_der = first_cert_der(&cert_pem).map_err(|e| bad(e.to_string()))?;
        let key_pair =
            KeyPair::from_pem(&key_pem).map_err(|e| bad(format!("ca.key is not a key: {e}")))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| bad(format!("ca.crt does not parse: {e}")))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key_pair.der_bytes() {
            return Err(bad("ca.key does not belong to ca.crt".into()));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key_pair)
            .map_err(|e| bad(format!("ca.crt is not a CA certificate: {e}")))?;
        Ok(Self {
            fingerprint: fingerprint(&cert_der),
            cert_der,
            cert_pem,
            issuer,
        })
    }

    /// The CA certificate as PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate as DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// SHA-256 of the CA certificate's DER, lowercase hex (64 chars). Agents pin it.
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// Signs a PEM CSR after verifying its signature, for `identity` (CN and the only DNS
    /// SAN), valid from 5 minutes ago (clock skew) until `ttl` from now. Only the CSR's
    /// public key is used; its subject and extensions are ignored.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        identity: &str,
        ttl: Duration,
    ) -> Result<Issued, PkiError> {
        let now = SystemTime::now();
        self.sign_csr_valid_between(csr_pem, identity, now - CLOCK_SKEW, now + ttl)
    }

    /// Like [`sign_csr`](Self::sign_csr), but also makes the key (for the plane's own
    /// certificate). Returns the key as PEM too.
    pub fn issue(&self, identity: &str, ttl: Duration) -> Result<(Issued, String), PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let now = SystemTime::now();
        let issued = self.sign(&key, identity, now - CLOCK_SKEW, now + ttl)?;
        Ok((issued, key.serialize_pem()))
    }

    /// Like [`sign_csr`](Self::sign_csr) with an explicit validity period (for tests, e.g.
    /// to make an expired certificate).
    pub fn sign_csr_valid_between(
        &self,
        csr_pem: &str,
        identity: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Issued, PkiError> {
        let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
            .map_err(|e| PkiError::Csr(format!("no PEM CERTIFICATE REQUEST: {e}")))?;
        let (_, csr) = X509CertificationRequest::from_der(&der)
            .map_err(|e| PkiError::Csr(format!("malformed: {e}")))?;
        csr.verify_signature()
            .map_err(|e| PkiError::Csr(format!("bad signature: {e}")))?;
        let key = SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw)
            .map_err(|e| PkiError::Csr(format!("unsupported public key: {e}")))?;
        self.sign(&key, identity, not_before, not_after)
    }

    fn sign(
        &self,
        key: &impl PublicKeyData,
        identity: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Issued, PkiError> {
        let mut params = leaf_params(identity)?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.serial_number = Some(random_serial()?);
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(key, &self.issuer)?;
        let info = cert_info(cert.der())?;
        Ok(Issued {
            cert_pem: cert.pem(),
            serial: info.serial,
            not_after: info.not_after,
        })
    }
}

/// A certificate the CA issued.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its serial number, lowercase hex without leading zero bytes.
    pub serial: String,
    /// When it expires (whole seconds, as written in the certificate).
    pub not_after: SystemTime,
}

/// A new ECDSA P-256 key and a CSR for `identity`, both PEM: `(key, csr)`.
pub fn key_and_csr(identity: &str) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let csr = leaf_params(identity)?.serialize_request(&key)?.pem()?;
    Ok((key.serialize_pem(), csr))
}

/// What porthole reads from a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// The serial number, lowercase hex without leading zero bytes (as [`Issued::serial`]).
    pub serial: String,
    /// The first DNS subject alternative name.
    pub identity: Option<String>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

/// Reads the serial, identity and validity of a DER certificate.
pub fn cert_info(der: &[u8]) -> Result<CertInfo, PkiError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::Cert(e.to_string()))?;
    let sans = cert
        .subject_alternative_name()
        .map_err(|e| PkiError::Cert(e.to_string()))?;
    let identity = sans
        .into_iter()
        .flat_map(|ext| &ext.value.general_names)
        .find_map(|name| match name {
            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            _ => None,
        });
    let validity = cert.validity();
    Ok(CertInfo {
        serial: serial_hex(cert.raw_serial()),
        identity,
        not_before: validity.not_before.to_datetime().into(),
        not_after: validity.not_after.to_datetime().into(),
    })
}

/// The first certificate in a PEM text, as DER.
pub fn first_cert_der(pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or_else(|| PkiError::Cert("no PEM CERTIFICATE block found".into()))?
        .map_err(|e| PkiError::Cert(e.to_string()))
}

/// SHA-256 of DER bytes, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode(&raw[start..])
}

/// A random positive 16-byte serial whose first byte is neither zero nor has the sign bit.
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| PkiError::Random)?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Parameters naming `identity` as common name and only DNS SAN.
fn leaf_params(identity: &str) -> Result<CertificateParams, PkiError> {
    DnsName::try_from(identity).map_err(|_| PkiError::Identity(identity.to_owned()))?;
    let dns = identity
        .try_into()
        .map_err(|_| PkiError::Identity(identity.to_owned()))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, identity);
    params.subject_alt_names = vec![SanType::DnsName(dns)];
    Ok(params)
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PkiError {
    let path = path.to_owned();
    move |source| PkiError::Io {
        action,
        path,
        source,
    }
}

/// Makes a new CA in `dir`, writing the key (mode 0600, never wider) before the certificate.
fn create(dir: &Path, crt: &Path, key: &Path) -> Result<(), PkiError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("create", dir))?;
    let key_pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial()?);
    let now = SystemTime::now();
    params.not_before = (now - CLOCK_SKEW).into();
    params.not_after = (now + CA_VALIDITY).into();
    let cert = params.self_signed(&key_pair)?;
    write_new(key, key_pair.serialize_pem().as_bytes(), 0o600)?;
    write_new(crt, cert.pem().as_bytes(), 0o644)
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io("create", path))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(io("write", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> (tempfile::TempDir, CertificateAuthority) {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(&dir.path().join("pki")).unwrap();
        (dir, ca)
    }

    fn der_of(pem: &str) -> CertificateDer<'static> {
        first_cert_der(pem).unwrap()
    }

    #[test]
    fn identities_round_trip() {
        assert_eq!(node_identity("hv-1"), "hv-1.node.porthole");
        assert_eq!(node_of_identity("hv-1.node.porthole"), Some("hv-1"));
        assert_eq!(node_of_identity(PLANE_IDENTITY), None);
        assert_eq!(node_of_identity(".node.porthole"), None);
        assert_eq!(node_of_identity("a.b.node.porthole"), None);
    }

    #[test]
    fn ca_is_created_private_and_reloaded() {
        let (dir, ca) = ca();
        let pki = dir.path().join("pki");
        let mode = |p: &str| fs::metadata(pki.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("ca.key"), 0o600);
        assert_eq!(mode("ca.crt"), 0o644);
        assert_eq!(ca.fingerprint().len(), 64);
        assert_eq!(ca.fingerprint(), fingerprint(ca.cert_der()));
        assert!(!format!("{ca:?}").contains("PRIVATE"));
        let again = CertificateAuthority::load_or_create(&pki).unwrap();
        assert_eq!(again.fingerprint(), ca.fingerprint());

        fs::set_permissions(pki.join("ca.key"), fs::Permissions::from_mode(0o644)).unwrap();
        let err = CertificateAuthority::load_or_create(&pki)
            .unwrap_err()
            .to_string();
        assert!(err.contains("chmod 600") && err.contains("ca.key"), "{err}");

        fs::remove_file(pki.join("ca.key")).unwrap();
        let err = CertificateAuthority::load_or_create(&pki).unwrap_err();
        assert!(matches!(err, PkiError::Incomplete { .. }), "{err}");
    }

    #[test]
    fn ca_certificate_is_a_ca() {
        let (_dir, ca) = ca();
        let (_, cert) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
        assert!(cert.is_ca());
        assert_eq!(cert.subject().to_string(), "CN=porthole plane CA");
    }

    #[test]
    fn sign_csr_takes_identity_from_the_argument() {
        let (_dir, ca) = ca();
        let (_key, csr) = key_and_csr("evil.node.porthole").unwrap();
        let issued = ca
            .sign_csr(&csr, "a.node.porthole", Duration::from_secs(3600))
            .unwrap();
        let der = der_of(&issued.cert_pem);
        let info = cert_info(&der).unwrap();
        assert_eq!(info.identity.as_deref(), Some("a.node.porthole"));
        assert_eq!(info.serial, issued.serial);
        assert_eq!(info.not_after, issued.not_after);
        assert_eq!(issued.serial.len(), 32);
        assert!(!String::from_utf8_lossy(&der).contains("evil"));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(!cert.is_ca());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        let skew = SystemTime::now().duration_since(info.not_before).unwrap();
        assert!(
            skew >= Duration::from_secs(299) && skew < Duration::from_secs(400),
            "{skew:?}"
        );
    }

    #[test]
    fn serials_differ_and_round_trip() {
        let (_dir, ca) = ca();
        let (a, _) = ca.issue(PLANE_IDENTITY, Duration::from_secs(60)).unwrap();
        let (b, _) = ca.issue(PLANE_IDENTITY, Duration::from_secs(60)).unwrap();
        assert_ne!(a.serial, b.serial);
        assert_eq!(cert_info(&der_of(&a.cert_pem)).unwrap().serial, a.serial);
        assert_eq!(serial_hex(&[0, 0x80, 1]), "8001");
        assert_eq!(serial_hex(&[0]), "00");
    }

    #[test]
    fn tampered_csr_is_refused() {
        let (_dir, ca) = ca();
        let (_key, csr) = key_and_csr("a.node.porthole").unwrap();
        let mut der = CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
            .unwrap()
            .to_vec();
        let last = der.len() - 5; // inside the signature, the last field
        der[last] ^= 0x01;
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der);
        let tampered = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n"
        );
        let err = ca
            .sign_csr(&tampered, "a.node.porthole", Duration::from_secs(60))
            .unwrap_err();
        assert!(
            matches!(err, PkiError::Csr(ref m) if m.contains("signature")),
            "{err}"
        );
        assert!(
            ca.sign_csr("garbage", "a.node.porthole", Duration::from_secs(60))
                .is_err()
        );
        assert!(
            ca.sign_csr(&csr, "not a name", Duration::from_secs(60))
                .is_err()
        );
    }
}
