//! The VM state machine.
//!
//! Every user-visible action is checked against the VM's current state before any job is
//! queued. An action the state does not allow is an [`IllegalTransition`], which the plane
//! answers with 409 Conflict; it is never silently ignored.
//!
//! ```text
//!  create ─► Creating ─► Running ◄──resume── Paused
//!                          │  ▲ └──suspend────►  │
//!             stop/shutdown│  │start             │stop
//!                          ▼  │                  │
//!                        Stopped ◄───────────────┘
//!  delete: Stopped | Running | Paused ─► Deleting ─► (gone)
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::driver::PowerState;

/// Where a VM is in its life, as the plane records it.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    /// Its disk is being prepared and it has not run yet.
    Creating,
    /// Defined, but no process runs it.
    Stopped,
    /// The guest is executing.
    Running,
    /// The process exists but the guest's CPUs are halted.
    Paused,
    /// Being torn down; it will disappear.
    Deleting,
    /// Its node cannot be reached, so nobody knows.
    Unknown,
}

/// Something a user asks of a VM.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Power on.
    Start,
    /// Pull the plug.
    Stop,
    /// Press the ACPI power button, then pull the plug if the guest does not react in time.
    Shutdown,
    /// Press the reset button.
    Reset,
    /// Halt the guest's CPUs, keeping its memory.
    Suspend,
    /// Continue a suspended guest.
    Resume,
    /// Remove the VM and every file it had.
    Delete,
    /// Change cores or memory; takes effect at the next start, so the VM must be stopped.
    Reconfigure,
    /// Grow the main disk; works while the guest runs.
    GrowDisk,
    /// Take a snapshot, with the guest's memory if it runs.
    Snapshot,
    /// Go back to a snapshot.
    Rollback,
    /// Remove a snapshot.
    DeleteSnapshot,
}

impl Action {
    /// Every action, for exhaustive tests and documentation.
    pub const ALL: [Action; 12] = [
        Action::Start,
        Action::Stop,
        Action::Shutdown,
        Action::Reset,
        Action::Suspend,
        Action::Resume,
        Action::Delete,
        Action::Reconfigure,
        Action::GrowDisk,
        Action::Snapshot,
        Action::Rollback,
        Action::DeleteSnapshot,
    ];

    /// The action's name on the wire and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Shutdown => "shutdown",
            Action::Reset => "reset",
            Action::Suspend => "suspend",
            Action::Resume => "resume",
            Action::Delete => "delete",
            Action::Reconfigure => "reconfigure",
            Action::GrowDisk => "grow the disk of",
            Action::Snapshot => "snapshot",
            Action::Rollback => "roll back",
            Action::DeleteSnapshot => "delete a snapshot of",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An action the VM's current state does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a VM that is {state}{}", hint(*.action, *.state))]
pub struct IllegalTransition {
    /// The state the VM is in.
    pub state: VmState,
    /// The action that was refused.
    pub action: Action,
}

fn hint(action: Action, state: VmState) -> &'static str {
    match (action, state) {
        (Action::Reconfigure, VmState::Running | VmState::Paused) => "; stop it first",
        (Action::Shutdown, VmState::Paused) => "; resume it first, or use stop",
        (_, VmState::Creating | VmState::Deleting) => "; wait for its job to finish",
        (_, VmState::Unknown) => "; its node is unreachable",
        _ => "",
    }
}

impl VmState {
    /// The state the VM settles in once `action` has succeeded, or why `action` is not
    /// allowed now.
    pub fn after(self, action: Action) -> Result<VmState, IllegalTransition> {
        use Action as A;
        use VmState as S;
        let next = match (self, action) {
            (S::Stopped, A::Start) => S::Running,
            (S::Running | S::Paused, A::Stop) => S::Stopped,
            (S::Running, A::Shutdown) => S::Stopped,
            (S::Running, A::Reset) => S::Running,
            (S::Running, A::Suspend) => S::Paused,
            (S::Paused, A::Resume) => S::Running,
            (S::Stopped | S::Running | S::Paused, A::Delete) => S::Deleting,
            (S::Stopped, A::Reconfigure) => S::Stopped,
            (s @ (S::Stopped | S::Running | S::Paused), A::GrowDisk) => s,
            (s @ (S::Stopped | S::Running | S::Paused), A::Snapshot | A::DeleteSnapshot) => s,
            (s @ (S::Stopped | S::Running), A::Rollback) => s,
            (state, action) => return Err(IllegalTransition { state, action }),
        };
        Ok(next)
    }

