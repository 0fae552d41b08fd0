//! The agent's side of enrolment: the join token, the key and certificate it keeps, and its
//! mutual-TLS link to the plane.
//!
//! A join token is `NODE.SECRET.CAHASH`. The agent first fetches the plane's CA certificate
//! and accepts it only if its SHA-256 is `CAHASH`, so a machine in the middle cannot pose as
//! the plane; from then on it trusts that CA alone. It makes its own key, which never leaves
//! the host, and sends only a CSR with the token.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::pki::{self, PLANE_IDENTITY};
use crate::tls::{self, Identity};
use crate::wire::{Enrolled, HelloRequest, JoinRequest, Refusal, RenewRequest};

/// How long connecting to the plane may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request to the plane may take, besides image downloads.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why enrolment failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    /// The join token is not one `porthole node add` printed.
    #[error("the join token is malformed: {0}; copy it exactly as `porthole node add` printed it")]
    BadToken(&'static str),
    /// The plane's CA is not the one the token names.
    #[error(
        "the plane at {url} presented CA {actual}, but the join token names {expected}; \
         check --plane, or whether something intercepts the connection"
    )]
    WrongCa {
        /// The plane's URL.
        url: String,
        /// The token's hash.
        expected: String,
        /// What was presented.
        actual: String,
    },
    /// The plane could not be reached.
    #[error("cannot reach the plane at {url}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The plane said no.
    #[error("the plane refused to {what}: {message}")]
    Refused {
        /// What was asked.
        what: &'static str,
        /// The plane's reason.
        message: String,
    },
    /// A file in the data directory.
    #[error("{context}")]
    Io {
        /// Which file, doing what.
        context: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Keys and certificates.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// TLS set-up.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// A join token: `NODE.SECRET.CAHASH`.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// The node it admits.
    pub node: String,
    /// The one-time secret.
    pub secret: String,
    /// SHA-256 of the plane's CA certificate, hex.
    pub ca_fingerprint: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl JoinToken {
    /// The part the plane checks: `NODE.SECRET`.
    pub fn credential(&self) -> String {
        format!("{}.{}", self.node, self.secret)
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.node, self.secret, self.ca_fingerprint)
    }
}

impl FromStr for JoinToken {
    type Err = EnrolError;

    fn from_str(text: &str) -> Result<Self, EnrolError> {
        let mut parts = text.trim().split('.');
        let (Some(node), Some(secret), Some(hash), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(EnrolError::BadToken(
                "it has not three parts separated by dots",
            ));
        };
        if node.is_empty() || secret.len() < 16 {
            return Err(EnrolError::BadToken("its node or secret part is too short"));
        }
        if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(EnrolError::BadToken(
                "its last part is not a SHA-256 in hex",
            ));
        }
        Ok(JoinToken {
            node: node.to_owned(),
            secret: secret.to_owned(),
            ca_fingerprint: hash.to_ascii_lowercase(),
        })
    }
}

/// What the agent keeps in its data directory once it has joined.
#[derive(Clone)]
pub struct Enrolment {
    /// Its node name.
    pub node: String,
    /// The plane's URL.
    pub plane: String,
    /// The plane's CA, PEM.
    pub ca_pem: String,
    /// Its certificate, PEM.
    pub cert_pem: String,
    /// Its key, PEM.
    pub key_pem: String,
}

impl fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enrolment")
            .field("node", &self.node)
            .field("plane", &self.plane)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct EnrolmentFile {
    node: String,
    plane: String,
}

