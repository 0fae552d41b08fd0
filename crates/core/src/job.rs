//! Durable jobs: every long action runs as a job the caller can poll.
//!
//! A job moves `queued → running → succeeded | failed`. A job that was `running` when the
//! plane died is claimed again on restart and either resumed (every job kind is written to be
//! re-runnable) or rolled back; it is never left half-done.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::state::Action;

/// What a job does.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobKind {
    /// Prepare a new VM's disk and boot it.
    #[serde(rename = "vm.create")]
    CreateVm,
    /// A power action on an existing VM.
    #[serde(rename = "vm.start")]
    StartVm,
    #[serde(rename = "vm.stop")]
    /// Hard stop.
    StopVm,
    /// ACPI shutdown with a hard-stop fallback.
    #[serde(rename = "vm.shutdown")]
    ShutdownVm,
    /// Hard reset.
    #[serde(rename = "vm.reset")]
    ResetVm,
    /// Pause the guest.
    #[serde(rename = "vm.suspend")]
    SuspendVm,
    /// Continue the guest.
    #[serde(rename = "vm.resume")]
    ResumeVm,
    /// Remove the VM and its files.
    #[serde(rename = "vm.delete")]
    DeleteVm,
    /// Take a snapshot.
    #[serde(rename = "vm.snapshot")]
    SnapshotVm,
    /// Go back to a snapshot.
    #[serde(rename = "vm.rollback")]
    RollbackVm,
    /// Remove a snapshot.
    #[serde(rename = "vm.delete_snapshot")]
    DeleteSnapshot,
}

impl JobKind {
    /// Every kind.
    pub const ALL: [JobKind; 11] = [
        JobKind::CreateVm,
        JobKind::StartVm,
        JobKind::StopVm,
        JobKind::ShutdownVm,
        JobKind::ResetVm,
        JobKind::SuspendVm,
        JobKind::ResumeVm,
        JobKind::DeleteVm,
        JobKind::SnapshotVm,
        JobKind::RollbackVm,
        JobKind::DeleteSnapshot,
    ];

    /// The kind's name on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::CreateVm => "vm.create",
            JobKind::StartVm => "vm.start",
            JobKind::StopVm => "vm.stop",
            JobKind::ShutdownVm => "vm.shutdown",
            JobKind::ResetVm => "vm.reset",
            JobKind::SuspendVm => "vm.suspend",
            JobKind::ResumeVm => "vm.resume",
            JobKind::DeleteVm => "vm.delete",
            JobKind::SnapshotVm => "vm.snapshot",
            JobKind::RollbackVm => "vm.rollback",
            JobKind::DeleteSnapshot => "vm.delete_snapshot",
        }
    }

    /// Parses [`JobKind::as_str`] back.
    pub fn parse(s: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The job that carries out a power action, if the action runs as a job.
    pub fn for_action(action: Action) -> Option<JobKind> {
        Some(match action {
            Action::Start => JobKind::StartVm,
            Action::Stop => JobKind::StopVm,
            Action::Shutdown => JobKind::ShutdownVm,
            Action::Reset => JobKind::ResetVm,
            Action::Suspend => JobKind::SuspendVm,
            Action::Resume => JobKind::ResumeVm,
            Action::Delete => JobKind::DeleteVm,
            Action::Snapshot => JobKind::SnapshotVm,
            Action::Rollback => JobKind::RollbackVm,
            Action::DeleteSnapshot => JobKind::DeleteSnapshot,
            Action::Reconfigure | Action::GrowDisk => return None,
        })
    }

    /// The state check a job of this kind performs when it is queued.
    pub fn action(self) -> Option<Action> {
        Some(match self {
            JobKind::CreateVm => return None,
            JobKind::StartVm => Action::Start,
            JobKind::StopVm => Action::Stop,
            JobKind::ShutdownVm => Action::Shutdown,
            JobKind::ResetVm => Action::Reset,
            JobKind::SuspendVm => Action::Suspend,
            JobKind::ResumeVm => Action::Resume,
            JobKind::DeleteVm => Action::Delete,
            JobKind::SnapshotVm => Action::Snapshot,
            JobKind::RollbackVm => Action::Rollback,
            JobKind::DeleteSnapshot => Action::DeleteSnapshot,
        })
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a job is.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// A worker holds its lease and is executing it.
    Running,
    /// Finished; the VM is in the state the job promised.
    Succeeded,
    /// Finished with an error; everything it did was undone.
    Failed,
}

impl JobState {
    /// The state's name on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
    }

    /// Parses [`JobState::as_str`] back.
    pub fn parse(s: &str) -> Option<JobState> {
        Some(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            _ => return None,
        })
    }

    /// Whether the job will change no more.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_match_serde() {
        for kind in JobKind::ALL {
            assert_eq!(JobKind::parse(kind.as_str()), Some(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
    }

    #[test]
    fn power_actions_map_to_their_jobs_and_back() {
        for kind in JobKind::ALL {
            if let Some(action) = kind.action() {
                assert_eq!(JobKind::for_action(action), Some(kind));
            }
        }
    }
}
