//! Secrets porthole must be able to read back, such as an external console's VNC password.
//! Unlike user passwords they cannot be hashed, so they are sealed with ChaCha20-Poly1305
//! under a key kept in `<data-dir>/secret.key` (mode 0600, made at first start). A database
//! copy alone reveals nothing, and each sealed value is bound to the row it belongs to.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The plane's sealing key.
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
    /// A key for message authentication codes, derived from the sealing key.
    mac_key: [u8; 32],
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<key>)")
    }
}

impl SecretBox {
    /// Loads the key at `path`, creating it (readable only by porthole) if it is missing.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let key = match std::fs::read(path) {
            Ok(key) => key,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::fill(&mut key);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .with_context(|| format!("creating {}", path.display()))?;
                file.write_all(&key)?;
                file.sync_all()?;
                key.to_vec()
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let cipher = ChaCha20Poly1305::new_from_slice(&key)
            .map_err(|_| anyhow::anyhow!("{} does not hold a 32-byte key", path.display()))?;
        let mac_key: [u8; 32] = Sha256::new()
            .chain_update(b"porthole mac key v1")
            .chain_update(&key)
            .finalize()
            .into();
        Ok(Self { cipher, mac_key })
    }

    /// An HMAC-SHA256 of `data` for `purpose`, hex-encoded: a value only this plane can make,
    /// such as a CSRF token bound to a session.
    pub fn mac(&self, purpose: &str, data: &str) -> String {
        hex::encode(self.mac_bytes(purpose, data).finalize().into_bytes())
    }

    /// Whether `presented` is [`SecretBox::mac`] of `data` for `purpose`, compared in
    /// constant time.
    pub fn verify_mac(&self, purpose: &str, data: &str, presented: &str) -> bool {
        hex::decode(presented)
            .is_ok_and(|bytes| self.mac_bytes(purpose, data).verify_slice(&bytes).is_ok())
    }

    fn mac_bytes(&self, purpose: &str, data: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.mac_key).expect("any key length");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(data.as_bytes());
        mac
    }

    /// Seals `secret` for the record named by `context`.
    pub fn seal(&self, secret: &str, context: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce);
        let payload = Payload {
            msg: secret.as_bytes(),
            aad: context.as_bytes(),
        };
        let sealed = self
            .cipher
            .encrypt(&Nonce::from(nonce), payload)
            .expect("short secrets seal");
        format!("{}{}", hex::encode(nonce), hex::encode(sealed))
    }

    /// Opens what [`SecretBox::seal`] sealed for the same `context`.
    pub fn open_sealed(&self, sealed: &str, context: &str) -> anyhow::Result<String> {
        let bytes = hex::decode(sealed).context("a sealed secret is not hex")?;
        anyhow::ensure!(bytes.len() > 12, "a sealed secret is too short");
        let (nonce, body) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().expect("12 bytes");
        let payload = Payload {
            msg: body,
            aad: context.as_bytes(),
        };
        let plain = self
            .cipher
            .decrypt(&Nonce::from(nonce), payload)
            .map_err(|_| anyhow::anyhow!("a sealed secret does not open with this plane's key"))?;
        String::from_utf8(plain).context("a sealed secret is not UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_verify_only_for_the_same_purpose_data_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = SecretBox::open(&dir.path().join("a.key")).unwrap();
        let mac = secrets.mac("csrf", "session-1");
        assert_eq!(mac.len(), 64);
        assert!(secrets.verify_mac("csrf", "session-1", &mac));
        assert!(!secrets.verify_mac("csrf", "session-2", &mac));
        assert!(!secrets.verify_mac("login", "session-1", &mac));
        assert!(!secrets.verify_mac("csrf", "session-1", "not hex"));
        assert!(!secrets.verify_mac("csrf", "session-1", ""));
        let other = SecretBox::open(&dir.path().join("b.key")).unwrap();
        assert!(!other.verify_mac("csrf", "session-1", &mac));
    }

    #[test]
    fn seals_open_only_with_the_same_key_and_context() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let secrets = SecretBox::open(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let sealed = secrets.seal("hunter2", "console-1");
        assert!(!sealed.contains("hunter2"));
        assert_ne!(
            sealed,
            secrets.seal("hunter2", "console-1"),
            "nonces repeat"
        );
        assert_eq!(
            secrets.open_sealed(&sealed, "console-1").unwrap(),
            "hunter2"
        );
        assert!(secrets.open_sealed(&sealed, "console-2").is_err());
        // The same key file opens it after a restart; another key does not.
        assert_eq!(
            SecretBox::open(&path)
                .unwrap()
                .open_sealed(&sealed, "console-1")
                .unwrap(),
            "hunter2"
        );
        let other = SecretBox::open(&dir.path().join("other.key")).unwrap();
        assert!(other.open_sealed(&sealed, "console-1").is_err());
    }
}
