//! Internal qcow2 snapshots of a VM's main disk (`disk0`), taken through a running QEMU.
//!
//! A running VM is snapshotted with QMP's job commands (`snapshot-save`, `snapshot-load`,
//! `snapshot-delete`, QEMU ≥ 6), which save and restore its memory and device state into
//! the same qcow2 image as the disk. Only `disk0` is named, so the read-only seed and ISOs
//! are never part of a snapshot. Each job is followed with `query-jobs` until it concludes,
//! its error (if any) is reported, and it is dismissed. A stopped VM's snapshots go through
//! `qemu-img` instead (see [`crate::image`]).

use std::path::Path;
use std::time::Duration;

use chrono::DateTime;
use porthole_core::snapshot::Snapshot;
use serde::Deserialize;
use serde_json::json;

use crate::qmp::{Qmp, QmpError};

/// The block device (`-drive id=`) of a VM's main disk.
pub const DISK_DEVICE: &str = "disk0";

/// How long a snapshot job may run. Saving memory is bounded by the VM's RAM and the disk's
/// speed; a few GiB take seconds.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(600);

/// How often a running job is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Prefix of the ids of porthole's snapshot jobs.
const JOB_PREFIX: &str = "porthole-snapshot-";

/// Why a live snapshot operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A QMP exchange failed.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// QEMU has no block device `disk0` with an image in it.
    #[error("QEMU has no disk named {DISK_DEVICE}")]
    NoDisk,
    /// The job ran and failed.
    #[error("{command} failed: {message}")]
    Job {
        /// The QMP command, e.g. `snapshot-save`.
        command: &'static str,
        /// QEMU's error.
        message: String,
    },
    /// The job did not conclude in time.
    #[error("{0} did not finish within {secs} s", secs = JOB_TIMEOUT.as_secs())]
    Timeout(&'static str),
}

/// One snapshot as QEMU describes it, in both `qemu-img info --output=json` and QMP's
/// `query-block` (its `SnapshotInfo` type).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// QEMU's numeric id.
    pub id: String,
    /// The tag, which porthole uses as the name.
    pub name: String,
    /// Bytes of saved memory and device state.
    #[serde(rename = "vm-state-size")]
    pub vm_state_size: u64,
    /// Creation time, seconds since the epoch.
    #[serde(rename = "date-sec")]
    pub date_sec: i64,
    /// Creation time, nanoseconds past `date_sec`.
    #[serde(rename = "date-nsec")]
    pub date_nsec: u32,
}

impl SnapshotInfo {
    /// The snapshot in porthole's terms.
    pub fn to_snapshot(&self) -> Snapshot {
        Snapshot {
            name: self.name.clone(),
            created_at: DateTime::from_timestamp(self.date_sec, self.date_nsec).unwrap_or_default(),
            vm_state_size: self.vm_state_size,
        }
    }
}

#[derive(Deserialize)]
struct BlockInfo {
    device: String,
    inserted: Option<BlockDeviceInfo>,
}

#[derive(Deserialize)]
struct BlockDeviceInfo {
    #[serde(rename = "node-name")]
    node_name: String,
    image: ImageInfo,
}

#[derive(Deserialize)]
struct ImageInfo {
    #[serde(default)]
    snapshots: Vec<SnapshotInfo>,
}

#[derive(Deserialize)]
struct JobInfo {
    id: String,
    status: String,
    error: Option<String>,
}

/// The main disk's node name and snapshots, as the running QEMU sees them.
async fn disk(qmp: &mut Qmp) -> Result<(String, Vec<SnapshotInfo>), SnapshotError> {
    let blocks: Vec<BlockInfo> = qmp.execute("query-block", None).await?;
    blocks
        .into_iter()
        .find(|b| b.device == DISK_DEVICE)
        .and_then(|b| b.inserted)
        .map(|d| (d.node_name, d.image.snapshots))
        .ok_or(SnapshotError::NoDisk)
}

