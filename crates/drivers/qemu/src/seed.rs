//! cloud-init NoCloud seeds.
//!
//! A VM with [`CloudInit`] data gets `seed.iso` in its directory: an ISO 9660 image labelled
//! `cidata` holding `meta-data` (instance id, hostname) and `user-data` (a `#cloud-config`
//! with the user, the password hash and the SSH keys). cloud-init finds it by its label on a
//! read-only disk the driver attaches at every start. `genisoimage` writes the image.
//!
//! The YAML is written here, in a fixed layout, with every value in a double-quoted scalar
//! that escapes `"`, `\` and everything outside printable ASCII, so no value can change the
//! document's structure (the values are validated as well). The layout is simple enough for
//! the test guest's shell script to read back.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use porthole_core::cloud_init::CloudInit;
use porthole_core::ids::VmId;
use porthole_core::spec::SpecError;
use tokio::process::Command;

/// How long genisoimage may take for a few kilobytes.
const GENISOIMAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The volume label cloud-init's NoCloud source looks for.
pub const VOLUME_LABEL: &str = "cidata";

/// Why a seed could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// A cloud-init value broke a rule.
    #[error("invalid cloud-init data: {0}")]
    Invalid(SpecError),
    /// A file could not be written.
    #[error("{context}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// genisoimage could not be run.
    #[error("cannot run {0} (install Debian's genisoimage package, or set PORTHOLE_GENISOIMAGE)")]
    Spawn(String, #[source] std::io::Error),
    /// genisoimage failed.
    #[error("genisoimage failed to write the cloud-init seed: {0}")]
    Failed(String),
    /// genisoimage did not finish in time.
    #[error("genisoimage did not finish within {} s", GENISOIMAGE_TIMEOUT.as_secs())]
    Timeout,
}

/// `meta-data`: the instance id (the VM's id, so cloud-init runs once per VM) and hostname.
pub fn meta_data(vm: VmId, ci: &CloudInit) -> String {
    format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        quote(&vm.to_string()),
        quote(&ci.hostname)
    )
}

/// `user-data`: a `#cloud-config` that sets the hostname and creates one user, with
/// passwordless sudo, a password (if any; SSH password logins are enabled for it) and SSH
/// keys. Listing `users` replaces the image's default user.
pub fn user_data(ci: &CloudInit) -> String {
    let mut yaml = String::from("#cloud-config\n");
    // Writing to a String cannot fail.
    let _ = writeln!(yaml, "hostname: {}", quote(&ci.hostname));
    yaml.push_str("preserve_hostname: false\n");
    yaml.push_str("users:\n");
    let _ = writeln!(yaml, "  - name: {}", quote(&ci.user));
    yaml.push_str("    shell: \"/bin/bash\"\n");
    yaml.push_str("    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n");
    if ci.has_password() {
        yaml.push_str("    lock_passwd: false\n");
        let _ = writeln!(yaml, "    passwd: {}", quote(&ci.password_hash));
    } else {
        yaml.push_str("    lock_passwd: true\n");
    }
    if ci.ssh_keys.is_empty() {
        yaml.push_str("    ssh_authorized_keys: []\n");
    } else {
        yaml.push_str("    ssh_authorized_keys:\n");
        for key in &ci.ssh_keys {
            let _ = writeln!(yaml, "      - {}", quote(key));
        }
    }
    let _ = writeln!(yaml, "ssh_pwauth: {}", ci.has_password());
    yaml
}

/// `value` as a YAML double-quoted scalar. Only printable ASCII stays as is; `"` and `\` are
/// escaped, and every other character becomes `\uXXXX` or `\UXXXXXXXX`, which YAML 1.1 and
/// 1.2 read the same way.
pub fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            ' '..='~' => quoted.push(c),
            c if u32::from(c) <= 0xFFFF => {
                let _ = write!(quoted, "\\u{:04X}", u32::from(c));
            }
            c => {
                let _ = write!(quoted, "\\U{:08X}", u32::from(c));
            }
        }
    }
    quoted.push('"');
    quoted
}

/// Writes the seed for VM `vm` to `target`, replacing any earlier one. Files are staged in
/// `target`'s directory and renamed into place, so a crash never leaves a half-written seed.
pub async fn write(target: &Path, vm: VmId, ci: &CloudInit) -> Result<(), SeedError> {
    ci.validate().map_err(SeedError::Invalid)?;
    let dir = target.parent().unwrap_or(Path::new("."));
    let staging = dir.join("seed.partial.d");
    let staged = dir.join("seed.iso.partial");
    let result = async {
        let io = |context: String| move |source| SeedError::Io { context, source };
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir(&staging).map_err(io(format!("creating {}", staging.display())))?;
        for (name, text) in [
            ("meta-data", meta_data(vm, ci)),
            ("user-data", user_data(ci)),
        ] {
            let path = staging.join(name);
            std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
        }
        genisoimage(&staged, &staging).await?;
        std::fs::rename(&staged, target).map_err(io(format!("renaming {}", staged.display())))
    }
    .await;
    let _ = std::fs::remove_dir_all(&staging);
    if result.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    result
}