impl Enrolment {
    /// Reads the enrolment in `dir`, if the agent has joined.
    pub fn load(dir: &Path) -> Result<Option<Enrolment>, EnrolError> {
        let meta = dir.join("agent.json");
        if !meta.exists() {
            return Ok(None);
        }
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| EnrolError::Io {
                context: format!("reading {}", path.display()),
                source,
            })
        };
        let file: EnrolmentFile =
            serde_json::from_str(&read("agent.json")?).map_err(|e| EnrolError::Io {
                context: format!("reading {}", meta.display()),
                source: e.into(),
            })?;
        Ok(Some(Enrolment {
            node: file.node,
            plane: file.plane,
            ca_pem: read("ca.crt")?,
            cert_pem: read("agent.crt")?,
            key_pem: read("agent.key")?,
        }))
    }

    /// Writes it to `dir`: the key with mode 0600, each file replaced atomically.
    pub fn save(&self, dir: &Path) -> Result<(), EnrolError> {
        let meta = serde_json::to_string_pretty(&EnrolmentFile {
            node: self.node.clone(),
            plane: self.plane.clone(),
        })
        .unwrap_or_default();
        write_atomically(&dir.join("agent.key"), &self.key_pem, 0o600)?;
        write_atomically(&dir.join("agent.crt"), &self.cert_pem, 0o644)?;
        write_atomically(&dir.join("ca.crt"), &self.ca_pem, 0o644)?;
        write_atomically(&dir.join("agent.json"), &meta, 0o644)
    }

    /// Its key and certificate, for TLS.
    pub fn identity(&self) -> Result<Identity, EnrolError> {
        Ok(Identity::from_pem(&self.cert_pem, &self.key_pem)?)
    }

    /// What its certificate says.
    pub fn certificate(&self) -> Result<pki::CertInfo, EnrolError> {
        Ok(pki::cert_info(&pki::first_cert_der(&self.cert_pem)?)?)
    }
}

