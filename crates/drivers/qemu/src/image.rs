//! Disk images, through `qemu-img`.
//!
//! A VM created from a template gets a qcow2 overlay whose backing file is the template's
//! base image, so creating it writes a few kilobytes whatever the base's size. The backing
//! format is always given explicitly (`-F`), so a guest that writes a qcow2 header into a raw
//! base can never change how the base is read.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use porthole_core::driver::DiskFormat;
use serde::Deserialize;
use tokio::process::Command;

use crate::snapshot::SnapshotInfo;

/// How long a single qemu-img run may take. Inspecting or creating an overlay takes
/// milliseconds; the bound only stops a hostile image from hanging a job.
const QEMU_IMG_TIMEOUT: Duration = Duration::from_secs(60);

/// Why an image operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// qemu-img could not be run at all.
    #[error("cannot run qemu-img")]
    Spawn(#[source] std::io::Error),
    /// qemu-img ran and failed.
    #[error("qemu-img {operation} failed: {message}")]
    Failed {
        /// The subcommand, e.g. `create`.
        operation: &'static str,
        /// qemu-img's own error text.
        message: String,
    },
    /// qemu-img did not finish in time.
    #[error("qemu-img {0} did not finish within {secs} s", secs = QEMU_IMG_TIMEOUT.as_secs())]
    Timeout(&'static str),
    /// The image is not one porthole accepts.
    #[error("{0}")]
    Rejected(String),
}

/// What `qemu-img info` says about an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// qcow2 or raw.
    pub format: DiskFormat,
    /// The size the guest sees, in bytes.
    pub virtual_size: u64,
}

#[derive(Deserialize)]
struct RawInfo {
    format: String,
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
    #[serde(rename = "backing-filename")]
    backing_filename: Option<String>,
    #[serde(rename = "format-specific")]
    format_specific: Option<serde_json::Value>,
}

/// Inspects an image an administrator supplied, and accepts it only if it is a
/// self-contained qcow2 or raw image: no backing file and no external data file, either of
/// which would let an image read files on this host.
pub async fn inspect_untrusted(path: &Path) -> Result<ImageInfo, ImageError> {
    let stdout = qemu_img(
        "info",
        &["info".as_ref(), "--output=json".as_ref(), path.as_os_str()],
    )
    .await?;
    let raw: RawInfo = serde_json::from_slice(&stdout).map_err(|e| ImageError::Failed {
        operation: "info",
        message: format!("unreadable output: {e}"),
    })?;
    let Some(format) = DiskFormat::parse(&raw.format) else {
        return Err(ImageError::Rejected(format!(
            "image format {} is not supported; use qcow2 or raw",
            raw.format
        )));
    };
    if let Some(backing) = raw.backing_filename {
        return Err(ImageError::Rejected(format!(
            "image has a backing file ({backing}); flatten it first with `qemu-img convert -O qcow2`"
        )));
    }
    let data_file = raw
        .format_specific
        .as_ref()
        .and_then(|f| f.pointer("/data/data-file"))
        .is_some();
    if data_file {
        return Err(ImageError::Rejected(
            "image uses an external data file; flatten it first with `qemu-img convert -O qcow2`"
                .into(),
        ));
    }
    Ok(ImageInfo {
        format,
        virtual_size: raw.virtual_size,
    })
}

/// Creates a qcow2 overlay at `path` over `base`, with a virtual size of `size` bytes.
pub async fn create_overlay(
    base: &Path,
    base_format: DiskFormat,
    path: &Path,
    size: u64,
) -> Result<(), ImageError> {
    let size = size.to_string();
    qemu_img(
        "create",
        &[
            "create".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            "-F".as_ref(),
            base_format.as_str().as_ref(),
            "-b".as_ref(),
            base.as_os_str(),
            path.as_os_str(),
            size.as_ref(),
        ],
    )
    .await
    .map(drop)
}

/// Creates an empty qcow2 image of `size` bytes at `path`.
pub async fn create_blank(path: &Path, size: u64) -> Result<(), ImageError> {
    let size = size.to_string();
    let args = [
        "create".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
    ];
    let args: Vec<&std::ffi::OsStr> = args
        .into_iter()
        .chain([path.as_os_str(), size.as_ref()])
        .collect();
    qemu_img("create", &args).await.map(drop)
}

/// Grows the qcow2 image at `path` to `size` bytes. Only for images no QEMU has open.
pub async fn grow(path: &Path, size: u64) -> Result<(), ImageError> {
    let size = size.to_string();
    qemu_img(
        "resize",
        &[
            "resize".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            path.as_os_str(),
            size.as_ref(),
        ],
    )
    .await
    .map(drop)
}