/// The genisoimage binary: `PORTHOLE_GENISOIMAGE`, or `genisoimage` from `PATH`.
fn genisoimage_binary() -> PathBuf {
    std::env::var_os("PORTHOLE_GENISOIMAGE").map_or_else(|| "genisoimage".into(), PathBuf::from)
}

/// Makes an ISO 9660 image (Joliet and Rock Ridge, so names keep their case and dashes) of
/// the files in `source` at `output`.
async fn genisoimage(output: &Path, source: &Path) -> Result<(), SeedError> {
    let binary = genisoimage_binary();
    let child = Command::new(&binary)
        .args(["-quiet", "-input-charset", "utf-8", "-volid", VOLUME_LABEL])
        .args(["-joliet", "-rock", "-output"])
        .arg(output)
        .arg(source)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| SeedError::Spawn(binary.display().to_string(), e))?;
    let output = tokio::time::timeout(GENISOIMAGE_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| SeedError::Timeout)?
        .map_err(|e| SeedError::Spawn(binary.display().to_string(), e))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let message = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map_or_else(|| format!("exited with {}", output.status), str::to_owned);
    Err(SeedError::Failed(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/";

    fn tricky() -> CloudInit {
        CloudInit {
            hostname: "seeded.lab".into(),
            user: "alice".into(),
            password_hash: HASH.into(),
            ssh_keys: vec![
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE alice@laptop".into(),
                "command=\"echo \\\"hi\\\"; x: y # z\" ssh-rsa AAAAB3 b\u{f6}b \u{2028} \u{1F600} - [a] {b} &c *d !e %f @g `h` 'i' ---".into(),
            ],
        }
    }

    #[test]
    fn quoting_escapes_everything_that_could_matter() {
        assert_eq!(quote("plain text: # x"), "\"plain text: # x\"");
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(
            quote("\u{7f}é\u{2028}\u{1F600}"),
            "\"\\u007F\\u00E9\\u2028\\U0001F600\""
        );
    }

    /// A real YAML parser reads back exactly the values that went in.
    #[test]
    fn user_data_parses_back_to_the_same_values() {
        let ci = tricky();
        let text = user_data(&ci);
        assert!(text.starts_with("#cloud-config\n"));
        let doc: serde_norway::Value = serde_norway::from_str(&text).unwrap();
        assert_eq!(doc["hostname"].as_str(), Some("seeded.lab"));
        assert_eq!(doc["ssh_pwauth"].as_bool(), Some(true));
        let users = doc["users"].as_sequence().unwrap();
        assert_eq!(users.len(), 1);
        let user = &users[0];
        assert_eq!(user["name"].as_str(), Some("alice"));
        assert_eq!(user["passwd"].as_str(), Some(HASH));
        assert_eq!(user["lock_passwd"].as_bool(), Some(false));
        let keys: Vec<&str> = user["ssh_authorized_keys"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(keys, ci.ssh_keys);

        let meta: serde_norway::Value =
            serde_norway::from_str(&meta_data(VmId::random(), &ci)).unwrap();
        assert_eq!(meta["local-hostname"].as_str(), Some("seeded.lab"));
        assert!(meta["instance-id"].as_str().is_some());
    }

    #[test]
    fn no_password_locks_it_and_disables_password_logins() {
        let ci = CloudInit {
            password_hash: String::new(),
            ssh_keys: vec![],
            ..tricky()
        };
        let doc: serde_norway::Value = serde_norway::from_str(&user_data(&ci)).unwrap();
        assert_eq!(doc["ssh_pwauth"].as_bool(), Some(false));
        assert_eq!(doc["users"][0]["lock_passwd"].as_bool(), Some(true));
        assert!(doc["users"][0].get("passwd").is_none());
        assert_eq!(
            doc["users"][0]["ssh_authorized_keys"]
                .as_sequence()
                .map(Vec::len),
            Some(0)
        );
    }

    #[tokio::test]
    async fn writes_an_iso_labelled_cidata_and_refuses_bad_data() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("seed.iso");
        write(&target, VmId::random(), &tricky()).await.unwrap();
        let iso = std::fs::read(&target).unwrap();
        // The primary volume descriptor is sector 16; its volume id starts at byte 40.
        assert_eq!(&iso[0x8001..0x8006], b"CD001");
        assert!(iso[0x8028..0x8048].starts_with(b"cidata"));
        let text = String::from_utf8_lossy(&iso);
        assert!(text.contains("#cloud-config") && text.contains("local-hostname"));
        // Rewriting is fine (creation is idempotent) and leaves no staging files behind.
        write(&target, VmId::random(), &tricky()).await.unwrap();
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, vec!["seed.iso"]);

        let bad = CloudInit {
            user: "a\"b".into(),
            ..tricky()
        };
        let err = write(&dir.path().join("bad.iso"), VmId::random(), &bad)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cloud_init.user"), "{err}");
        assert!(!dir.path().join("bad.iso").exists());
    }
}
