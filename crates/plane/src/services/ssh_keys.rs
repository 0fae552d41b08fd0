//! SSH keys on a user's profile: parsed and fingerprinted as OpenSSH does, so only real
//! public keys reach a guest's `authorized_keys`.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use porthole_api::{AddSshKeyRequest, SshKey};
use porthole_core::SshKeyId;
use porthole_store::ssh_keys::SshKeyRecord;
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::clock::from_millis;
use crate::error::ApiError;
use crate::services::audit::{self, Target};
use crate::services::caller::Caller;

/// Key types a guest's OpenSSH accepts.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Keys a profile may hold.
pub const MAX_KEYS: usize = 32;

/// A checked public key: `TYPE BASE64 [COMMENT]`, normalised to single spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The `authorized_keys` line.
    pub line: String,
    /// The comment, if any.
    pub comment: Option<String>,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

/// Parses an OpenSSH public key line, naming `field` in errors.
pub fn parse(text: &str, field: &'static str) -> Result<PublicKey, ApiError> {
    let bad = |why: &str| {
        ApiError::invalid(
            field,
            format!("{why}; paste the contents of your id_ed25519.pub (or id_rsa.pub)"),
        )
    };
    let text = text.trim();
    if text.len() > 16 * 1024 || text.contains(['\n', '\r']) || text.chars().any(char::is_control) {
        return Err(bad("must be one line of at most 16 KiB"));
    }
    let mut parts = text.split_whitespace();
    let (Some(kind), Some(body)) = (parts.next(), parts.next()) else {
        return Err(bad("is not an OpenSSH public key"));
    };
    if !KEY_TYPES.contains(&kind) {
        return Err(bad(&format!("key type {kind:?} is not supported")));
    }
    let blob = STANDARD
        .decode(body)
        .map_err(|_| bad("the key's body is not base64"))?;
    // The blob starts with its own type, as a length-prefixed string.
    let embedded = blob
        .get(..4)
        .map(|len| u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize)
        .and_then(|len| blob.get(4..4 + len));
    if embedded != Some(kind.as_bytes()) {
        return Err(bad("the key's body does not match its type"));
    }
    let comment = parts.collect::<Vec<_>>().join(" ");
    let comment = (!comment.is_empty()).then_some(comment);
    let line = match &comment {
        Some(comment) => format!("{kind} {body} {comment}"),
        None => format!("{kind} {body}"),
    };
    Ok(PublicKey {
        line,
        comment,
        fingerprint: format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(&blob))),
    })
}

fn to_wire(key: &SshKeyRecord) -> SshKey {
    SshKey {
        id: key.id,
        name: key.name.clone(),
        public_key: key.public_key.clone(),
        fingerprint: key.fingerprint.clone(),
        created_at: from_millis(key.created_at),
    }
}

/// The caller's keys.
pub async fn list(app: &App, caller: &Caller) -> Result<Vec<SshKey>, ApiError> {
    Ok(app
        .store
        .ssh_keys(caller.user.id)
        .await?
        .iter()
        .map(to_wire)
        .collect())
}

/// Adds a key to the caller's profile.
pub async fn add(
    app: &App,
    caller: &Caller,
    request: AddSshKeyRequest,
) -> Result<SshKey, ApiError> {
    let result = add_key(app, caller, request).await;
    let target = result.as_ref().map_or(
        Target {
            kind: "ssh_key",
            id: None,
            name: None,
        },
        |k| Target::new("ssh_key", k.id, &k.name),
    );
    let detail = result.as_ref().ok().map(|k| k.fingerprint.clone());
    audit::recorded(
        app,
        caller.into(),
        "ssh_key.add",
        Some(target),
        detail,
        result,
    )
    .await
}

async fn add_key(
    app: &App,
    caller: &Caller,
    request: AddSshKeyRequest,
) -> Result<SshKey, ApiError> {
    let key = parse(&request.public_key, "public_key")?;
    let name = request
        .name
        .or(key.comment.clone())
        .unwrap_or_else(|| key.fingerprint.clone());
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            "must be 1 to 100 printable characters",
        ));
    }
    if app.store.ssh_keys(caller.user.id).await?.len() >= MAX_KEYS {
        return Err(ApiError::invalid(
            "public_key",
            format!("a profile holds at most {MAX_KEYS} keys; delete one first"),
        ));
    }
    let record = SshKeyRecord {
        id: SshKeyId::random(),
        user_id: caller.user.id,
        name,
        public_key: key.line,
        fingerprint: key.fingerprint,
        created_at: app.clock.now_millis(),
    };
    app.store
        .insert_ssh_key(&record)
        .await
        .map_err(|e| match ApiError::from(e) {
            ApiError::Conflict { .. } => ApiError::conflict(
                Some("public_key"),
                format!(
                    "public_key: this key ({}) is on your profile already",
                    record.fingerprint
                ),
            ),
            other => other,
        })?;
    Ok(to_wire(&record))
}

/// Removes one of the caller's keys.
pub async fn delete(app: &App, caller: &Caller, id: &str) -> Result<(), ApiError> {
    let id: SshKeyId = id
        .parse()
        .map_err(|_| ApiError::NotFound(format!("no SSH key has the id {id:?}")))?;
    let result = app.store.delete_ssh_key(caller.user.id, id).await;
    audit::recorded(
        app,
        caller.into(),
        "ssh_key.delete",
        Some(Target::new("ssh_key", id, "")),
        None,
        result,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real ed25519 public key (ssh-keygen -t ed25519), and its fingerprint as ssh-keygen
    // -l prints it.
    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKilrEre+sGjyMD1naB/hcvXTbvH6CS97OjBYa3LZ2Pb alice@laptop";
    const FINGERPRINT: &str = "SHA256:3s8PAwYf5pyHqRH9zUySit8QfSGn02E4QkN79g4nXfc";

    #[test]
    fn real_keys_parse_and_fingerprint_like_ssh_keygen() {
        let key = parse(&format!("  {KEY}  "), "public_key").unwrap();
        assert_eq!(key.line, KEY);
        assert_eq!(key.comment.as_deref(), Some("alice@laptop"));
        assert_eq!(key.fingerprint, FINGERPRINT);
    }

    #[test]
    fn anything_else_is_refused_with_the_field_named() {
        let swapped = KEY.replace("ssh-ed25519", "ssh-rsa");
        for bad in [
            "",
            "ssh-ed25519",
            "ssh-dss AAAAB3NzaC1kc3M= x",
            "ssh-ed25519 not*base64",
            swapped.as_str(),
            "ssh-ed25519 AAAA\nssh-ed25519 AAAA",
        ] {
            match parse(bad, "public_key") {
                Err(ApiError::Invalid(e)) => assert_eq!(e.field, "public_key", "{bad}"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }
}