/// The snapshots of the main disk of the QEMU whose QMP socket is `socket`.
pub async fn list(socket: &Path) -> Result<Vec<SnapshotInfo>, SnapshotError> {
    let mut qmp = Qmp::connect(socket).await?;
    Ok(disk(&mut qmp).await?.1)
}

/// Saves the disk, memory and device state as snapshot `tag`. The guest pauses while its
/// memory is written and resumes afterwards if it ran.
pub async fn save(socket: &Path, tag: &str) -> Result<(), SnapshotError> {
    run("snapshot-save", socket, tag, true).await
}

/// Restores snapshot `tag`, memory included. The guest continues from the snapshot if it ran.
pub async fn load(socket: &Path, tag: &str) -> Result<(), SnapshotError> {
    run("snapshot-load", socket, tag, true).await
}

/// Deletes snapshot `tag` from the main disk.
pub async fn delete(socket: &Path, tag: &str) -> Result<(), SnapshotError> {
    run("snapshot-delete", socket, tag, false).await
}

/// Runs one snapshot job on the main disk and waits for it to conclude.
async fn run(
    command: &'static str,
    socket: &Path,
    tag: &str,
    with_vmstate: bool,
) -> Result<(), SnapshotError> {
    let mut qmp = Qmp::connect(socket).await?;
    // QEMU's main loop is busy while it writes or reads the memory state, so replies may
    // wait as long as the job itself.
    qmp.set_timeout(JOB_TIMEOUT);
    let (node, _) = disk(&mut qmp).await?;
    dismiss_leftovers(&mut qmp).await?;
    let job_id = format!("{JOB_PREFIX}{}", random_suffix());
    let mut arguments = json!({ "job-id": job_id, "tag": tag, "devices": [node] });
    if with_vmstate {
        arguments["vmstate"] = json!(node);
    }
    qmp.run(command, Some(arguments)).await?;
    let outcome = tokio::time::timeout(JOB_TIMEOUT, async {
        loop {
            let jobs: Vec<JobInfo> = qmp.execute("query-jobs", None).await?;
            match jobs.into_iter().find(|j| j.id == job_id) {
                Some(job) if job.status == "concluded" => return Ok(job.error),
                Some(_) => tokio::time::sleep(POLL_INTERVAL).await,
                // Dismissed by someone else: its outcome is lost.
                None => {
                    return Ok(Some(
                        "the job disappeared before porthole saw its outcome".into(),
                    ));
                }
            }
        }
    })
    .await
    .map_err(|_| SnapshotError::Timeout(command))?;
    let error = outcome.map_err(SnapshotError::Qmp)?;
    // A concluded job stays listed until dismissed; failing to dismiss it changes nothing.
    let _ = qmp.run("job-dismiss", Some(json!({ "id": job_id }))).await;
    match error {
        None => Ok(()),
        Some(message) => Err(SnapshotError::Job { command, message }),
    }
}

/// Dismisses concluded snapshot jobs an interrupted earlier run left behind.
async fn dismiss_leftovers(qmp: &mut Qmp) -> Result<(), SnapshotError> {
    let jobs: Vec<JobInfo> = qmp.execute("query-jobs", None).await?;
    for job in jobs {
        if job.id.starts_with(JOB_PREFIX) && job.status == "concluded" {
            let _ = qmp.run("job-dismiss", Some(json!({ "id": job.id }))).await;
        }
    }
    Ok(())
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 6];
    rand::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_info_reads_qemus_json() {
        let json = r#"{"icount": 0, "vm-clock-nsec": 5, "name": "before", "date-sec": 1700000000,
            "date-nsec": 250, "vm-clock-sec": 3, "id": "1", "vm-state-size": 4096}"#;
        let info: SnapshotInfo = serde_json::from_str(json).unwrap();
        let snapshot = info.to_snapshot();
        assert_eq!(snapshot.name, "before");
        assert_eq!(snapshot.vm_state_size, 4096);
        assert!(snapshot.includes_ram());
        assert_eq!(snapshot.created_at.timestamp(), 1_700_000_000);
    }
}
