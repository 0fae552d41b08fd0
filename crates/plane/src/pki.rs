//! The plane's side of the agents' PKI: the certificate authority that signs agents'
//! certificates (its key is `ca.key`, mode 0600, in the data directory) and the plane's own
//! certificate, made at every start and renewed at two thirds of its life.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use porthole_agent::pki::{CertificateAuthority, PLANE_IDENTITY};
use porthole_agent::tls::{CertSlot, Identity};

/// How long the plane's own certificate lives; a new one is made at every start, and again
/// when two thirds of this have passed.
const PLANE_CERT_TTL: Duration = Duration::from_secs(397 * 86_400);

/// The CA and the plane's certificate.
#[derive(Debug)]
pub struct PlanePki {
    /// Signs agents' certificates; its key is `ca.key` (mode 0600) in the data directory.
    pub ca: CertificateAuthority,
    /// The plane's own key and certificate, presented to agents both ways, and when it is
    /// due for renewal.
    current: std::sync::RwLock<(Identity, SystemTime)>,
    /// The same, for the agent listener.
    pub slot: Arc<CertSlot>,
}

impl PlanePki {
    /// Opens the CA in `data_dir`, creating it on first start, and gives the plane a fresh
    /// certificate.
    pub fn open(data_dir: &Path) -> anyhow::Result<PlanePki> {
        let ca = CertificateAuthority::load_or_create(data_dir)?;
        let (identity, due) = plane_certificate(&ca)?;
        let slot = CertSlot::new(&identity)?;
        Ok(PlanePki {
            ca,
            current: std::sync::RwLock::new((identity, due)),
            slot,
        })
    }

    /// The plane's key and certificate now.
    pub fn identity(&self) -> Identity {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Gives the plane a new certificate if two thirds of the current one's life have
    /// passed; returns the new identity if it did.
    pub fn renew_if_due(&self) -> anyhow::Result<Option<Identity>> {
        let due = self.current.read().unwrap_or_else(|e| e.into_inner()).1;
        if SystemTime::now() < due {
            return Ok(None);
        }
        let (identity, due) = plane_certificate(&self.ca)?;
        self.slot.replace(&identity)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (identity.clone(), due);
        Ok(Some(identity))
    }
}

/// A new certificate for the plane, and when it is due for renewal.
fn plane_certificate(ca: &CertificateAuthority) -> anyhow::Result<(Identity, SystemTime)> {
    let (issued, key_pem) = ca.issue(PLANE_IDENTITY, PLANE_CERT_TTL)?;
    let identity = Identity::from_pem(&issued.cert_pem, &key_pem)?;
    Ok((identity, SystemTime::now() + PLANE_CERT_TTL * 2 / 3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn the_plane_renews_its_certificate_when_due_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let pki = PlanePki::open(dir.path()).unwrap();
        assert!(pki.renew_if_due().unwrap().is_none());
        pki.current.write().unwrap().1 = UNIX_EPOCH;
        assert!(pki.renew_if_due().unwrap().is_some());
        assert!(pki.renew_if_due().unwrap().is_none());
        // The CA stays the same: agents that pinned it keep trusting the plane.
        let again = PlanePki::open(dir.path()).unwrap();
        assert_eq!(again.ca.fingerprint(), pki.ca.fingerprint());
    }
}