    /// The state's name on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Creating => "creating",
            VmState::Stopped => "stopped",
            VmState::Running => "running",
            VmState::Paused => "paused",
            VmState::Deleting => "deleting",
            VmState::Unknown => "unknown",
        }
    }

    /// Parses [`VmState::as_str`] back.
    pub fn parse(s: &str) -> Option<VmState> {
        Some(match s {
            "creating" => VmState::Creating,
            "stopped" => VmState::Stopped,
            "running" => VmState::Running,
            "paused" => VmState::Paused,
            "deleting" => VmState::Deleting,
            "unknown" => VmState::Unknown,
            _ => return None,
        })
    }
}

impl From<PowerState> for VmState {
    fn from(power: PowerState) -> Self {
        match power {
            PowerState::Running => VmState::Running,
            PowerState::Paused => VmState::Paused,
            PowerState::Stopped => VmState::Stopped,
        }
    }
}

impl fmt::Display for VmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: [VmState; 6] = [
        VmState::Creating,
        VmState::Stopped,
        VmState::Running,
        VmState::Paused,
        VmState::Deleting,
        VmState::Unknown,
    ];

    #[test]
    fn lifecycle_round_trip() {
        let s = VmState::Stopped.after(Action::Start).unwrap();
        let s = s.after(Action::Suspend).unwrap();
        let s = s.after(Action::Resume).unwrap();
        let s = s.after(Action::Shutdown).unwrap();
        assert_eq!(s, VmState::Stopped);
        assert_eq!(s.after(Action::Delete).unwrap(), VmState::Deleting);
    }

    #[test]
    fn transitional_states_allow_nothing() {
        for state in [VmState::Creating, VmState::Deleting, VmState::Unknown] {
            for action in Action::ALL {
                assert!(state.after(action).is_err(), "{state} allowed {action}");
            }
        }
    }

    #[test]
    fn illegal_actions_explain_themselves() {
        let err = VmState::Running.after(Action::Start).unwrap_err();
        assert_eq!(err.to_string(), "cannot start a VM that is running");
        let err = VmState::Running.after(Action::Reconfigure).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot reconfigure a VM that is running; stop it first"
        );
    }

    #[test]
    fn every_state_round_trips_through_text() {
        for state in STATES {
            assert_eq!(VmState::parse(state.as_str()), Some(state));
        }
        assert_eq!(VmState::parse("exploded"), None);
    }

    #[test]
    fn each_state_allows_exactly_the_expected_actions() {
        let allowed = |state: VmState| -> Vec<Action> {
            Action::ALL
                .into_iter()
                .filter(|a| state.after(*a).is_ok())
                .collect()
        };
        use Action as A;
        assert_eq!(
            allowed(VmState::Stopped),
            [
                A::Start,
                A::Delete,
                A::Reconfigure,
                A::GrowDisk,
                A::Snapshot,
                A::Rollback,
                A::DeleteSnapshot
            ]
        );
        assert_eq!(
            allowed(VmState::Running),
            [
                A::Stop,
                A::Shutdown,
                A::Reset,
                A::Suspend,
                A::Delete,
                A::GrowDisk,
                A::Snapshot,
                A::Rollback,
                A::DeleteSnapshot
            ]
        );
        assert_eq!(
            allowed(VmState::Paused),
            [
                A::Stop,
                A::Resume,
                A::Delete,
                A::GrowDisk,
                A::Snapshot,
                A::DeleteSnapshot
            ]
        );
    }
}