/// What `qemu-img snapshot` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotOp {
    /// `-c`: take a snapshot.
    Create,
    /// `-a`: put the image back to a snapshot.
    Apply,
    /// `-d`: delete a snapshot.
    Delete,
}

/// Creates, applies or deletes the internal snapshot `tag` of the qcow2 image at `path`. Only
/// for images no QEMU has open (qemu-img's image locking refuses otherwise).
pub async fn snapshot(path: &Path, op: SnapshotOp, tag: &str) -> Result<(), ImageError> {
    let (flag, operation) = match op {
        SnapshotOp::Create => ("-c", "snapshot -c"),
        SnapshotOp::Apply => ("-a", "snapshot -a"),
        SnapshotOp::Delete => ("-d", "snapshot -d"),
    };
    qemu_img(
        operation,
        &[
            "snapshot".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            flag.as_ref(),
            tag.as_ref(),
            path.as_os_str(),
        ],
    )
    .await
    .map(drop)
}

/// The internal snapshots of the qcow2 image at `path`, oldest first. Reads with
/// `--force-share`, so it also works while a QEMU has the image open.
pub async fn snapshots(path: &Path) -> Result<Vec<SnapshotInfo>, ImageError> {
    #[derive(Deserialize)]
    struct Info {
        #[serde(default)]
        snapshots: Vec<SnapshotInfo>,
    }
    let stdout = qemu_img(
        "info",
        &[
            "info".as_ref(),
            "--force-share".as_ref(),
            "--output=json".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            path.as_os_str(),
        ],
    )
    .await?;
    let info: Info = serde_json::from_slice(&stdout).map_err(|e| ImageError::Failed {
        operation: "info",
        message: format!("unreadable output: {e}"),
    })?;
    Ok(info.snapshots)
}

/// The path of the `qemu-img` binary: `PORTHOLE_QEMU_IMG`, or `qemu-img` from `PATH`.
fn qemu_img_binary() -> PathBuf {
    std::env::var_os("PORTHOLE_QEMU_IMG").map_or_else(|| "qemu-img".into(), PathBuf::from)
}

async fn qemu_img(
    operation: &'static str,
    args: &[&std::ffi::OsStr],
) -> Result<Vec<u8>, ImageError> {
    let child = Command::new(qemu_img_binary())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(ImageError::Spawn)?;
    let output = tokio::time::timeout(QEMU_IMG_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| ImageError::Timeout(operation))?
        .map_err(ImageError::Spawn)?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        let message = message
            .strip_prefix("qemu-img: ")
            .unwrap_or(&message)
            .to_owned();
        return Err(ImageError::Failed { operation, message });
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overlays_are_small_and_keep_the_requested_size() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.raw");
        std::fs::write(&base, vec![7u8; 4 << 20]).unwrap();
        let info = inspect_untrusted(&base).await.unwrap();
        assert_eq!(
            info,
            ImageInfo {
                format: DiskFormat::Raw,
                virtual_size: 4 << 20
            }
        );

        let overlay = dir.path().join("disk.qcow2");
        create_overlay(&base, DiskFormat::Raw, &overlay, 1 << 30)
            .await
            .unwrap();
        assert!(std::fs::metadata(&overlay).unwrap().len() < 1 << 20);
        grow(&overlay, 2 << 30).await.unwrap();

        // An overlay has a backing file, so it is refused as a template.
        let err = inspect_untrusted(&overlay).await.unwrap_err();
        assert!(err.to_string().contains("backing file"), "{err}");
    }

    #[tokio::test]
    async fn snapshots_are_created_listed_applied_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.qcow2");
        create_blank(&disk, 1 << 20).await.unwrap();
        assert!(snapshots(&disk).await.unwrap().is_empty());
        snapshot(&disk, SnapshotOp::Create, "first").await.unwrap();
        snapshot(&disk, SnapshotOp::Create, "second").await.unwrap();
        let listed = snapshots(&disk).await.unwrap();
        let names: Vec<&str> = listed.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["first", "second"]);
        assert!(
            listed
                .iter()
                .all(|s| s.vm_state_size == 0 && s.date_sec > 0)
        );
        snapshot(&disk, SnapshotOp::Apply, "first").await.unwrap();
        snapshot(&disk, SnapshotOp::Delete, "first").await.unwrap();
        let names: Vec<String> = snapshots(&disk)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["second"]);
        let err = snapshot(&disk, SnapshotOp::Delete, "first")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("snapshot -d"), "{err}");
    }

    #[tokio::test]
    async fn failures_carry_qemu_img_message() {
        let dir = tempfile::tempdir().unwrap();
        let err = inspect_untrusted(&dir.path().join("absent"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("No such file"), "{err}");
    }
}
