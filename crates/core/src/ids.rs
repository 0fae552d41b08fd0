//! Typed identifiers. Each is a UUID underneath, but a `VmId` can never be passed where a
//! `JobId` is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        #[cfg_attr(feature = "schema", derive(utoipa::ToSchema), schema(value_type = String, format = Uuid))]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random identifier.
            pub fn random() -> Self {
                Self(Uuid::new_v4())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// The identifier whose UUID is `n`, for fixed ids such as a test's fixtures.
            pub const fn from_u128(n: u128) -> Self {
                Self(Uuid::from_u128(n))
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

typed_id!(
    /// Identifies a virtual machine across its whole life.
    VmId
);
typed_id!(
    /// Identifies a durable job.
    JobId
);
typed_id!(
    /// Identifies a template image.
    TemplateId
);
typed_id!(
    /// Identifies an installer ISO image.
    IsoId
);
typed_id!(
    /// Identifies a user account.
    UserId
);
typed_id!(
    /// Identifies a console target that is not a porthole VM, such as a BMC.
    ExternalConsoleId
);
typed_id!(
    /// Identifies a group of users.
    GroupId
);
typed_id!(
    /// Identifies an SSH public key on a user's profile.
    SshKeyId
);
typed_id!(
    /// Identifies an audit record.
    AuditId
);