fn write_atomically(path: &Path, text: &str, mode: u32) -> Result<(), EnrolError> {
    let temporary = path.with_extension("new");
    let io = |source| EnrolError::Io {
        context: format!("writing {}", path.display()),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}

/// The agent's mutual-TLS client for the plane.
#[derive(Debug)]
pub struct PlaneLink {
    url: String,
    client: RwLock<reqwest::Client>,
}

impl PlaneLink {
    /// A link to the plane `enrolment` names, presenting its certificate.
    pub fn new(enrolment: &Enrolment) -> Result<Arc<PlaneLink>, EnrolError> {
        Ok(Arc::new(PlaneLink {
            url: enrolment.plane.trim_end_matches('/').to_owned(),
            client: RwLock::new(client_for(enrolment)?),
        }))
    }

    /// Presents `enrolment`'s (renewed) certificate from now on.
    pub fn update(&self, enrolment: &Enrolment) -> Result<(), EnrolError> {
        let client = client_for(enrolment)?;
        *self.client.write().unwrap_or_else(|e| e.into_inner()) = client;
        Ok(())
    }

    /// A GET of `path` on the plane.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client().get(format!("{}{path}", self.url))
    }

    fn client(&self) -> reqwest::Client {
        self.client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Tells the plane where the agent listens, which also proves its certificate is still
    /// accepted.
    pub async fn hello(&self, address: &str) -> Result<(), EnrolError> {
        let request = HelloRequest {
            address: address.to_owned(),
        };
        let response = self
            .client()
            .post(format!("{}/agent/v1/hello", self.url))
            .timeout(REQUEST_TIMEOUT)
            .json(&request)
            .send()
            .await;
        answer::<serde_json::Value>(&self.url, "accept this agent", response).await?;
        Ok(())
    }

    /// Gets a new certificate for a new key, before the current one expires.
    pub async fn renew(&self, current: &Enrolment, address: &str) -> Result<Enrolment, EnrolError> {
        let (key_pem, csr) = pki::key_and_csr(&pki::node_identity(&current.node))?;
        let request = RenewRequest {
            csr,
            address: address.to_owned(),
        };
        let response = self
            .client()
            .post(format!("{}/agent/v1/renew", self.url))
            .timeout(REQUEST_TIMEOUT)
            .json(&request)
            .send()
            .await;
        let enrolled: Enrolled = answer(&self.url, "renew the certificate", response).await?;
        Ok(Enrolment {
            cert_pem: enrolled.certificate,
            key_pem,
            ..current.clone()
        })
    }
}

fn client_for(enrolment: &Enrolment) -> Result<reqwest::Client, EnrolError> {
    let ca = pki::first_cert_der(&enrolment.ca_pem)?;
    let identity = enrolment.identity()?;
    let config = tls::client_config(&ca, PLANE_IDENTITY, Some(&identity), None)?;
    Ok(tls::http_client(config, CONNECT_TIMEOUT)?)
}

/// Reads the plane's answer: `T` on success, else its refusal.
async fn answer<T: serde::de::DeserializeOwned>(
    url: &str,
    what: &'static str,
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, EnrolError> {
    let unreachable = |source| EnrolError::Unreachable {
        url: url.to_owned(),
        source,
    };
    let response = response.map_err(|e| match tls_refusal(&e) {
        Some(message) => EnrolError::Refused { what, message },
        // In TLS 1.3 the server checks the client's certificate after the client is done
        // with the handshake: a refused certificate shows as the connection closing under
        // the first request, not as a failure to connect.
        None if !e.is_connect() && !e.is_timeout() => EnrolError::Refused {
            what,
            message: format!(
                "it closed the connection after the TLS handshake ({}), as it does for a \
                 certificate it does not accept",
                porthole_core::error_chain(&e)
            ),
        },
        None => unreachable(e),
    })?;
    if response.status().is_success() {
        return response.json().await.map_err(unreachable);
    }
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Refusal>(&text)
        .map(|r| r.error.message)
        .unwrap_or_else(|_| format!("{status}: {text}"));
    Err(EnrolError::Refused { what, message })
}

/// The TLS error in `error`'s causes, if the handshake itself failed: the other side
/// refused the certificate (or presented one that is refused), which retrying cannot fix.
fn tls_refusal(error: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        // An I/O error's source skips the error it wraps, so look inside it too.
        let inner = cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        for candidate in [Some(cause), inner].into_iter().flatten() {
            if let Some(tls) = candidate.downcast_ref::<rustls::Error>() {
                return Some(format!("the TLS handshake failed: {tls}"));
            }
        }
        source = cause.source();
    }
    None
}

/// Joins the plane at `plane` with `token`: pins its CA, makes a key, and gets it signed.
pub async fn join(plane: &str, token: &JoinToken, address: &str) -> Result<Enrolment, EnrolError> {
    let plane = plane.trim_end_matches('/');
    let ca_pem = fetch_ca(plane).await?;
    let ca = pki::first_cert_der(&ca_pem)?;
    let actual = pki::fingerprint(&ca);
    if actual != token.ca_fingerprint {
        return Err(EnrolError::WrongCa {
            url: plane.to_owned(),
            expected: token.ca_fingerprint.clone(),
            actual,
        });
    }
    let (key_pem, csr) = pki::key_and_csr(&pki::node_identity(&token.node))?;
    let config = tls::client_config(&ca, PLANE_IDENTITY, None, None)?;
    let client = tls::http_client(config, CONNECT_TIMEOUT)?;
    let request = JoinRequest {
        token: token.credential(),
        csr,
        address: address.to_owned(),
    };
    let response = client
        .post(format!("{plane}/agent/v1/join"))
        .timeout(REQUEST_TIMEOUT)
        .json(&request)
        .send()
        .await;
    let enrolled: Enrolled = answer(plane, "admit this agent", response).await?;
    Ok(Enrolment {
        node: enrolled.node,
        plane: plane.to_owned(),
        ca_pem,
        cert_pem: enrolled.certificate,
        key_pem,
    })
}

/// The plane's CA certificate, fetched without trusting it yet: the caller checks it
/// against the token.
async fn fetch_ca(plane: &str) -> Result<String, EnrolError> {
    let client = tls::http_client(tls::unverified_client_config()?, CONNECT_TIMEOUT)?;
    let response = client
        .get(format!("{plane}/agent/v1/ca"))
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await;
    let unreachable = |source| EnrolError::Unreachable {
        url: plane.to_owned(),
        source,
    };
    let response = response.map_err(unreachable)?;
    if !response.status().is_success() {
        return Err(EnrolError::Refused {
            what: "send its CA certificate",
            message: response.status().to_string(),
        });
    }
    response.text().await.map_err(unreachable)
}

/// Where an agent keeps its VMs, cached templates and cached ISOs.
pub fn data_paths(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (dir.join("vms"), dir.join("templates"), dir.join("isos"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_tokens_parse_and_refuse_what_is_not_one() {
        let hash = "ab".repeat(32);
        let token: JoinToken = format!("node-1.{}.{hash}", "s".repeat(43)).parse().unwrap();
        assert_eq!(token.node, "node-1");
        assert_eq!(token.credential(), format!("node-1.{}", "s".repeat(43)));
        assert_eq!(
            token.to_string(),
            format!("node-1.{}.{hash}", "s".repeat(43))
        );
        assert!(!format!("{token:?}").contains("sss"));
        for bad in [
            "",
            "a.b",
            "a.bbbbbbbbbbbbbbbbbbbb.xyz",
            "a.short.".to_owned().as_str(),
        ] {
            assert!(bad.parse::<JoinToken>().is_err(), "{bad}");
        }
    }
}
