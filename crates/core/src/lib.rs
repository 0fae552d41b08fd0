//! porthole's domain model, shared by every layer above it.
//!
//! This crate owns the vocabulary: what a VM spec is and when it is valid ([`spec`]), which
//! state a VM is in and which actions that state allows ([`state`]), what a job is ([`job`]),
//! the [`driver::Driver`] trait that every hypervisor backend implements, with the kinds of
//! node and what each can do ([`node`]), and images named by identity ([`image`]). It performs no
//! I/O, so its rules can be tested exhaustively and reused by the plane, drivers and agents.

pub mod cloud_init;
pub mod driver;
pub mod ids;
pub mod image;
pub mod job;
pub mod node;
pub mod quota;
pub mod snapshot;
pub mod spec;
pub mod state;
pub mod user;

pub use cloud_init::CloudInit;
pub use driver::{
    BootMedia, BootOrder, Capacity, ConsoleEndpoint, ConsoleKind, DirectBoot, Driver, DriverError,
    PowerState, Progress, SharedConsole, VmDefinition,
};
pub use ids::{
    AuditId, ExternalConsoleId, GroupId, IsoId, JobId, SshKeyId, TemplateId, UserId, VmId,
};
pub use image::{ImageFile, ImageFiles, ImageSource};
pub use job::{JobKind, JobState};
pub use node::{Capabilities, ImageHome, NodeKind};
pub use quota::{LimitOverrides, Limits, QuotaExceeded, Usage};
pub use snapshot::{Snapshot, SnapshotName};
pub use spec::{Resources, SpecError, VmName};
pub use state::{Action, IllegalTransition, VmState};
pub use user::Role;

/// An error and all its causes, on one line: `a: b: c`. A cause whose text already ends
/// the line (an error that quotes its source) is not repeated.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
