//! The fingerprint-pinning verifier against a local rustls server with a self-signed
//! certificate.

use std::sync::Arc;

use porthole_proxmox::{CertFingerprint, ClientBuilder, Credentials, Error, Retry, TlsOptions};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves one canned `/version` answer over TLS per connection; returns the URL and the
/// certificate's fingerprint.
async fn tls_server() -> (String, CertFingerprint) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let der = certified.cert.der().clone();
    let fingerprint = CertFingerprint::of_der(&der);
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = r#"{"data":{"version":"9.0.3","release":"9.0","repoid":"abc"}}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (format!("https://localhost:{port}"), fingerprint)
}

fn client(url: &str, tls: TlsOptions) -> porthole_proxmox::Client {
    let token = "porthole@pve!ci=secret".parse().unwrap();
    ClientBuilder::new(url, Credentials::Token(token))
        .tls(tls)
        .build()
        .unwrap()
}

#[tokio::test]
async fn pinned_fingerprint_is_accepted_in_pve_notation() {
    let (url, fingerprint) = tls_server().await;
    // As the PVE GUI shows it: upper case with colons.
    let shown: CertFingerprint = fingerprint.to_string().parse().unwrap();
    let version = client(&url, TlsOptions::Fingerprint(shown))
        .version()
        .await
        .unwrap();
    assert_eq!(version.version, "9.0.3");
}

#[tokio::test]
async fn wrong_fingerprint_is_refused_before_sending() {
    let (url, _) = tls_server().await;
    let other = CertFingerprint::of_der(b"some other certificate");
    let err = client(&url, TlsOptions::Fingerprint(other))
        .version()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert_eq!(err.retry(), Retry::Always);
}

#[tokio::test]
async fn self_signed_is_refused_by_default_and_accepted_when_insecure() {
    let (url, _) = tls_server().await;
    let err = client(&url, TlsOptions::System)
        .version()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    client(&url, TlsOptions::Insecure).version().await.unwrap();
}
